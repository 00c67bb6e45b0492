package callbacks_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram"
)

func TestIsPrivate(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1": true, "127.8.9.10": true, "10.0.0.1": true, "172.16.0.1": true, "172.31.255.255": true, "192.168.1.1": true,
		"169.254.169.254": true, "169.254.0.1": true, "0.0.0.0": true, "100.64.0.1": true, "100.127.255.254": true,
		"224.0.0.1": true, "255.255.255.255": true, "198.18.0.1": true,
		"::1": true, "::": true, "fe80::1": true, "fc00::1": true, "fd12:3456::1": true, "ff02::1": true,
		"::ffff:127.0.0.1": true, "::ffff:10.1.2.3": true, "64:ff9b::a00:1": true, "2002:7f00:1::": true, "fe80::1%eth0": true,
		"8.8.8.8": false, "1.1.1.1": false, "172.32.0.1": false, "100.128.0.1": false, "2606:4700:4700::1111": false,
		"::ffff:8.8.8.8": false, "64:ff9b::808:808": false,
	} {
		if got := callbacks.IsPrivate(netip.MustParseAddr(addr)); got != want {
			t.Errorf("IsPrivate(%s) = %v, want %v", addr, got, want)
		}
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 4: 80 * time.Second, 30: time.Hour} {
		for range 20 {
			d := callbacks.Backoff(n, 10*time.Second, time.Hour)
			if d < want*9/10 || d > want*11/10 {
				t.Fatalf("Backoff(%d) = %s, want %s ±10%%", n, d, want)
			}
		}
	}
}

func TestSignatureHeader(t *testing.T) {
	body := []byte(`{"id":"x","type":"message.received"}`)
	h := callbacks.SignatureHeader(1700000000, body, "whsec_new", "whsec_old")
	mac := func(secret string) string {
		m := hmac.New(sha256.New, []byte(secret))
		m.Write([]byte("1700000000."))
		m.Write(body)
		return hex.EncodeToString(m.Sum(nil))
	}
	if want := "t=1700000000,v1=" + mac("whsec_new") + ",v1=" + mac("whsec_old"); h != want {
		t.Fatalf("header %s, want %s", h, want)
	}
}

// queryCounter counts the queries run on a bun.DB.
type queryCounter struct{ n atomic.Int64 }

func (c *queryCounter) BeforeQuery(ctx context.Context, _ *bun.QueryEvent) context.Context {
	c.n.Add(1)
	return ctx
}
func (c *queryCounter) AfterQuery(context.Context, *bun.QueryEvent) {}

// TestEmit_NoSubscriberNoQuery: the hot paths' promise. Emitting for a tenant with no
// endpoint costs one query to load its (empty) subscriptions, then none; with an
// endpoint, one INSERT per EmitMany whatever the number of events.
func TestEmit_NoSubscriberNoQuery(t *testing.T) {
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	counter := &queryCounter{}
	counted := db.WithQueryHook(counter)
	keys, err := telegram.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	cb := callbacks.New(callbacks.Deps{DB: counted, Redis: rdb, Sealer: keys, AllowPrivate: true})
	defer cb.Close()
	ctx := context.Background()
	var tid uuid.UUID
	if err := db.NewRaw("INSERT INTO tenants (name) VALUES ('t') RETURNING id").Scan(ctx, &tid); err != nil {
		t.Fatal(err)
	}
	events := make([]callbacks.Event, 100)
	for i := range events {
		events[i] = callbacks.Event{TenantID: tid, Type: callbacks.EventMessageReceived, Data: map[string]int{"i": i}}
	}
	for range 50 {
		if err := cb.EmitMany(ctx, db, events); err != nil {
			t.Fatal(err)
		}
	}
	// The cache loads once, and once more if its invalidation subscription came up during
	// the loop (pubcache empties the cache then: invalidations before it were not heard).
	if n := counter.n.Load(); n < 1 || n > 2 {
		t.Fatalf("%d queries for 5000 events nobody subscribed to, want 1 or 2 (the cache load)", n)
	}

	ep, secret, err := cb.Create(ctx, tid, callbacks.NewEndpoint{URL: "http://127.0.0.1:9/x", Events: []string{callbacks.EventMessageReceived}})
	if err != nil || !strings.HasPrefix(secret, "whsec_") {
		t.Fatal(err)
	}
	if strings.Contains(string(ep.SecretSealed), secret) {
		t.Fatal("the secret is stored in the clear")
	}
	time.Sleep(100 * time.Millisecond) // Create's own pub/sub message comes back and drops the entry once more
	before := counter.n.Load()
	if err := cb.EmitMany(ctx, db, events); err != nil {
		t.Fatal(err)
	}
	// One query to reload the tenant's subscriptions (invalidated by Create), then the
	// INSERT runs on db (uncounted).
	if n := counter.n.Load() - before; n != 1 {
		t.Fatalf("%d counted queries after an endpoint was created, want 1", n)
	}
	var stored int
	if err := db.NewRaw("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ?", ep.ID).Scan(ctx, &stored); err != nil || stored != 100 {
		t.Fatalf("%d deliveries stored, want 100 (%v)", stored, err)
	}
	// A disabled endpoint gets nothing, even from a process whose cache is stale.
	stale := callbacks.New(callbacks.Deps{DB: db, Sealer: keys, AllowPrivate: true})
	if ok, err := stale.Wants(ctx, tid, callbacks.EventMessageReceived); err != nil || !ok {
		t.Fatalf("stale Wants = %v, %v", ok, err)
	}
	off := false
	if _, err := cb.Update(ctx, tid, ep.ID, callbacks.UpdateEndpoint{Enabled: &off}); err != nil {
		t.Fatal(err)
	}
	if err := stale.EmitMany(ctx, db, events[:1]); err != nil {
		t.Fatal(err)
	}
	if err := db.NewRaw("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ?", ep.ID).Scan(ctx, &stored); err != nil || stored != 100 {
		t.Fatalf("%d deliveries after disabling, want 100 (%v)", stored, err)
	}
	// Deleting the endpoint deletes its deliveries.
	if err := cb.Delete(ctx, tid, ep.ID); err != nil {
		t.Fatal(err)
	}
	if err := db.NewRaw("SELECT count(*) FROM webhook_deliveries WHERE endpoint_id = ?", ep.ID).Scan(ctx, &stored); err != nil || stored != 0 {
		t.Fatalf("%d deliveries after delete, want 0 (%v)", stored, err)
	}
}

// TestSubscriptionInvalidation: an endpoint created through one process reaches another
// process's cache through Redis pub/sub, well before the cache TTL.
func TestSubscriptionInvalidation(t *testing.T) {
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	keys, _ := telegram.NewKeyring(make([]byte, 32))
	api := callbacks.New(callbacks.Deps{DB: db, Redis: rdb, Sealer: keys, AllowPrivate: true})
	defer api.Close()
	worker := callbacks.New(callbacks.Deps{DB: db, Redis: rdb, Sealer: keys})
	defer worker.Close()
	ctx := context.Background()
	var tid uuid.UUID
	if err := db.NewRaw("INSERT INTO tenants (name) VALUES ('t') RETURNING id").Scan(ctx, &tid); err != nil {
		t.Fatal(err)
	}
	if ok, err := worker.Wants(ctx, tid, callbacks.EventContactCreated); err != nil || ok {
		t.Fatalf("Wants before = %v, %v", ok, err)
	}
	time.Sleep(200 * time.Millisecond) // the worker's subscription is up
	if _, _, err := api.Create(ctx, tid, callbacks.NewEndpoint{URL: "http://127.0.0.1:9/x", Events: []string{"*"}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(callbacks.SubscriptionCacheTTL / 2)
	for {
		ok, err := worker.Wants(ctx, tid, callbacks.EventContactCreated)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the new endpoint did not reach the other process's cache")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPrune: deliveries completed more than DeliveryRetention ago go, with their attempts;
// pending ones and recent ones stay.
func TestPrune(t *testing.T) {
	db := testenv.DB(t)
	keys, _ := telegram.NewKeyring(make([]byte, 32))
	cb := callbacks.New(callbacks.Deps{DB: db, Sealer: keys, AllowPrivate: true})
	ctx := context.Background()
	var tid uuid.UUID
	if err := db.NewRaw("INSERT INTO tenants (name) VALUES ('t') RETURNING id").Scan(ctx, &tid); err != nil {
		t.Fatal(err)
	}
	ep, _, err := cb.Create(ctx, tid, callbacks.NewEndpoint{URL: "http://127.0.0.1:9/x", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := cb.Emit(ctx, db, tid, callbacks.EventContactLinked, map[string]string{}); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-callbacks.DeliveryRetention - time.Hour)
	// One old succeeded (with an attempt), one recent failed, one pending.
	if _, err := db.NewRaw(`UPDATE webhook_deliveries SET status = CASE WHEN id = (SELECT id FROM webhook_deliveries ORDER BY id LIMIT 1) THEN 'succeeded'
		WHEN id = (SELECT id FROM webhook_deliveries ORDER BY id DESC LIMIT 1) THEN 'pending' ELSE 'failed' END,
		completed_at = CASE WHEN id = (SELECT id FROM webhook_deliveries ORDER BY id LIMIT 1) THEN ?::timestamptz
		WHEN id = (SELECT id FROM webhook_deliveries ORDER BY id DESC LIMIT 1) THEN NULL ELSE now() END`, old).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := db.NewRaw(`INSERT INTO webhook_delivery_attempts (delivery_id, attempted_at, succeeded, response_code, duration_ms)
		SELECT id, ?, true, 200, 5 FROM webhook_deliveries WHERE status = 'succeeded'`, old).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	n, err := cb.Prune(ctx)
	if err != nil || n != 1 {
		t.Fatalf("Prune = %d, %v; want 1", n, err)
	}
	var left []string
	if err := db.NewRaw("SELECT status FROM webhook_deliveries WHERE endpoint_id = ? ORDER BY status", ep.ID).Scan(ctx, &left); err != nil {
		t.Fatal(err)
	}
	var attempts int
	_ = db.NewRaw("SELECT count(*) FROM webhook_delivery_attempts").Scan(ctx, &attempts)
	if strings.Join(left, ",") != "failed,pending" || attempts != 0 {
		t.Fatalf("left %v with %d attempts", left, attempts)
	}
}

// fakeResolver answers every host with addrs.
type fakeResolver []netip.Addr

func (f fakeResolver) LookupNetIP(context.Context, string, string) ([]netip.Addr, error) {
	return f, nil
}

// TestCreate_ResolvedHost: a host name is refused when any of its addresses is private,
// accepted when all are public (no connection is made when saving).
func TestCreate_ResolvedHost(t *testing.T) {
	db := testenv.DB(t)
	keys, _ := telegram.NewKeyring(make([]byte, 32))
	ctx := context.Background()
	var tid uuid.UUID
	if err := db.NewRaw("INSERT INTO tenants (name) VALUES ('t') RETURNING id").Scan(ctx, &tid); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		addrs []string
		ok    bool
	}{
		{[]string{"93.184.215.14"}, true},
		{[]string{"93.184.215.14", "10.0.0.1"}, false},
		{[]string{"169.254.169.254"}, false},
		{[]string{"::1"}, false},
	} {
		var r fakeResolver
		for _, a := range tc.addrs {
			r = append(r, netip.MustParseAddr(a))
		}
		cb := callbacks.New(callbacks.Deps{DB: db, Sealer: keys, Resolver: r})
		_, _, err := cb.Create(ctx, tid, callbacks.NewEndpoint{URL: "https://hooks.example.com/x", Events: []string{"*"}})
		if (err == nil) != tc.ok {
			t.Errorf("%v: err %v, want ok=%v", tc.addrs, err, tc.ok)
		}
	}
}

// TestReencryptSecrets: after rotate-encryption-key, the secrets open with the new key alone.
func TestReencryptSecrets(t *testing.T) {
	db := testenv.DB(t)
	ctx := context.Background()
	oldKey, newKey := make([]byte, 32), make([]byte, 32)
	newKey[0] = 1
	oldRing, _ := telegram.NewKeyring(oldKey)
	var tid uuid.UUID
	if err := db.NewRaw("INSERT INTO tenants (name) VALUES ('t') RETURNING id").Scan(ctx, &tid); err != nil {
		t.Fatal(err)
	}
	cb := callbacks.New(callbacks.Deps{DB: db, Sealer: oldRing, AllowPrivate: true})
	ep, secret, err := cb.Create(ctx, tid, callbacks.NewEndpoint{URL: "http://127.0.0.1:9/x", Events: []string{"*"}})
	if err != nil {
		t.Fatal(err)
	}
	_, secret2, err := cb.RotateSecret(ctx, tid, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	both, _ := telegram.NewKeyring(newKey, oldKey)
	done, failed, err := callbacks.ReencryptSecrets(ctx, db, both, slog.Default())
	if err != nil || done != 1 || failed != 0 {
		t.Fatalf("ReencryptSecrets = %d, %d, %v", done, failed, err)
	}
	newOnly, _ := telegram.NewKeyring(newKey)
	got, err := callbacks.New(callbacks.Deps{DB: db, Sealer: newOnly}).Get(ctx, tid, ep.ID)
	if err != nil {
		t.Fatal(err)
	}
	cur, err1 := newOnly.Open(ep.ID, got.SecretSealed)
	prev, err2 := newOnly.Open(ep.ID, got.PreviousSecretSealed)
	if err1 != nil || err2 != nil || cur != secret2 || prev != secret {
		t.Fatalf("after re-encryption: %v %v, current ok %v, previous ok %v", err1, err2, cur == secret2, prev == secret)
	}
}
