package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/testlog"
)

// withIdemKey is request with an Idempotency-Key header.
func withIdemKey(t *testing.T, method, path, key, idem string, body any) *http.Request {
	req := request(t, method, path, key, body)
	req.Header.Set(HeaderIdempotencyKey, idem)
	return req
}

func TestIdempotency_Messages(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)
	body := map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": "hi"}
	count := func() int64 {
		n, err := te.db.NewSelect().Table("messages").Count(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return n
	}

	first := te.serve(withIdemKey(t, http.MethodPost, "/messages/", keyA, "order-1", body))
	mustStatus(t, first, http.StatusAccepted)
	if first.Header.Get(HeaderIdempotentReplayed) != "" {
		t.Fatal("first answer marked as replayed")
	}
	var m1, m2 struct{ ID string }
	first.decode(t, &m1)

	again := te.serve(withIdemKey(t, http.MethodPost, "/messages/", keyA, "order-1", body))
	mustStatus(t, again, http.StatusAccepted)
	again.decode(t, &m2)
	if m1.ID == "" || m2.ID != m1.ID || again.Header.Get(HeaderIdempotentReplayed) != "true" ||
		!strings.HasPrefix(again.Header.Get(echo.HeaderContentType), "application/json") || string(again.Body) != string(first.Body) {
		t.Fatalf("replay: %v %s, first %s", again.Header, again.Body, first.Body)
	}
	if n := count(); n != 1 {
		t.Fatalf("%d messages after a replay, want 1", n)
	}

	other := map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": "hello"}
	r := te.serve(withIdemKey(t, http.MethodPost, "/messages/", keyA, "order-1", other))
	if r.Code != http.StatusConflict || r.errorCode(t) != "idempotency_key_reused" {
		t.Fatalf("other body: %d %s", r.Code, r.Body)
	}

	// The key is per tenant: B's "order-1" is its own (B's request is a 404: A's contact).
	r = te.serve(withIdemKey(t, http.MethodPost, "/messages/", keyB, "order-1", body))
	if r.Code != http.StatusNotFound {
		t.Fatalf("tenant B with A's key: %d %s", r.Code, r.Body)
	}

	// A 4xx is stored too: the same bad request replays its 422 without running.
	bad := map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c.ID}
	r1 := te.serve(withIdemKey(t, http.MethodPost, "/messages/", keyA, "bad-1", bad))
	r2 := te.serve(withIdemKey(t, http.MethodPost, "/messages/", keyA, "bad-1", bad))
	if r1.Code != http.StatusUnprocessableEntity || r2.Code != http.StatusUnprocessableEntity || r2.Header.Get(HeaderIdempotentReplayed) != "true" {
		t.Fatalf("422 replay: %d, %d %v", r1.Code, r2.Code, r2.Header)
	}

	for _, k := range []string{"", strings.Repeat("k", 256), "caf\u00e9", "a\tb"} {
		r := te.serve(withIdemKey(t, http.MethodPost, "/messages/", keyA, k, body))
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" || !strings.Contains(string(r.Body), `"field":"Idempotency-Key"`) {
			t.Fatalf("key %q: %d %s", k, r.Code, r.Body)
		}
	}
	if n := count(); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}

	// Without the header nothing changes: two requests, two messages.
	mustStatus(t, te.do(http.MethodPost, "/messages/", keyA, body), http.StatusAccepted)
	if n := count(); n != 2 {
		t.Fatalf("%d messages, want 2", n)
	}
}

func TestIdempotency_Broadcast(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	bot, _ := te.newBot(keyA, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)
	body := map[string]any{"name": "News", "platform": "TELEGRAM", "message_text": "news", "recipients": []any{c.ID}, "bot_app_id": bot.BotAppID}
	r1 := te.serve(withIdemKey(t, http.MethodPost, "/broadcast/", keyA, "b-1", body))
	r2 := te.serve(withIdemKey(t, http.MethodPost, "/broadcast/", keyA, "b-1", body))
	if r1.Code >= 300 || r2.Code != r1.Code || string(r2.Body) != string(r1.Body) || r2.Header.Get(HeaderIdempotentReplayed) != "true" {
		t.Fatalf("broadcast replay: %d %s / %d %s", r1.Code, r1.Body, r2.Code, r2.Body)
	}
	if n, _ := te.db.NewSelect().Table("broadcasts").Count(context.Background()); n != 1 {
		t.Fatalf("%d broadcasts, want 1", n)
	}
}

// TestIdempotency_5xxAndInProgress runs the middleware on a bare echo over the real Redis:
// a 5xx is not stored (the retry runs), and a retry while the first request runs gets 409.
func TestIdempotency_5xxAndInProgress(t *testing.T) {
	te := newEnv(t)
	s := &server{d: Deps{Redis: te.rdb}, log: discardLog()}
	e := echo.New()
	e.HTTPErrorHandler = s.handleError
	var calls atomic.Int32
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := func(c echo.Context) error {
		n := calls.Add(1)
		switch c.Request().URL.Path {
		case "/flaky/":
			if n == 1 {
				return c.String(http.StatusInternalServerError, "boom")
			}
		case "/slow/":
			started <- struct{}{}
			<-release
		}
		return c.String(http.StatusCreated, "made")
	}
	tenantID := func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error { c.Set(ctxTenantID, "t-5xx-"+t.Name()); return next(c) }
	}
	e.POST("/flaky/", h, tenantID, s.idempotent)
	e.POST("/slow/", h, tenantID, s.idempotent)
	send := func(path, idem string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader("{}"))
		req.Header.Set(HeaderIdempotencyKey, idem)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		return rec
	}
	if r := send("/flaky/", "k5"); r.Code != http.StatusInternalServerError {
		t.Fatalf("first: %d", r.Code)
	}
	if r := send("/flaky/", "k5"); r.Code != http.StatusCreated || r.Header().Get(HeaderIdempotentReplayed) != "" || calls.Load() != 2 {
		t.Fatalf("retry after a 5xx: %d %v, %d calls", r.Code, r.Header(), calls.Load())
	}
	if r := send("/flaky/", "k5"); r.Code != http.StatusCreated || r.Header().Get(HeaderIdempotentReplayed) != "true" || calls.Load() != 2 {
		t.Fatalf("replay of the 201: %d %v, %d calls", r.Code, r.Header(), calls.Load())
	}

	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- send("/slow/", "ks") }()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("slow handler did not start")
	}
	if r := send("/slow/", "ks"); r.Code != http.StatusConflict || !strings.Contains(r.Body.String(), "idempotency_key_in_progress") {
		t.Fatalf("in flight: %d %s", r.Code, r.Body)
	}
	close(release)
	if r := <-done; r.Code != http.StatusCreated {
		t.Fatalf("slow: %d", r.Code)
	}
}

func TestIdempotency_RedisDown(t *testing.T) {
	te := newEnv(t)
	tidA, key := te.newTenant("A")
	bot, _ := te.newBot(key, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)
	dead := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1})
	t.Cleanup(func() { dead.Close() })
	te.withRateLimit(RateLimit{}, dead)
	r := te.serve(withIdemKey(t, http.MethodPost, "/messages/", key, "down-1", map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": "hi"}))
	if r.Code != http.StatusServiceUnavailable || r.errorCode(t) != "dependency_unavailable" || r.Header.Get("Retry-After") != "1" {
		t.Fatalf("Redis down: %d %v %s", r.Code, r.Header, r.Body)
	}
	r = te.do(http.MethodPost, "/messages/", key, map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": "hi", "throttle_key": "k", "throttle_seconds": 60})
	if r.Code != http.StatusServiceUnavailable || r.errorCode(t) != "dependency_unavailable" {
		t.Fatalf("throttle with Redis down: %d %s", r.Code, r.Body)
	}
	if n, _ := te.db.NewSelect().Table("messages").Count(context.Background()); n != 0 {
		t.Fatalf("%d messages stored while Redis was down", n)
	}
}

func TestMessages_Throttle(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	bot, _ := te.newBot(keyA, "Bot")
	c1 := te.newContact(tidA, bot.BotAppID, 4242)
	c2 := te.newContact(tidA, bot.BotAppID, 4343)
	msg := func(contact any, key string) map[string]any {
		return map[string]any{"bot_app_id": bot.BotAppID, "contact_id": contact, "text": "disk full", "throttle_key": key, "throttle_seconds": 3600}
	}
	mustStatus(t, te.do(http.MethodPost, "/messages/", keyA, msg(c1.ID, "disk")), http.StatusAccepted)
	r := te.do(http.MethodPost, "/messages/", keyA, msg(c1.ID, "disk"))
	mustStatus(t, r, http.StatusOK)
	var sup suppressedResponse
	r.decode(t, &sup)
	if !sup.Suppressed || sup.ThrottleKey != "disk" {
		t.Fatalf("second: %s", r.Body)
	}
	mustStatus(t, te.do(http.MethodPost, "/messages/", keyA, msg(c2.ID, "disk")), http.StatusAccepted) // another contact
	mustStatus(t, te.do(http.MethodPost, "/messages/", keyA, msg(c1.ID, "cpu")), http.StatusAccepted)  // another key
	if n, _ := te.db.NewSelect().Table("messages").Count(context.Background()); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	// A refused message does not open the window.
	bad := msg(c1.ID, "mem")
	bad["parse_mode"] = "HTML"
	bad["text"] = "<b>unclosed"
	r = te.do(http.MethodPost, "/messages/", keyA, bad)
	mustStatus(t, r, http.StatusUnprocessableEntity)
	mustStatus(t, te.do(http.MethodPost, "/messages/", keyA, msg(c1.ID, "mem")), http.StatusAccepted)

	for field, b := range map[string]map[string]any{
		"throttle_key":     {"bot_app_id": bot.BotAppID, "contact_id": c1.ID, "text": "x", "throttle_seconds": 60},
		"throttle_seconds": {"bot_app_id": bot.BotAppID, "contact_id": c1.ID, "text": "x", "throttle_key": "k"},
	} {
		r := te.do(http.MethodPost, "/messages/", keyA, b)
		if r.Code != http.StatusUnprocessableEntity || !strings.Contains(string(r.Body), `"field":"`+field+`"`) {
			t.Fatalf("%s: %d %s", field, r.Code, r.Body)
		}
	}
}

// TestIdempotency_Topics: a retried POST /topics/ with the same key answers the first 201
// again (not 409 topic_exists) and creates one topic.
func TestIdempotency_Topics(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("A")
	body := map[string]any{"name": "alerts"}
	first := te.serve(withIdemKey(t, http.MethodPost, "/topics/", key, "topic-1", body))
	mustStatus(t, first, http.StatusCreated)
	again := te.serve(withIdemKey(t, http.MethodPost, "/topics/", key, "topic-1", body))
	mustStatus(t, again, http.StatusCreated)
	if again.Header.Get(HeaderIdempotentReplayed) != "true" || string(again.Body) != string(first.Body) {
		t.Fatalf("replay: %v %s, first %s", again.Header, again.Body, first.Body)
	}
	if r := te.serve(request(t, http.MethodPost, "/topics/", key, body)); r.Code != http.StatusConflict || r.errorCode(t) != "topic_exists" {
		t.Fatalf("without the key: %d %s, want 409 topic_exists", r.Code, r.Body)
	}
	n, err := te.db.NewSelect().Table("topics").Count(context.Background())
	if err != nil || n != 1 {
		t.Fatalf("topics = %d (%v), want 1", n, err)
	}
}

// TestIdempotency_SealedSecrets: the creating POSTs whose answer shows a secret once (API
// keys, webhook endpoints, link tokens) replay the same answer, while Redis holds it only
// sealed: no stored value contains the secret.
func TestIdempotency_SealedSecrets(t *testing.T) {
	te := newCallbacksEnv(t, true, 0)
	tid, key := te.newTenant("A")
	bot, _ := te.newBot(key, "Bot")
	for _, tc := range []struct {
		path, secretField string
		body              map[string]any
	}{
		{"/api-keys/", "key", map[string]any{"name": "dashboard", "scopes": []string{"read"}}},
		{"/webhook-endpoints/", "secret", map[string]any{"url": "http://127.0.0.1:9/hook", "events": []string{"message.received"}}},
		{"/contacts/link-tokens/", "token", map[string]any{"external_id": "acct-1", "bot_app_id": bot.BotAppID}},
	} {
		first := te.serve(withIdemKey(t, http.MethodPost, tc.path, key, "create-"+tc.secretField, tc.body))
		mustStatus(t, first, http.StatusCreated)
		var a, b map[string]any
		first.decode(t, &a)
		secret, _ := a[tc.secretField].(string)
		if secret == "" {
			t.Fatalf("%s: no %s in %s", tc.path, tc.secretField, first.Body)
		}
		testlog.RecordSecret("idempotency_test_"+tc.secretField, secret)
		again := te.serve(withIdemKey(t, http.MethodPost, tc.path, key, "create-"+tc.secretField, tc.body))
		mustStatus(t, again, http.StatusCreated)
		again.decode(t, &b)
		if again.Header.Get(HeaderIdempotentReplayed) != "true" || b[tc.secretField] != secret || b["id"] != a["id"] {
			t.Fatalf("%s: replay %v %s, want the first answer %s", tc.path, again.Header, again.Body, first.Body)
		}
		raw, err := te.rdb.Get(context.Background(), idemRedisKey(tid.String(), "create-"+tc.secretField)).Bytes()
		if err != nil {
			t.Fatal(err)
		}
		var rec idemRecord
		if err := json.Unmarshal(raw, &rec); err != nil {
			t.Fatal(err)
		}
		if !rec.Sealed || len(rec.Body) == 0 || bytes.Contains(rec.Body, []byte(secret)) || bytes.Contains(raw, []byte(secret)) {
			t.Fatalf("%s: the stored answer (sealed %v) holds the %s in clear", tc.path, rec.Sealed, tc.secretField)
		}
	}
}
