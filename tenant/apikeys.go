package tenant

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
)

// Scopes of an API key. They nest: admin implies write, write implies read, and a key
// stores its scopes expanded (a key created with ["write"] holds ["read", "write"]).
//
//   - read: GET and HEAD of the tenant API (bots, contacts, messages, broadcasts, events).
//   - write: every other method of the tenant API (create, change, delete, send, cancel),
//     except API key management.
//   - admin: API key management (/api-keys/, every method, listing included).
const (
	ScopeRead  = "read"
	ScopeWrite = "write"
	ScopeAdmin = "admin"
)

// AllScopes are the scopes from the weakest to the strongest; the default key holds all.
var AllScopes = []string{ScopeRead, ScopeWrite, ScopeAdmin}

// DefaultKeyName names the key created with its tenant (and, by the migration, every key
// issued before keys had names).
const DefaultKeyName = "default"

// MaxLiveKeys is how many live (not revoked) keys one tenant may hold; one more is a 409
// api_key_limit_reached.
const MaxLiveKeys = 100

// LastUsedInterval is the resolution of last_used_at: a key's row is written at most once
// per interval (per process, and the UPDATE itself skips a value written less than an
// interval ago by another process), never once per request.
const LastUsedInterval = time.Minute

// Errors of API key management and authorization.
var (
	ErrKeyNotFound       = apperr.NotFound("api_key_not_found", "API key not found")
	ErrKeyNameTaken      = apperr.Conflict("api_key_name_taken", "a live API key of this tenant already has this name")
	ErrLastAdminKey      = apperr.Conflict("last_admin_key", "this is the tenant's last live key with the admin scope; create another admin key before revoking it")
	ErrKeyLimit          = apperr.Conflict("api_key_limit_reached", fmt.Sprintf("a tenant may hold at most %d live API keys; revoke one first", MaxLiveKeys))
	ErrInsufficientScope = apperr.New(apperr.KindForbidden, "insufficient_scope", "the API key's scopes do not allow this request")
)

// APIKey is a stored API key: its identity, never its secret (only the SHA-256 is kept).
type APIKey struct {
	bun.BaseModel `bun:"table:api_keys,alias:k"`

	ID       uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID uuid.UUID `bun:",notnull,type:uuid"`
	// Name is 1-200 characters, unique among the tenant's live keys.
	Name string `bun:",notnull"`
	// Scopes is expanded and in AllScopes order, e.g. ["read", "write"].
	Scopes []string `bun:",array,notnull"`
	// KeyHash is the SHA-256 of the key.
	KeyHash []byte `bun:",notnull"`
	// Prefix is the key's first 9 characters ("bf_" and 6 more), shown to recognise it.
	Prefix    string    `bun:",notnull"`
	CreatedAt time.Time `bun:",nullzero,notnull,default:now()"`
	// LastUsedAt is when a request last authenticated with the key, to LastUsedInterval;
	// zero when never used.
	LastUsedAt time.Time `bun:",nullzero"`
	RevokedAt  time.Time `bun:",nullzero"`
}

// Key is the identity of the API key that authenticated a request (KeyFromContext): what
// later features record as "who did it" (the key's Name as the editor).
type Key struct {
	ID     uuid.UUID
	Name   string
	Scopes []string // expanded, in AllScopes order; shared with the auth cache: do not modify
}

// Allows reports whether k holds scope (scopes are stored expanded, so admin holds write
// and read).
func (k Key) Allows(scope string) bool { return slices.Contains(k.Scopes, scope) }

// Key returns the identity part of a stored key.
func (k APIKey) Key() Key { return Key{ID: k.ID, Name: k.Name, Scopes: k.Scopes} }

type keyCtxKey struct{}

// WithKey returns ctx carrying k.
func WithKey(ctx context.Context, k Key) context.Context {
	return context.WithValue(ctx, keyCtxKey{}, k)
}

// KeyFromContext returns the API key stored by WithKey (set by the API's authentication for
// every tenant request).
func KeyFromContext(ctx context.Context) (Key, bool) {
	k, ok := ctx.Value(keyCtxKey{}).(Key)
	return k, ok
}

// InsufficientScope is ErrInsufficientScope (403) for a request that needs scope, with
// details {"required_scope": scope, "scopes": the key's scopes}.
func InsufficientScope(k Key, scope string) error {
	return ErrInsufficientScope.
		WithMessage("this request needs an API key with the %q scope; this key (%q) has %s", scope, k.Name, strings.Join(k.Scopes, ", ")).
		WithDetails(map[string]any{"required_scope": scope, "scopes": k.Scopes})
}

// NewAPIKey is the input of CreateKey.
type NewAPIKey struct {
	// Name: validate.Name, 1-200 characters, unique among the tenant's live keys.
	Name string
	// Scopes: one or more of read, write, admin (case-insensitive); expanded on save.
	Scopes []string
}

// KeyFilter selects a page of ListKeys: newest first.
type KeyFilter struct {
	Cursor string // a next_cursor of a previous page; "" for the first
	Limit  int    // 0: page.DefaultLimit; at most page.MaxLimit
}

// expandScopes validates scopes (field "scopes") and returns them expanded and ordered.
func expandScopes(scopes []string) ([]string, error) {
	if len(scopes) == 0 {
		return nil, validate.Field("scopes", "scopes is required: one or more of %q, %q, %q", ScopeRead, ScopeWrite, ScopeAdmin)
	}
	top := -1
	for _, raw := range scopes {
		sc, err := validate.Enum("scopes", raw, AllScopes...)
		if err != nil {
			return nil, err
		}
		top = max(top, slices.Index(AllScopes, sc))
	}
	return slices.Clone(AllScopes[:top+1]), nil
}

// lockTenant serialises the key changes of tenantID (creation limit, last admin key) on
// its tenants row. Errors: ErrNotFound.
func lockTenant(ctx context.Context, tx bun.Tx, tenantID uuid.UUID) error {
	var id uuid.UUID
	err := tx.NewSelect().Table("tenants").Column("id").Where("id = ?", tenantID).For("UPDATE").Scan(ctx, &id)
	if database.IsNoRows(err) {
		return ErrNotFound
	}
	return err
}

// CreateKey issues a new API key for tenantID and returns it with the key in clear text,
// shown this once. Errors: invalid_field (422; field "name" or "scopes"),
// ErrKeyNameTaken (409), ErrKeyLimit (409), apperr.ErrUnavailable.
func (s *Service) CreateKey(ctx context.Context, tenantID uuid.UUID, in NewAPIKey) (APIKey, string, error) {
	name, err := validate.Name("name", in.Name, validate.MaxNameLen)
	if err != nil {
		return APIKey{}, "", err
	}
	scopes, err := expandScopes(in.Scopes)
	if err != nil {
		return APIKey{}, "", err
	}
	key, hash, err := newKey()
	if err != nil {
		return APIKey{}, "", err
	}
	k := APIKey{TenantID: tenantID, Name: name, Scopes: scopes, KeyHash: hash, Prefix: keyPrefix(key)}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := lockTenant(ctx, tx, tenantID); err != nil {
			return err
		}
		n, err := tx.NewSelect().Model((*APIKey)(nil)).Where("tenant_id = ?", tenantID).Where("revoked_at IS NULL").Count(ctx)
		if err != nil {
			return fmt.Errorf("count api keys: %w", err)
		}
		if n >= MaxLiveKeys {
			return ErrKeyLimit
		}
		if _, err := tx.NewInsert().Model(&k).Returning("*").Exec(ctx); err != nil {
			if database.IsUniqueViolation(err, "api_keys_tenant_name_live_idx") {
				return ErrKeyNameTaken.WithDetails(map[string]any{"field": "name"})
			}
			return fmt.Errorf("insert api key: %w", err)
		}
		return nil
	})
	if err != nil {
		return APIKey{}, "", apperr.Classify(err)
	}
	return k, key, nil
}

// ListKeys returns one page of tenantID's live keys, newest first, and the next cursor ("":
// last page). Revoked keys are not listed. Errors: page.ErrBadCursor, page.ErrBadLimit,
// apperr.ErrUnavailable.
func (s *Service) ListKeys(ctx context.Context, tenantID uuid.UUID, f KeyFilter) ([]APIKey, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	var keys []APIKey
	q := s.db.NewSelect().Model(&keys).ExcludeColumn("key_hash").
		Where("?TableAlias.tenant_id = ?", tenantID).Where("?TableAlias.revoked_at IS NULL")
	if err := page.Newest(q, "k", after, limit).Scan(ctx); err != nil {
		return nil, "", apperr.Classify(err)
	}
	keys, next := page.Trim(keys, limit, func(k APIKey) (time.Time, uuid.UUID) { return k.CreatedAt, k.ID })
	return keys, next, nil
}

// GetKey returns tenantID's live key id. Errors: ErrKeyNotFound (also for another tenant's
// or a revoked key), apperr.ErrUnavailable.
func (s *Service) GetKey(ctx context.Context, tenantID, id uuid.UUID) (APIKey, error) {
	var k APIKey
	err := s.db.NewSelect().Model(&k).ExcludeColumn("key_hash").
		Where("tenant_id = ?", tenantID).Where("id = ?", id).Where("revoked_at IS NULL").Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return APIKey{}, ErrKeyNotFound
		}
		return APIKey{}, apperr.Classify(err)
	}
	return k, nil
}

// RevokeKey revokes tenantID's live key id: from the commit on, this process refuses it at
// once and every other process within a second (see authCache). The key of the calling
// request may be revoked (that request completes; the next one is a 401). Errors:
// ErrKeyNotFound (unknown, another tenant's, already revoked), ErrLastAdminKey (the
// tenant's last live admin key: the tenant would lose key management), apperr.ErrUnavailable.
func (s *Service) RevokeKey(ctx context.Context, tenantID, id uuid.UUID) error {
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := lockTenant(ctx, tx, tenantID); err != nil {
			if errors.Is(err, ErrNotFound) {
				return ErrKeyNotFound
			}
			return err
		}
		var k APIKey
		err := tx.NewSelect().Model(&k).Column("id", "scopes").
			Where("tenant_id = ?", tenantID).Where("id = ?", id).Where("revoked_at IS NULL").Scan(ctx)
		if err != nil {
			if database.IsNoRows(err) {
				return ErrKeyNotFound
			}
			return err
		}
		if slices.Contains(k.Scopes, ScopeAdmin) {
			n, err := tx.NewSelect().Model((*APIKey)(nil)).Where("tenant_id = ?", tenantID).
				Where("revoked_at IS NULL").Where("? = ANY(scopes)", ScopeAdmin).Count(ctx)
			if err != nil {
				return err
			}
			if n <= 1 {
				return ErrLastAdminKey
			}
		}
		_, err = tx.NewUpdate().Model((*APIKey)(nil)).Set("revoked_at = ?", s.now().UTC()).Where("id = ?", id).Exec(ctx)
		return err
	})
	if err != nil {
		return apperr.Classify(err)
	}
	if err := s.cache.Invalidate(ctx, id); err != nil {
		s.log.WarnContext(ctx, "tenant: API key revocation not published; retrying in the background", "api_key_id", id.String(), "error", err)
	}
	return nil
}

// AuthenticateKey returns the tenant owning rawKey and the key's identity. The key is
// looked up by its SHA-256 (timing reveals nothing about stored keys), through the
// process's authentication cache (authCache): a revoked key is refused by this process at
// once and by every other within a second. It records last_used_at at most once per
// LastUsedInterval per key (a failure to write it is logged, not returned). Errors:
// apperr.ErrUnauthorized for an empty, malformed, unknown or revoked key;
// apperr.ErrUnavailable when PostgreSQL is down (and the key is not cached).
func (s *Service) AuthenticateKey(ctx context.Context, rawKey string) (Tenant, Key, error) {
	if !strings.HasPrefix(rawKey, KeyPrefix) || len(rawKey) > 128 {
		return Tenant{}, Key{}, apperr.ErrUnauthorized
	}
	h := sha256.Sum256([]byte(rawKey))
	e, err := s.cache.Get(ctx, h)
	if err != nil {
		return Tenant{}, Key{}, err
	}
	s.touch(ctx, e.key.ID)
	return e.tenant, e.key, nil
}

// loadKey is the cache's PostgreSQL lookup of a live key by hash. Errors:
// apperr.ErrUnauthorized, apperr.ErrUnavailable.
func (s *Service) loadKey(ctx context.Context, hash [32]byte) (authEntry, error) {
	var row struct {
		TenantID        uuid.UUID
		TenantName      string
		TenantCreatedAt time.Time
		ID              uuid.UUID
		Name            string
		Scopes          []string `bun:",array"`
	}
	err := s.db.NewRaw(`SELECT t.id AS tenant_id, t.name AS tenant_name, t.created_at AS tenant_created_at,
		k.id, k.name, k.scopes
		FROM api_keys AS k JOIN tenants AS t ON t.id = k.tenant_id
		WHERE k.key_hash = ? AND k.revoked_at IS NULL LIMIT 1`, hash[:]).Scan(ctx, &row)
	if err != nil {
		if database.IsNoRows(err) {
			return authEntry{}, apperr.ErrUnauthorized
		}
		return authEntry{}, apperr.Classify(err)
	}
	return authEntry{
		tenant: Tenant{ID: row.TenantID, Name: row.TenantName, CreatedAt: row.TenantCreatedAt},
		key:    Key{ID: row.ID, Name: row.Name, Scopes: row.Scopes},
	}, nil
}

// touchMaxKeys bounds the map of last_used_at writes; past it the map is emptied (the
// UPDATE's own condition still keeps writes to one per interval).
const touchMaxKeys = 100_000

// touch writes key id's last_used_at when, as far as this process knows, it is
// LastUsedInterval old. The UPDATE skips a row written less than an interval ago (by
// another process) and then returns the stored time, which this process adopts: the row
// changes at most once per interval whatever the number of processes, and lags the last
// use by at most an interval.
func (s *Service) touch(ctx context.Context, id uuid.UUID) {
	now := s.now().UTC()
	s.touchMu.Lock()
	last, ok := s.touched[id]
	due := !ok || now.Sub(last) >= LastUsedInterval || now.Before(last.Add(-LastUsedInterval))
	if due {
		if len(s.touched) >= touchMaxKeys {
			clear(s.touched)
		}
		s.touched[id] = now
	}
	s.touchMu.Unlock()
	if !due {
		return
	}
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	var stored time.Time
	err := s.db.NewRaw(`WITH u AS (
			UPDATE api_keys SET last_used_at = ?
			WHERE id = ? AND (last_used_at IS NULL OR last_used_at <= ?)
			RETURNING last_used_at)
		SELECT coalesce((SELECT last_used_at FROM u), (SELECT last_used_at FROM api_keys WHERE id = ?), ?)`,
		now, id, now.Add(-LastUsedInterval), id, now).Scan(uctx, &stored)
	if err != nil {
		s.log.WarnContext(ctx, "tenant: last_used_at not recorded", "api_key_id", id.String(), "error", err)
		return
	}
	if stored.Before(now) {
		s.touchMu.Lock()
		s.touched[id] = stored.UTC()
		s.touchMu.Unlock()
	}
}
