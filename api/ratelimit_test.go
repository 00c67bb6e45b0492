package api

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/telegram"
)

// withRateLimit rebuilds te's server with the per-key rate limit rl on rdb.
func (te *testEnv) withRateLimit(rl RateLimit, rdb redis.UniversalClient) {
	te.e = New(Deps{
		Tenants: te.tenants, Telegram: te.tg, Contacts: te.contacts, Broadcasts: te.bc, DB: te.db, Redis: rdb,
		AdminToken: testAdminToken, Log: slogTo(te.logs), RateLimit: rl,
	})
	te.e.Use(exposeRoute)
}

// rateHeaders returns RateLimit-Limit, -Remaining and -Reset of r (-1 when absent).
func rateHeaders(t *testing.T, r response) (limit, remaining, reset int) {
	t.Helper()
	get := func(name string) int {
		v := r.Header.Get(name)
		if v == "" {
			return -1
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("%s: %q is not an integer", name, v)
		}
		return n
	}
	return get(HeaderRateLimitLimit), get(HeaderRateLimitRemaining), get(HeaderRateLimitReset)
}

// retryAfter returns the Retry-After of r in seconds, failing unless it is an integer >= 1.
func retryAfter(t *testing.T, r response) int {
	t.Helper()
	n, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || n < 1 {
		t.Fatalf("Retry-After %q, want an integer >= 1", r.Header.Get("Retry-After"))
	}
	return n
}

func TestRateLimit(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, info := te.newBot(keyA, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)
	// 5 at once, then one a minute: nothing refills while the test runs.
	te.withRateLimit(RateLimit{Rate: config.Rate{N: 1, Per: time.Minute}, Burst: 5}, te.rdb)

	t.Run("burst then 429", func(t *testing.T) {
		for i := 0; i < 4; i++ {
			r := te.do(http.MethodGet, "/contacts/", keyA, nil)
			mustStatus(t, r, http.StatusOK)
			limit, remaining, reset := rateHeaders(t, r)
			if limit != 5 || remaining != 4-i || reset < 1 || reset > 5*60 {
				t.Fatalf("request %d: RateLimit-Limit %d, -Remaining %d, -Reset %d", i+1, limit, remaining, reset)
			}
		}
		// The fifth is a write; it goes through and leaves nothing in the bucket.
		r := te.do(http.MethodPost, "/messages/", keyA, map[string]any{"contact_id": c.ID, "text": "hi"})
		mustStatus(t, r, http.StatusAccepted)
		if _, remaining, _ := rateHeaders(t, r); remaining != 0 {
			t.Fatalf("RateLimit-Remaining %d after the burst", remaining)
		}
		messages := func() int {
			n, err := te.db.NewSelect().Table("messages").Count(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			return int(n)
		}
		before := messages()
		for _, rq := range []struct{ method, path string }{{http.MethodGet, "/contacts/"}, {http.MethodPost, "/messages/"}, {http.MethodGet, "/telegram/v1/bots/" + bot.BotAppID.String() + "/"}} {
			r := te.do(rq.method, rq.path, keyA, map[string]any{"contact_id": c.ID, "text": "hi"})
			if r.Code != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" {
				t.Fatalf("%s %s over the limit: %d %s", rq.method, rq.path, r.Code, r.Body)
			}
			if ra := retryAfter(t, r); ra > 60 {
				t.Fatalf("Retry-After %d s, want at most the 60 s of one request", ra)
			}
			if limit, remaining, reset := rateHeaders(t, r); limit != 5 || remaining != 0 || reset < 1 {
				t.Fatalf("429: RateLimit-Limit %d, -Remaining %d, -Reset %d", limit, remaining, reset)
			}
		}
		if n := messages(); n != before {
			t.Fatalf("a refused POST /messages/ stored a message (%d -> %d)", before, n)
		}
	})
	t.Run("another key is unaffected", func(t *testing.T) {
		r := te.do(http.MethodGet, "/contacts/", keyB, nil)
		mustStatus(t, r, http.StatusOK)
		if _, remaining, _ := rateHeaders(t, r); remaining != 4 {
			t.Fatalf("B's RateLimit-Remaining %d, want 4", remaining)
		}
	})
	t.Run("webhooks and admin are not limited", func(t *testing.T) {
		secret := te.emu.WebhookInfo(info.ID).SecretToken
		for i := 0; i < 12; i++ {
			req := request(t, http.MethodPost, "/telegram/v1/webhooks/"+bot.BotAppID.String()+"/", "",
				fmt.Sprintf(`{"update_id": %d, "message": {"message_id": 1, "date": 1700000000, "chat": {"id": 42, "type": "private"}, "text": "hi"}}`, 7000+i))
			req.Header.Set(telegram.SecretHeader, secret)
			r := te.serve(req)
			mustStatus(t, r, http.StatusOK)
			if r.Header.Get(HeaderRateLimitLimit) != "" {
				t.Fatal("a webhook answer carries RateLimit headers")
			}
		}
		for i := 0; i < 8; i++ {
			r := te.do(http.MethodPost, "/admin/v1/tenants/", testAdminToken, map[string]string{"name": fmt.Sprint("t", i)})
			mustStatus(t, r, http.StatusCreated)
			if r.Header.Get(HeaderRateLimitLimit) != "" {
				t.Fatal("an admin answer carries RateLimit headers")
			}
		}
		// A's key is still limited: the webhooks took nothing from it, nor gave anything.
		mustStatus(t, te.do(http.MethodGet, "/contacts/", keyA, nil), http.StatusTooManyRequests)
	})
	t.Run("bucket key", func(t *testing.T) {
		keys, err := te.rdb.Keys(context.Background(), "rate:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		re := regexp.MustCompile(`^rate:api:\{[0-9a-f]{32}\}$`)
		if len(keys) != 2 {
			t.Fatalf("rate keys %v, want one per API key used (2)", keys)
		}
		for _, k := range keys {
			if !re.MatchString(k) || strings.Contains(k, keyA[len("bf_"):len("bf_")+8]) || strings.Contains(k, keyB[len("bf_"):len("bf_")+8]) {
				t.Fatalf("rate key %q: want rate:api:{<hash>} with no part of the API key", k)
			}
		}
	})
	te.assertNotLogged(keyA, keyB)
}

// TestRateLimit_Defaults checks the default 20/s with bursts of 40 (config's API_RATE_LIMIT
// and API_RATE_BURST defaults) on requests sent as fast as the server answers them.
func TestRateLimit_Defaults(t *testing.T) {
	cfg, err := config.Load(func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	te := newEnv(t)
	te.validate = false
	_, key := te.newTenant("A")
	te.withRateLimit(RateLimit{Rate: cfg.APIRateLimit, Burst: cfg.APIRateBurst}, te.rdb)
	start := time.Now()
	allowed, first429, sent := 0, 0, 0
	// Until the first 429 (each request must take less than the 50 ms of one refill on
	// average for one to come), then 20 more.
	for i := 1; i <= 2000 && (first429 == 0 || i <= first429+20); i++ {
		sent = i
		r := te.do(http.MethodGet, "/telegram/v1/bots/", key, nil)
		switch r.Code {
		case http.StatusOK:
			allowed++
		case http.StatusTooManyRequests:
			if first429 == 0 {
				first429 = i
				retryAfter(t, r)
			}
		default:
			t.Fatalf("%d %s", r.Code, r.Body)
		}
		if i == 1 {
			if limit, remaining, _ := rateHeaders(t, r); limit != 40 || remaining != 39 {
				t.Fatalf("first answer: RateLimit-Limit %d, -Remaining %d; want 40, 39", limit, remaining)
			}
		}
	}
	elapsed := time.Since(start)
	// 40 at once, plus 20/s refilled meanwhile (one more for the partial interval).
	most := 40 + int(elapsed.Seconds()*20) + 1
	if first429 == 0 || allowed < 40 || allowed > most {
		t.Fatalf("%d of %d allowed in %s (first 429 at %d); want 40..%d", allowed, sent, elapsed, first429, most)
	}
	t.Logf("%d of %d allowed in %s, first 429 at request %d", allowed, sent, elapsed.Round(time.Millisecond), first429)
}

// TestLocalGCRA checks the in-process fallback on a synthetic clock: burst, refusal with
// the time to the next slot, refill.
func TestLocalGCRA(t *testing.T) {
	g := localGCRA{tat: map[string]time.Time{}}
	t0 := time.Unix(1_800_000_000, 0)
	const iv = 50 * time.Millisecond
	for i, want := range []int{1, 0} {
		if r := g.allow("k", t0, iv, 2); !r.allowed || r.remaining != want || r.resetAfter != time.Duration(i+1)*iv {
			t.Fatalf("request %d: %+v", i+1, r)
		}
	}
	if r := g.allow("k", t0.Add(10*time.Millisecond), iv, 2); r.allowed || r.retryAfter != 40*time.Millisecond {
		t.Fatalf("over the burst: %+v", r)
	}
	if r := g.allow("other", t0, iv, 2); !r.allowed || r.remaining != 1 {
		t.Fatalf("another key: %+v", r)
	}
	if r := g.allow("k", t0.Add(50*time.Millisecond), iv, 2); !r.allowed || r.remaining != 0 {
		t.Fatalf("after one interval: %+v", r)
	}
	if r := g.allow("k", t0.Add(time.Second), iv, 2); !r.allowed || r.remaining != 1 {
		t.Fatalf("after a long pause: %+v", r)
	}
}

// TestRateLimit_RedisDown: reads go on under a per-process limit, writes answer 503 before
// doing anything, and the outage is logged.
func TestRateLimit_RedisDown(t *testing.T) {
	te := newEnv(t)
	tidA, key := te.newTenant("A")
	bot, _ := te.newBot(key, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)
	dead := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	te.withRateLimit(RateLimit{Rate: config.Rate{N: 1, Per: time.Minute}, Burst: 3}, dead)

	start := time.Now()
	for i := 0; i < 3; i++ {
		r := te.do(http.MethodGet, "/contacts/"+c.ID.String()+"/", key, nil)
		mustStatus(t, r, http.StatusOK)
		if limit, remaining, _ := rateHeaders(t, r); limit != 3 || remaining != 2-i {
			t.Fatalf("fallback: RateLimit-Limit %d, -Remaining %d", limit, remaining)
		}
	}
	r := te.do(http.MethodGet, "/contacts/", key, nil)
	if r.Code != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" {
		t.Fatalf("fallback over the limit: %d %s", r.Code, r.Body)
	}
	retryAfter(t, r)
	r = te.do(http.MethodPost, "/messages/", key, map[string]any{"contact_id": c.ID, "text": "hi"})
	if r.Code != http.StatusServiceUnavailable || r.errorCode(t) != "dependency_unavailable" || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("write while Redis is down: %d %v %s", r.Code, r.Header, r.Body)
	}
	if n, _ := te.db.NewSelect().Table("messages").Count(context.Background()); n != 0 {
		t.Fatalf("%d messages stored while the limiter could not decide", n)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("6 requests took %s with Redis down", d)
	}
	if !strings.Contains(te.logs.String(), "Redis unreachable") {
		t.Fatal("the outage was not logged")
	}
}

// TestOpenAPI_RateLimitAndAdminDocumented: every tenant operation documents its 429 (with
// Retry-After) and the RateLimit headers of its success answer; every admin operation its
// 403.
func TestOpenAPI_RateLimitAndAdminDocumented(t *testing.T) {
	doc := loadSpec(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			sec := doc.Security
			if op.Security != nil {
				sec = *op.Security
			}
			scheme := ""
			if len(sec) > 0 {
				for name := range sec[0] {
					scheme = name
				}
			}
			switch scheme {
			case "adminToken":
				if op.Responses.Status(http.StatusForbidden) == nil {
					t.Errorf("%s %s: admin operation without a 403", method, path)
				}
			case "apiKey":
				tooMany := op.Responses.Status(http.StatusTooManyRequests)
				if tooMany == nil || tooMany.Value.Headers["Retry-After"] == nil {
					t.Errorf("%s %s: tenant operation without a 429 with Retry-After", method, path)
				}
				for code, resp := range op.Responses.Map() {
					if strings.HasPrefix(code, "2") {
						for _, h := range []string{HeaderRateLimitLimit, HeaderRateLimitRemaining, HeaderRateLimitReset} {
							if resp.Value.Headers[h] == nil {
								t.Errorf("%s %s: %s answer without %s", method, path, code, h)
							}
						}
					}
				}
			}
		}
	}
}
