package tenant

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/validate"
)

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// waitSubscribed waits until s's auth cache is subscribed to KeyInvalidationChannel.
func waitSubscribed(t *testing.T, s *Service) {
	t.Helper()
	s.cache.Start()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		up := s.cache.Subscribed()
		if up {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("auth cache never subscribed")
}

// refusedWithin polls s with key until it is refused (401) and returns how long that took;
// it fails the test past limit.
func refusedWithin(t *testing.T, s *Service, key string, limit time.Duration) time.Duration {
	t.Helper()
	ctx := context.Background()
	start := time.Now()
	for {
		_, _, err := s.AuthenticateKey(ctx, key)
		if errors.Is(err, apperr.ErrUnauthorized) {
			return time.Since(start)
		}
		if err != nil {
			t.Fatalf("authenticate: %v", err)
		}
		if time.Since(start) > limit {
			t.Fatalf("key still accepted %v after its revocation", time.Since(start))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestService_CreateKey(t *testing.T) {
	db := testenv.DB(t)
	s := New(db)
	defer s.Close()
	ctx := context.Background()
	ten, defKey, err := s.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	keys, next, err := s.ListKeys(ctx, ten.ID, KeyFilter{})
	if err != nil || next != "" || len(keys) != 1 {
		t.Fatalf("list: %v %q %d", err, next, len(keys))
	}
	if k := keys[0]; k.Name != DefaultKeyName || !slices.Equal(k.Scopes, AllScopes) || k.Prefix != defKey[:9] || len(k.KeyHash) != 0 || !k.LastUsedAt.IsZero() {
		t.Fatalf("default key: %+v", k)
	}

	for _, tc := range []struct {
		in   []string
		want []string
	}{
		{[]string{"read"}, []string{"read"}},
		{[]string{"WRITE"}, []string{"read", "write"}},
		{[]string{"admin", "read"}, []string{"read", "write", "admin"}},
	} {
		k, raw, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "  k-" + strings.Join(tc.in, "-") + " ", Scopes: tc.in})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(k.Scopes, tc.want) || !strings.HasPrefix(raw, KeyPrefix) || k.Prefix != raw[:9] || strings.HasSuffix(k.Name, " ") {
			t.Fatalf("%v: %+v", tc.in, k)
		}
		_, got, err := s.AuthenticateKey(ctx, raw)
		if err != nil || got.ID != k.ID || got.Name != k.Name || !slices.Equal(got.Scopes, tc.want) {
			t.Fatalf("authenticate %v: %+v %v", tc.in, got, err)
		}
	}

	bad := []struct {
		name  string
		in    NewAPIKey
		field string
	}{
		{"empty name", NewAPIKey{Name: " ", Scopes: []string{"read"}}, "name"},
		{"long name", NewAPIKey{Name: strings.Repeat("x", 201), Scopes: []string{"read"}}, "name"},
		{"control char", NewAPIKey{Name: "a\x00b", Scopes: []string{"read"}}, "name"},
		{"no scopes", NewAPIKey{Name: "x"}, "scopes"},
		{"unknown scope", NewAPIKey{Name: "x", Scopes: []string{"read", "owner"}}, "scopes"},
	}
	for _, b := range bad {
		if _, _, err := s.CreateKey(ctx, ten.ID, b.in); !errors.Is(err, validate.ErrInvalidField) || validate.FieldOf(err) != b.field {
			t.Errorf("%s: %v (field %q)", b.name, err, validate.FieldOf(err))
		}
	}
	if _, _, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: strings.Repeat("é", 200), Scopes: []string{"read"}}); err != nil {
		t.Errorf("200 characters: %v", err)
	}
	if _, _, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "default", Scopes: []string{"read"}}); !errors.Is(err, ErrKeyNameTaken) {
		t.Fatalf("taken name: %v", err)
	}
	// Another tenant may use the same name.
	other, _, err := s.Create(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateKey(ctx, other.ID, NewAPIKey{Name: "k-read", Scopes: []string{"read"}}); err != nil {
		t.Fatalf("same name, other tenant: %v", err)
	}
	// Pages, newest first.
	var all []APIKey
	cursor := ""
	for {
		page, next, err := s.ListKeys(ctx, ten.ID, KeyFilter{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 5 || all[len(all)-1].Name != DefaultKeyName {
		t.Fatalf("pages: %d keys, last %q", len(all), all[len(all)-1].Name)
	}
}

func TestService_CreateKey_Limit(t *testing.T) {
	db := testenv.DB(t)
	s := New(db)
	defer s.Close()
	ctx := context.Background()
	ten, _, err := s.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var last APIKey
	for i := 1; i < MaxLiveKeys; i++ {
		if last, _, err = s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "k" + uuid.NewString(), Scopes: []string{"read"}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "one too many", Scopes: []string{"read"}}); !errors.Is(err, ErrKeyLimit) {
		t.Fatalf("over the limit: %v", err)
	}
	if err := s.RevokeKey(ctx, ten.ID, last.ID); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "one too many", Scopes: []string{"read"}}); err != nil {
		t.Fatalf("after a revocation: %v", err)
	}
}

func TestService_RevokeKey(t *testing.T) {
	db := testenv.DB(t)
	s := New(db, WithRedis(testenv.Redis(t)))
	defer s.Close()
	ctx := context.Background()
	ten, defKey, err := s.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := s.Create(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	_, def, err := s.AuthenticateKey(ctx, defKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, ten.ID, def.ID); !errors.Is(err, ErrLastAdminKey) {
		t.Fatalf("last admin key: %v", err)
	}
	if err := s.RevokeKey(ctx, other.ID, def.ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("another tenant's key: %v", err)
	}
	if _, err := s.GetKey(ctx, other.ID, def.ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("get another tenant's key: %v", err)
	}
	reader, readKey, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "reader", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	admin2, admin2Key, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "admin2", Scopes: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.AuthenticateKey(ctx, readKey); err != nil { // cached now
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, ten.ID, reader.ID); err != nil {
		t.Fatal(err)
	}
	// Refused at once by the revoking process, even though it was cached.
	if _, _, err := s.AuthenticateKey(ctx, readKey); !errors.Is(err, apperr.ErrUnauthorized) {
		t.Fatalf("revoked key: %v", err)
	}
	if err := s.RevokeKey(ctx, ten.ID, reader.ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("revoke twice: %v", err)
	}
	if _, err := s.GetKey(ctx, ten.ID, reader.ID); !errors.Is(err, ErrKeyNotFound) {
		t.Fatalf("get revoked: %v", err)
	}
	// The name of a revoked key is free again.
	if _, _, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "reader", Scopes: []string{"read"}}); err != nil {
		t.Fatalf("reuse a revoked key's name: %v", err)
	}
	// Two admin keys: the default one can go, then admin2 is the last.
	if err := s.RevokeKey(ctx, ten.ID, def.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.RevokeKey(ctx, ten.ID, admin2.ID); !errors.Is(err, ErrLastAdminKey) {
		t.Fatalf("last admin key: %v", err)
	}
	if _, _, err := s.AuthenticateKey(ctx, admin2Key); err != nil {
		t.Fatal(err)
	}

	// Concurrent revocations of two admin keys: one wins, the other is the last (409).
	admin3, _, err := s.CreateKey(ctx, ten.ID, NewAPIKey{Name: "admin3", Scopes: []string{"admin"}})
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for _, id := range []uuid.UUID{admin2.ID, admin3.ID} {
		go func() { errs <- s.RevokeKey(ctx, ten.ID, id) }()
	}
	e1, e2 := <-errs, <-errs
	if (e1 == nil) == (e2 == nil) || !errors.Is(errors.Join(e1, e2), ErrLastAdminKey) {
		t.Fatalf("concurrent revocations: %v, %v", e1, e2)
	}
}

// TestAuthCache_RevocationAcrossProcesses: two Services (two API processes) on one
// database and one Redis. B caches a key; A revokes it; B refuses it within a second. With
// B subscribed its cache TTL is KeyCacheTTL (10 s), so only the pub/sub message can make
// it that fast. Then with B's Redis unreachable, the 1-second TTL does it.
func TestAuthCache_RevocationAcrossProcesses(t *testing.T) {
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	ctx := context.Background()
	a := New(db, WithRedis(rdb))
	defer a.Close()
	b := New(db, WithRedis(rdb))
	defer b.Close()
	ten, _, err := a.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	k, raw, err := a.CreateKey(ctx, ten.ID, NewAPIKey{Name: "ci", Scopes: []string{"write"}})
	if err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, b)
	if _, _, err := b.AuthenticateKey(ctx, raw); err != nil {
		t.Fatal(err)
	}
	cached := b.cache.Len()
	if cached != 1 {
		t.Fatalf("B caches %d entries", cached)
	}
	if err := a.RevokeKey(ctx, ten.ID, k.ID); err != nil {
		t.Fatal(err)
	}
	d := refusedWithin(t, b, raw, time.Second)
	t.Logf("subscribed: refused by B %v after the revocation", d)

	// B's Redis is unreachable: no subscription, entries live 1 s.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer dead.Close()
	c := New(db, WithRedis(dead))
	defer c.Close()
	k2, raw2, err := a.CreateKey(ctx, ten.ID, NewAPIKey{Name: "ci2", Scopes: []string{"read"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.AuthenticateKey(ctx, raw2); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	if _, _, err := c.AuthenticateKey(ctx, raw2); err != nil { // served from the cache
		t.Fatal(err)
	}
	if err := a.RevokeKey(ctx, ten.ID, k2.ID); err != nil {
		t.Fatal(err)
	}
	d = refusedWithin(t, c, raw2, KeyCacheUnsubscribedTTL+100*time.Millisecond)
	t.Logf("Redis down: refused by C %v after the revocation", d)
}

// TestAuthCache_Caches: a cached key costs no query: with PostgreSQL gone (the pool
// closed), a key authenticated a moment ago still authenticates; an unknown key does not.
func TestAuthCache_Caches(t *testing.T) {
	db := testenv.DB(t)
	s := New(db, WithRedis(testenv.Redis(t)))
	defer s.Close()
	ctx := context.Background()
	_, raw, err := s.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	waitSubscribed(t, s)
	if _, _, err := s.AuthenticateKey(ctx, raw); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, _, err := s.AuthenticateKey(ctx, raw); err != nil {
		t.Fatalf("cached key without PostgreSQL: %v", err)
	}
	if _, _, err := s.AuthenticateKey(ctx, KeyPrefix+strings.Repeat("A", 43)); err == nil || errors.Is(err, apperr.ErrUnauthorized) {
		t.Fatalf("unknown key without PostgreSQL: %v, want unavailable", err)
	}
}

// TestService_LastUsedAt: last_used_at is written on first use, then at most once per
// LastUsedInterval per key, whatever the number of requests and processes.
func TestService_LastUsedAt(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	t0 := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	clk := &fakeClock{t: t0}
	a := New(db, WithClock(clk.now))
	defer a.Close()
	b := New(db, WithClock(clk.now)) // a second process
	defer b.Close()
	ten, raw, err := a.Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	_, k, err := a.AuthenticateKey(ctx, raw)
	if err != nil {
		t.Fatal(err)
	}
	lastUsed := func() time.Time {
		t.Helper()
		got, err := a.GetKey(ctx, ten.ID, k.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.LastUsedAt.UTC()
	}
	if got := lastUsed(); !got.Equal(t0) {
		t.Fatalf("after first use: %v, want %v", got, t0)
	}
	steps := []struct {
		at   time.Duration
		svc  *Service
		want time.Duration
	}{
		{10 * time.Second, a, 0},
		{30 * time.Second, b, 0}, // another process: the UPDATE's condition skips the row
		{59 * time.Second, a, 0},
		{61 * time.Second, a, 61 * time.Second},
		{100 * time.Second, b, 61 * time.Second},
		{122 * time.Second, b, 122 * time.Second},
	}
	for _, st := range steps {
		clk.set(t0.Add(st.at))
		for range 20 {
			if _, _, err := st.svc.AuthenticateKey(ctx, raw); err != nil {
				t.Fatal(err)
			}
		}
		if got := lastUsed(); !got.Equal(t0.Add(st.want)) {
			t.Fatalf("at +%v: last_used_at %v, want +%v", st.at, got.Sub(t0), st.want)
		}
	}
}
