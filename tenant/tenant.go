// Package tenant owns tenants and their API keys, and authenticates API requests.
//
// An API key is "bf_" followed by 43 base64url characters (32 random bytes). Only its
// SHA-256 is stored; the key is shown once, when it is issued.
package tenant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/validate"
)

// Errors returned by this package.
var (
	ErrNotFound = apperr.NotFound("tenant_not_found", "tenant not found")
)

// KeyPrefix starts every API key, so leaked keys are recognisable by secret scanners.
const KeyPrefix = "bf_"

// Tenant is a customer of the platform; every other resource belongs to one.
type Tenant struct {
	bun.BaseModel `bun:"table:tenants"`

	ID        uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	Name      string    `bun:",notnull"`
	CreatedAt time.Time `bun:",nullzero,notnull,default:now()"`
}

type apiKey struct {
	bun.BaseModel `bun:"table:api_keys"`

	ID        uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID  uuid.UUID `bun:",notnull,type:uuid"`
	KeyHash   []byte    `bun:",notnull"`
	Prefix    string    `bun:",notnull"`
	CreatedAt time.Time `bun:",nullzero,notnull,default:now()"`
	RevokedAt time.Time `bun:",nullzero"`
}

// Service creates tenants and authenticates their keys.
type Service struct {
	db *bun.DB
}

// New returns a Service on db.
func New(db *bun.DB) *Service { return &Service{db: db} }

// Create stores a tenant named name (validate.Name: 1-200 characters after trimming, no
// control characters) and issues its first API key, returned in clear text only here.
// Errors: validate's invalid_field (422, field "name"); apperr.ErrUnavailable.
func (s *Service) Create(ctx context.Context, name string) (Tenant, string, error) {
	name, err := validate.Name("name", name, validate.MaxNameLen)
	if err != nil {
		return Tenant{}, "", err
	}
	key, hash, err := newKey()
	if err != nil {
		return Tenant{}, "", err
	}
	t := Tenant{Name: name}
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if _, err := tx.NewInsert().Model(&t).Returning("*").Exec(ctx); err != nil {
			return fmt.Errorf("insert tenant: %w", err)
		}
		k := apiKey{TenantID: t.ID, KeyHash: hash, Prefix: key[:len(KeyPrefix)+6]}
		if _, err := tx.NewInsert().Model(&k).Exec(ctx); err != nil {
			return fmt.Errorf("insert api key: %w", err)
		}
		return nil
	})
	if err != nil {
		return Tenant{}, "", apperr.Classify(err)
	}
	return t, key, nil
}

// Get returns the tenant id. Errors: ErrNotFound; apperr.ErrUnavailable.
func (s *Service) Get(ctx context.Context, id uuid.UUID) (Tenant, error) {
	var t Tenant
	if err := s.db.NewSelect().Model(&t).Where("id = ?", id).Scan(ctx); err != nil {
		if database.IsNoRows(err) {
			return Tenant{}, ErrNotFound
		}
		return Tenant{}, apperr.Classify(err)
	}
	return t, nil
}

// Authenticate returns the tenant owning rawKey. The key is looked up by its SHA-256, so
// timing reveals nothing about stored keys. Errors: apperr.ErrUnauthorized for an empty,
// unknown or revoked key; apperr.ErrUnavailable when PostgreSQL is down.
func (s *Service) Authenticate(ctx context.Context, rawKey string) (Tenant, error) {
	if !strings.HasPrefix(rawKey, KeyPrefix) || len(rawKey) > 128 {
		return Tenant{}, apperr.ErrUnauthorized
	}
	h := sha256.Sum256([]byte(rawKey))
	var t Tenant
	err := s.db.NewSelect().Model(&t).
		Join("JOIN api_keys AS k ON k.tenant_id = tenant.id").
		Where("k.key_hash = ?", h[:]).Where("k.revoked_at IS NULL").
		Limit(1).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Tenant{}, apperr.ErrUnauthorized
		}
		return Tenant{}, apperr.Classify(err)
	}
	return t, nil
}

func newKey() (key string, hash []byte, err error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, fmt.Errorf("random: %w", err)
	}
	key = KeyPrefix + base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(key))
	return key, h[:], nil
}

type ctxKey struct{}

// WithTenant returns ctx carrying t.
func WithTenant(ctx context.Context, t Tenant) context.Context {
	return context.WithValue(ctx, ctxKey{}, t)
}

// FromContext returns the tenant stored by WithTenant.
func FromContext(ctx context.Context) (Tenant, bool) {
	t, ok := ctx.Value(ctxKey{}).(Tenant)
	return t, ok
}

// MustFromContext returns the tenant stored by WithTenant or an Unauthorized error.
func MustFromContext(ctx context.Context) (Tenant, error) {
	t, ok := FromContext(ctx)
	if !ok {
		return Tenant{}, apperr.ErrUnauthorized
	}
	return t, nil
}
