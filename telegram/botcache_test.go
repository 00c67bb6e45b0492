package telegram_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/telegram"
)

// waitFor polls cond every 10 ms until it holds or limit passes, and returns how long it
// took (or fails the test).
func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > limit {
			t.Fatalf("%s: not within %s", what, limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// setSecret gives bot id a new webhook secret directly in PostgreSQL (as a secret rotation
// would) and returns it.
func (e *botEnv) setSecret(t *testing.T, b hookedBot, secret string) {
	t.Helper()
	h := sha256.Sum256([]byte(secret))
	if _, err := e.db.NewRaw("UPDATE bots SET webhook_secret_hash = ? WHERE id = ?", h[:], b.ID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// TestService_BotCache runs two Services (two processes) on one database and Redis: a change
// made and announced by one (InvalidateBot, DeleteBot) reaches the other's webhook within a
// second, and without an announcement the cache really serves from memory.
func TestService_BotCache(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	a := e.svc
	other := e.newService(t, e.db, e.queue)
	defer other.Close()
	other.WarmBotCache()
	waitFor(t, 3*time.Second, "subscription up", other.BotCacheSubscribed)

	b := e.hookedBot(t, tn, "Shop")
	// RegisterBot announced the bot: let that invalidation reach the other process before it
	// caches the bot, or it would drop the fresh entry (harmless, but this test counts reads).
	time.Sleep(300 * time.Millisecond)
	next := int64(1)
	ingest := func(svc *telegram.Service, secret string) error {
		next++
		return svc.Ingest(ctx, b.ID, secret, textUpdate(next, "hi"))
	}
	if err := ingest(other, b.secret); err != nil { // cached in the other process now
		t.Fatal(err)
	}

	t.Run("served from the cache", func(t *testing.T) {
		e.setSecret(t, b, "changed-without-announcement")
		if err := ingest(other, b.secret); err != nil {
			t.Fatalf("old secret refused at once: %v (the row was read again, no cache)", err)
		}
		e.setSecret(t, b, b.secret)
	})

	t.Run("rotated secret accepted within 1 s", func(t *testing.T) {
		e.setSecret(t, b, "rotated-secret-1")
		if err := a.InvalidateBot(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		d := waitFor(t, time.Second, "new secret accepted", func() bool { return ingest(other, "rotated-secret-1") == nil })
		t.Logf("new secret accepted after %s", d)
		wantErr(t, ingest(other, b.secret), telegram.ErrBadSecret, http.StatusUnauthorized)
		b.secret = "rotated-secret-1"
	})

	t.Run("deleted bot answers 404 within 1 s", func(t *testing.T) {
		if err := ingest(other, b.secret); err != nil {
			t.Fatal(err)
		}
		if _, err := other.BotByID(ctx, b.ID); err != nil {
			t.Fatal(err)
		}
		if err := a.DeleteBot(ctx, tn, b.ID); err != nil {
			t.Fatal(err)
		}
		// In the process that deleted it: at once.
		wantErr(t, ingest(a, b.secret), telegram.ErrBotNotFound, http.StatusNotFound)
		d := waitFor(t, time.Second, "404 in the other process", func() bool {
			return apperr.KindOf(ingest(other, b.secret)) == apperr.KindNotFound
		})
		t.Logf("deletion seen after %s", d)
		_, err := other.BotByID(ctx, b.ID)
		wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	})

	t.Run("1 s while the subscription is down", func(t *testing.T) {
		b2 := e.hookedBot(t, tn, "Other")
		rdb := redis.NewClient(&redis.Options{Addr: strings.TrimPrefix(closedURL(t, "tcp"), "tcp://"), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		defer rdb.Close()
		down, err := telegram.New(telegram.Deps{DB: e.db, Redis: rdb, Queue: asynq.NewClientFromRedisClient(rdb),
			Contacts: contacts.New(e.db), Cfg: e.cfg, Log: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		defer down.Close()
		if err := down.Ingest(ctx, b2.ID, b2.secret, textUpdate(1, "hi")); err != nil {
			t.Fatal(err)
		}
		e.setSecret(t, b2, "rotated-secret-2") // announced on a Redis this process cannot reach
		if err := a.InvalidateBot(ctx, b2.ID); err != nil {
			t.Fatal(err)
		}
		d := waitFor(t, 1300*time.Millisecond, "new secret accepted without pub/sub", func() bool {
			return down.Ingest(ctx, b2.ID, "rotated-secret-2", textUpdate(2, "hi")) == nil
		})
		t.Logf("new secret accepted after %s without pub/sub", d)
	})
}
