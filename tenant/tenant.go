// Package tenant owns tenants and their API keys, and authenticates API requests.
//
// An API key is "bf_" followed by 43 base64url characters (32 random bytes). Only its
// SHA-256 is stored; the key is shown once, when it is issued. A tenant holds several named
// keys (apikeys.go), each with scopes (read, write, admin); the key of a request is on its
// context (KeyFromContext), authenticated through an in-process cache that Redis pub/sub
// keeps fresh (authcache.go).
package tenant

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
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

// Service creates tenants, manages their API keys and authenticates requests.
type Service struct {
	db    *bun.DB
	rdb   redis.UniversalClient // nil: the auth cache runs in its 1-second mode
	log   *slog.Logger
	now   func() time.Time
	cache *authCache

	touchMu sync.Mutex
	touched map[uuid.UUID]time.Time // key id -> when this process last wrote its last_used_at (s.now)
}

// Option configures a Service built by New.
type Option func(*Service)

// WithRedis makes the Service publish key revocations on KeyInvalidationChannel and
// subscribe to it, so that its authentication cache may keep entries for KeyCacheTTL.
// Without it, entries live KeyCacheUnsubscribedTTL (1 s).
func WithRedis(rdb redis.UniversalClient) Option { return func(s *Service) { s.rdb = rdb } }

// WithLogger sets the logger of background failures (publish, last_used_at). Default:
// slog.Default().
func WithLogger(log *slog.Logger) Option { return func(s *Service) { s.log = log } }

// WithClock sets the clock of revoked_at, last_used_at and the once-a-minute rule of
// last_used_at. Default: time.Now.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// New returns a Service on db. Call Close when done if WithRedis was given (it stops the
// cache's subscription).
func New(db *bun.DB, opts ...Option) *Service {
	s := &Service{db: db, log: slog.Default(), now: time.Now, touched: map[uuid.UUID]time.Time{}}
	for _, o := range opts {
		o(s)
	}
	s.cache = newAuthCache(s.rdb, s.log, s.loadKey)
	return s
}

// Close stops the authentication cache's Redis subscription. It does not close db or the
// Redis client.
func (s *Service) Close() { s.cache.Close() }

// Create stores a tenant named name (validate.Name: 1-200 characters after trimming, no
// control characters) and issues its first API key, named DefaultKeyName with every scope,
// returned in clear text only here.
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
		k := APIKey{TenantID: t.ID, Name: DefaultKeyName, Scopes: slices.Clone(AllScopes), KeyHash: hash, Prefix: keyPrefix(key)}
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

// Authenticate returns the tenant owning rawKey; see AuthenticateKey.
func (s *Service) Authenticate(ctx context.Context, rawKey string) (Tenant, error) {
	t, _, err := s.AuthenticateKey(ctx, rawKey)
	return t, err
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

// keyPrefix is the stored, non-secret start of key shown to recognise it: "bf_" and the
// first 6 characters of the random part (36 of its 256 bits).
func keyPrefix(key string) string { return key[:len(KeyPrefix)+6] }

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
