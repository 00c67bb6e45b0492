package callbacks

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
)

// Limits of an endpoint.
const (
	// MaxDescriptionLen is the longest description, in characters.
	MaxDescriptionLen = 500
	// MaxEndpoints is how many endpoints one tenant may have.
	MaxEndpoints = 20
	// SecretPrefix starts every signing secret.
	SecretPrefix = "whsec_"
)

// ErrTooManyEndpoints is the 409 of a tenant that already has MaxEndpoints endpoints.
var ErrTooManyEndpoints = apperr.Conflict("too_many_webhook_endpoints", fmt.Sprintf("a tenant may have at most %d webhook endpoints", MaxEndpoints))

// Endpoint is a tenant's webhook endpoint (table webhook_endpoints).
type Endpoint struct {
	bun.BaseModel `bun:"table:webhook_endpoints,alias:we"`

	ID       uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID uuid.UUID `bun:",type:uuid,notnull"`
	// URL is the http(s) URL events are POSTed to.
	URL string `bun:"url,notnull"`
	// Events are the subscribed event types (EventTypes), sorted.
	Events      []string `bun:",array,notnull"`
	Description string   `bun:",notnull"`
	Enabled     bool     `bun:",notnull"`
	// SecretSealed is the signing secret sealed by the Sealer (never returned by the API).
	SecretSealed []byte `bun:",notnull"`
	// PreviousSecretSealed still signs until PreviousSecretExpiresAt (after rotate-secret).
	PreviousSecretSealed    []byte    `bun:",nullzero"`
	PreviousSecretExpiresAt time.Time `bun:",nullzero"`
	CreatedAt               time.Time `bun:",nullzero,notnull,default:now()"`
	UpdatedAt               time.Time `bun:",nullzero,notnull,default:now()"`
}

// LogValue keeps the sealed secrets (and the URL, which may carry the tenant's own tokens)
// out of logs.
func (e Endpoint) LogValue() slog.Value {
	return slog.GroupValue(slog.String("endpoint_id", e.ID.String()), slog.String("tenant_id", e.TenantID.String()))
}

// NewEndpoint is the input of Create.
type NewEndpoint struct {
	URL         string
	Events      []string
	Description string
}

// UpdateEndpoint is the input of Update: nil fields are left as they are.
type UpdateEndpoint struct {
	URL         *string
	Events      []string // nil: unchanged
	Description *string
	Enabled     *bool
}

// checkEvents validates and normalises a list of event types: at least one, each one of
// EventTypes (or "*" for all of them), duplicates removed, sorted.
func checkEvents(events []string) ([]string, error) {
	if len(events) == 0 {
		return nil, validate.Field("events", "events must list at least one event type (%s)", strings.Join(EventTypes, ", "))
	}
	out := make([]string, 0, len(events))
	for _, e := range events {
		e = strings.TrimSpace(e)
		if e == "*" {
			return slices.Clone(EventTypes), nil
		}
		if !slices.Contains(EventTypes, e) {
			return nil, validate.Field("events", "unknown event type %q: use %s, or \"*\" for all", e, strings.Join(EventTypes, ", "))
		}
		if !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	slices.Sort(out)
	return out, nil
}

// NewSecret returns a new signing secret: SecretPrefix and 32 random bytes in base64url
// (no padding).
func NewSecret() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return SecretPrefix + base64.RawURLEncoding.EncodeToString(b)
}

// Create stores a new endpoint of tenantID and returns it with its signing secret, which
// is shown this once (it is stored sealed). Errors: 422 invalid_field (url, events,
// description), ErrTooManyEndpoints, apperr kinds.
func (s *Service) Create(ctx context.Context, tenantID uuid.UUID, ne NewEndpoint) (Endpoint, string, error) {
	u, err := s.checkURL(ctx, ne.URL)
	if err != nil {
		return Endpoint{}, "", err
	}
	events, err := checkEvents(ne.Events)
	if err != nil {
		return Endpoint{}, "", err
	}
	if err := validate.OptionalText("description", ne.Description, MaxDescriptionLen); err != nil {
		return Endpoint{}, "", err
	}
	secret := NewSecret()
	ep := Endpoint{ID: uuid.New(), TenantID: tenantID, URL: u, Events: events, Description: ne.Description, Enabled: true}
	if ep.SecretSealed, err = s.d.Sealer.Seal(ep.ID, secret); err != nil {
		return Endpoint{}, "", fmt.Errorf("seal webhook secret: %w", err)
	}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// Serialise creations of one tenant so that the count below holds.
		if _, err := tx.NewRaw("SELECT pg_advisory_xact_lock(hashtextextended(?, 0))", "webhook_endpoints:"+tenantID.String()).Exec(ctx); err != nil {
			return err
		}
		n, err := tx.NewSelect().Model((*Endpoint)(nil)).Where("tenant_id = ?", tenantID).Count(ctx)
		if err != nil {
			return err
		}
		if n >= MaxEndpoints {
			return ErrTooManyEndpoints
		}
		return tx.NewInsert().Model(&ep).Returning("*").Scan(ctx)
	})
	if err != nil {
		return Endpoint{}, "", apperr.Classify(err)
	}
	s.subs.invalidate(ctx, tenantID)
	return ep, secret, nil
}

// Get returns endpoint id of tenantID. Errors: ErrNotFound (also another tenant's), apperr kinds.
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Endpoint, error) {
	return s.get(ctx, s.db, tenantID, id, false)
}

func (s *Service) get(ctx context.Context, idb bun.IDB, tenantID, id uuid.UUID, forUpdate bool) (Endpoint, error) {
	var ep Endpoint
	q := idb.NewSelect().Model(&ep).Where("we.tenant_id = ?", tenantID).Where("we.id = ?", id)
	if forUpdate {
		q = q.For("UPDATE")
	}
	if err := q.Scan(ctx); err != nil {
		if database.IsNoRows(err) {
			return Endpoint{}, ErrNotFound
		}
		return Endpoint{}, apperr.Classify(err)
	}
	return ep, nil
}

// ListFilter pages through endpoints or deliveries: a cursor from a previous page and a
// limit (0 = page.DefaultLimit, at most page.MaxLimit).
type ListFilter struct {
	Cursor string
	Limit  int
}

// List returns one page of tenantID's endpoints, newest first, and the next cursor ("" at
// the end). Errors: page.ErrBadCursor, page.ErrBadLimit, apperr kinds.
func (s *Service) List(ctx context.Context, tenantID uuid.UUID, f ListFilter) ([]Endpoint, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	var eps []Endpoint
	q := s.db.NewSelect().Model(&eps).Where("we.tenant_id = ?", tenantID)
	if err := page.Newest(q, "we", after, limit).Scan(ctx); err != nil {
		return nil, "", apperr.Classify(err)
	}
	eps, next := page.Trim(eps, limit, func(e Endpoint) (time.Time, uuid.UUID) { return e.CreatedAt, e.ID })
	return eps, next, nil
}

// Update changes the given fields of endpoint id of tenantID (the URL is checked as by
// Create). Errors: ErrNotFound, 422 invalid_field, apperr kinds.
func (s *Service) Update(ctx context.Context, tenantID, id uuid.UUID, u UpdateEndpoint) (Endpoint, error) {
	q := s.db.NewUpdate().Model((*Endpoint)(nil)).Where("tenant_id = ?", tenantID).Where("id = ?", id).Set("updated_at = now()")
	if u.URL != nil {
		v, err := s.checkURL(ctx, *u.URL)
		if err != nil {
			return Endpoint{}, err
		}
		q = q.Set("url = ?", v)
	}
	if u.Events != nil {
		ev, err := checkEvents(u.Events)
		if err != nil {
			return Endpoint{}, err
		}
		q = q.Set("events = ?", pgdialect.Array(ev))
	}
	if u.Description != nil {
		if err := validate.OptionalText("description", *u.Description, MaxDescriptionLen); err != nil {
			return Endpoint{}, err
		}
		q = q.Set("description = ?", *u.Description)
	}
	if u.Enabled != nil {
		q = q.Set("enabled = ?", *u.Enabled)
	}
	var ep Endpoint
	if err := q.Returning("*").Scan(ctx, &ep); err != nil {
		if database.IsNoRows(err) {
			return Endpoint{}, ErrNotFound
		}
		return Endpoint{}, apperr.Classify(err)
	}
	s.subs.invalidate(ctx, tenantID)
	return ep, nil
}

// Delete removes endpoint id of tenantID with its deliveries and their attempts.
// Errors: ErrNotFound, apperr kinds.
func (s *Service) Delete(ctx context.Context, tenantID, id uuid.UUID) error {
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewDelete().Model((*Endpoint)(nil)).Where("tenant_id = ?", tenantID).Where("id = ?", id).Exec(ctx)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNotFound
		}
		// Attempts go with their deliveries (ON DELETE CASCADE).
		_, err = tx.NewDelete().Model((*Delivery)(nil)).Where("endpoint_id = ?", id).Exec(ctx)
		return err
	})
	if err != nil {
		return apperr.Classify(err)
	}
	s.subs.invalidate(ctx, tenantID)
	return nil
}

// RotateSecret gives endpoint id of tenantID a new signing secret, returned this once; the
// current one becomes the previous secret and still signs deliveries (a second v1= entry)
// for SecretOverlap (24 h). A secret that was already previous is dropped. Errors:
// ErrNotFound, apperr kinds.
func (s *Service) RotateSecret(ctx context.Context, tenantID, id uuid.UUID) (Endpoint, string, error) {
	secret := NewSecret()
	var ep Endpoint
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		cur, err := s.get(ctx, tx, tenantID, id, true)
		if err != nil {
			return err
		}
		sealed, err := s.d.Sealer.Seal(id, secret)
		if err != nil {
			return fmt.Errorf("seal webhook secret: %w", err)
		}
		return tx.NewUpdate().Model((*Endpoint)(nil)).Where("id = ?", id).
			Set("previous_secret_sealed = ?", cur.SecretSealed).
			Set("previous_secret_expires_at = ?", s.d.Now().Add(SecretOverlap)).
			Set("secret_sealed = ?", sealed).Set("updated_at = now()").
			Returning("*").Scan(ctx, &ep)
	})
	if err != nil {
		return Endpoint{}, "", apperr.Classify(err)
	}
	return ep, secret, nil
}
