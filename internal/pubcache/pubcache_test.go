package pubcache_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/pubcache"
	"github.com/botfleet/botfleet/internal/testenv"
)

// counting returns a cache of strings keyed by UUID whose loads are counted and which
// answers the current value of *val.
func counting(t *testing.T, channel string, loads *atomic.Int64, val *atomic.Value) *pubcache.Cache[uuid.UUID, string] {
	t.Helper()
	c := pubcache.New(testenv.Redis(t), slog.New(slog.NewTextHandler(io.Discard, nil)), pubcache.Config[uuid.UUID, string]{
		Name: "test", Channel: channel,
		Load: func(_ context.Context, id uuid.UUID) (string, error) {
			loads.Add(1)
			v, _ := val.Load().(string)
			if v == "" {
				return "", errors.New("not found")
			}
			return v, nil
		},
		FlightKey: func(id uuid.UUID) string { return string(id[:]) },
		Match:     func(id, key uuid.UUID, _ string) bool { return id == key },
		TTL:       time.Minute, UnsubscribedTTL: time.Minute,
		PubSubPoll: 100 * time.Millisecond,
	})
	t.Cleanup(c.Close)
	return c
}

func waitSubscribed(t *testing.T, c *pubcache.Cache[uuid.UUID, string]) {
	t.Helper()
	c.Start()
	for deadline := time.Now().Add(5 * time.Second); !c.Subscribed(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("cache never subscribed")
		}
	}
}

// TestCache_InvalidateReachesOtherProcess: two caches on one channel (two processes); an
// invalidation published by one makes the other load the new value, while a key that was
// not invalidated stays cached and load errors are never cached.
func TestCache_InvalidateReachesOtherProcess(t *testing.T) {
	ctx := context.Background()
	channel := "botfleet:test:" + uuid.NewString()
	var loadsA, loadsB atomic.Int64
	var val atomic.Value
	a := counting(t, channel, &loadsA, &val)
	b := counting(t, channel, &loadsB, &val)
	waitSubscribed(t, a)
	waitSubscribed(t, b)

	id, other := uuid.New(), uuid.New()
	if _, err := b.Get(ctx, id); err == nil {
		t.Fatal("Get with a failing load: want the error")
	}
	val.Store("v1")
	for _, k := range []uuid.UUID{id, id, other, other} {
		if v, err := b.Get(ctx, k); err != nil || v != "v1" {
			t.Fatalf("Get = %q, %v; want v1", v, err)
		}
	}
	if n := loadsB.Load(); n != 3 { // the failed load + one per key
		t.Fatalf("loads = %d, want 3 (errors not cached, values cached)", n)
	}

	val.Store("v2")
	if err := a.Invalidate(ctx, id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		v, err := b.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if v == "v2" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("other process still has %q 2 s after the invalidation", v)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v, _ := b.Get(ctx, other); v != "v1" {
		t.Errorf("a key that was not invalidated = %q, want the cached v1", v)
	}
}

// TestCache_NoRedisShortTTL: without Redis the cache keeps entries UnsubscribedTTL only.
func TestCache_NoRedisShortTTL(t *testing.T) {
	var loads atomic.Int64
	c := pubcache.New(nil, slog.New(slog.NewTextHandler(io.Discard, nil)), pubcache.Config[uuid.UUID, string]{
		Channel:   "unused",
		Load:      func(context.Context, uuid.UUID) (string, error) { loads.Add(1); return "v", nil },
		FlightKey: func(id uuid.UUID) string { return string(id[:]) },
		Match:     func(id, key uuid.UUID, _ string) bool { return id == key },
		TTL:       time.Hour, UnsubscribedTTL: 50 * time.Millisecond,
	})
	defer c.Close()
	id := uuid.New()
	_, _ = c.Get(context.Background(), id)
	_, _ = c.Get(context.Background(), id)
	if n := loads.Load(); n != 1 {
		t.Fatalf("loads = %d, want 1 within the TTL", n)
	}
	if c.TTL() != 50*time.Millisecond {
		t.Errorf("TTL() = %v without Redis, want UnsubscribedTTL", c.TTL())
	}
	time.Sleep(60 * time.Millisecond)
	_, _ = c.Get(context.Background(), id)
	if n := loads.Load(); n != 2 {
		t.Fatalf("loads = %d, want 2 after UnsubscribedTTL", n)
	}
}
