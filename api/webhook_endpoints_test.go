package api

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

// newCallbacksEnv is newEnv with an event callbacks service of its own: private addresses
// allowed or not, a short backoff so that retries are fast, and the given MaxAge (0: 24 h).
func newCallbacksEnv(t *testing.T, allowPrivate bool, maxAge time.Duration) *testEnv {
	t.Helper()
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	emu := tgemu.NewTest(t, tgemu.Options{})
	logs := &syncBuffer{}
	log := slogTo(io.MultiWriter(logs, testlog.Writer()))
	queue := asynq.NewClientFromRedisClient(rdb)
	cs := contacts.New(db)
	keys, err := telegram.NewKeyring(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	cb := callbacks.New(callbacks.Deps{DB: db, Redis: rdb, Sealer: keys, Log: log, AllowPrivate: allowPrivate,
		BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, MaxAge: maxAge, Timeout: 2 * time.Second})
	t.Cleanup(cb.Close)
	tg, err := telegram.New(telegram.Deps{
		DB: db, Redis: rdb, Queue: queue, Contacts: cs, Log: log, Callbacks: cb,
		Cfg: telegram.Config{
			APIURL: emu.URL(), PublicBaseURL: "http://127.0.0.1:1", RequestTimeout: 5 * time.Second, MaxRetries: 3,
			GlobalRate: config.Rate{N: 100, Per: time.Second}, BotRate: config.Rate{N: 25, Per: time.Second},
			ChatInterval: time.Second, EncryptionKey: make([]byte, 32),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	bc := broadcast.New(broadcast.Deps{DB: db, Queue: queue, Telegram: tg, Contacts: cs, Log: log, MaxRetries: 3})
	te := &testEnv{t: t, emu: emu, db: db, rdb: rdb, tenants: tenant.New(db, tenant.WithRedis(rdb), tenant.WithLogger(log)),
		tg: tg, contacts: cs, bc: bc, logs: logs, validate: true}
	t.Cleanup(te.tenants.Close)
	te.e = New(Deps{Tenants: te.tenants, Telegram: tg, Contacts: cs, Broadcasts: bc, DB: db, Redis: rdb, AdminToken: testAdminToken, Log: log})
	te.e.Use(exposeRoute)
	return te
}

// hookRequest is one request received by a hookServer.
type hookRequest struct {
	header http.Header
	body   []byte
}

// hookServer is the tenant's endpoint: an httptest server on 127.0.0.1 that answers the
// statuses of codes in turn (then 200) and records every request.
type hookServer struct {
	*httptest.Server
	mu    sync.Mutex
	codes []int
	got   []hookRequest
}

func newHookServer(t *testing.T, codes ...int) *hookServer {
	h := &hookServer{codes: codes}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.got = append(h.got, hookRequest{header: r.Header.Clone(), body: body})
		code := http.StatusOK
		if len(h.codes) > 0 {
			code, h.codes = h.codes[0], h.codes[1:]
		}
		h.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) requests() []hookRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]hookRequest(nil), h.got...)
}

// createEndpoint registers url for events through the API and returns it with its secret.
func (te *testEnv) createEndpoint(key, url string, events ...string) webhookEndpointResponse {
	te.t.Helper()
	r := te.do(http.MethodPost, "/webhook-endpoints/", key, map[string]any{"url": url, "events": events, "description": "test hook"})
	mustStatus(te.t, r, http.StatusCreated)
	var ep webhookEndpointResponse
	r.decode(te.t, &ep)
	if !strings.HasPrefix(ep.Secret, callbacks.SecretPrefix) || len(ep.Secret) != len(callbacks.SecretPrefix)+43 {
		te.t.Fatalf("secret %q is not whsec_ + 43 characters", ep.Secret)
	}
	testlog.RecordSecret("webhook_signing_secret", ep.Secret)
	return ep
}

// deliverUntil runs the delivery loop's claims until done reports true (or 10 s pass).
func (te *testEnv) deliverUntil(done func() bool) {
	te.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !done() {
		if time.Now().After(deadline) {
			te.t.Fatal("deliveries did not reach the expected state in 10 s")
		}
		if _, err := te.tg.Callbacks().DeliverDue(context.Background()); err != nil {
			te.t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// pushUpdate posts a private message update to bot's webhook, as Telegram would.
func (te *testEnv) pushUpdate(bot botResponse, info tgemu.BotInfo, updateID, userID int64, firstName, text string) {
	te.t.Helper()
	msg := map[string]any{"message_id": updateID, "date": time.Now().Unix(), "text": text,
		"chat": map[string]any{"id": userID, "type": "private", "first_name": firstName},
		"from": map[string]any{"id": userID, "is_bot": false, "first_name": firstName}}
	if strings.HasPrefix(text, "/") {
		cmd, _, _ := strings.Cut(text, " ")
		msg["entities"] = []any{map[string]any{"type": "bot_command", "offset": 0, "length": len(cmd)}}
	}
	req := request(te.t, http.MethodPost, "/telegram/v1/webhooks/"+bot.BotAppID.String()+"/", "", map[string]any{"update_id": updateID, "message": msg})
	req.Header.Set(telegram.SecretHeader, te.emu.WebhookInfo(info.ID).SecretToken)
	mustStatus(te.t, te.serve(req), http.StatusOK)
}

// signatures parses a Botfleet-Signature header: t and the v1 entries.
func signatures(t *testing.T, header string) (string, []string) {
	t.Helper()
	var ts string
	var v1 []string
	for _, part := range strings.Split(header, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok {
			t.Fatalf("bad signature header %q", header)
		}
		switch k {
		case "t":
			ts = v
		case "v1":
			v1 = append(v1, v)
		}
	}
	if ts == "" || len(v1) == 0 {
		t.Fatalf("signature header %q lacks t or v1", header)
	}
	return ts, v1
}

// hmacHex is computed here independently of callbacks.Sign.
func hmacHex(secret, ts string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(ts + "."))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

func TestWebhookEndpoints_CRUD(t *testing.T) {
	te := newCallbacksEnv(t, true, 0)
	_, key := te.newTenant("hooks")
	ep := te.createEndpoint(key, "http://127.0.0.1:9/hook", "message.received", "contact.created", "message.received")
	if want := []string{"contact.created", "message.received"}; strings.Join(ep.Events, ",") != strings.Join(want, ",") || !ep.Enabled {
		t.Fatalf("created %+v, want events %v enabled", ep, want)
	}
	p := "/webhook-endpoints/" + ep.ID.String() + "/"

	r := te.do(http.MethodGet, p, key, nil)
	mustStatus(t, r, http.StatusOK)
	if strings.Contains(string(r.Body), ep.Secret) || strings.Contains(string(r.Body), `"secret"`) {
		t.Fatalf("GET shows the secret: %s", r.Body)
	}
	r = te.do(http.MethodPatch, p, key, map[string]any{"enabled": false, "description": "paused", "events": []string{"*"}})
	mustStatus(t, r, http.StatusOK)
	var got webhookEndpointResponse
	r.decode(t, &got)
	if got.Enabled || got.Description != "paused" || len(got.Events) != len(callbacks.EventTypes) {
		t.Fatalf("patched: %+v", got)
	}
	r = te.do(http.MethodPut, p, key, map[string]any{"url": "http://127.0.0.1:10/other"})
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &got)
	if got.URL != "http://127.0.0.1:10/other" || got.Enabled {
		t.Fatalf("put: %+v", got)
	}
	te.createEndpoint(key, "https://127.0.0.1/second", "contact.blocked")
	var pg listPage[webhookEndpointResponse]
	r = te.do(http.MethodGet, "/webhook-endpoints/?limit=1", key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &pg)
	if len(pg.Items) != 1 || pg.NextCursor == "" {
		t.Fatalf("page 1: %+v", pg)
	}
	r = te.do(http.MethodGet, "/webhook-endpoints/?limit=1&cursor="+pg.NextCursor, key, nil)
	r.decode(t, &pg)
	if len(pg.Items) != 1 || pg.Items[0].ID != ep.ID || pg.NextCursor != "" {
		t.Fatalf("page 2: %+v", pg)
	}

	for name, body := range map[string]map[string]any{
		"unknown event":  {"url": "http://127.0.0.1/x", "events": []string{"message.exploded"}},
		"no events":      {"url": "http://127.0.0.1/x", "events": []string{}},
		"ftp":            {"url": "ftp://127.0.0.1/x", "events": []string{"*"}},
		"relative":       {"url": "/hook", "events": []string{"*"}},
		"user info":      {"url": "http://u:p@127.0.0.1/x", "events": []string{"*"}},
		"control in url": {"url": "http://127.0.0.1/\x01", "events": []string{"*"}},
	} {
		r := te.do(http.MethodPost, "/webhook-endpoints/", key, body)
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
			t.Errorf("%s: %d %s, want 422 invalid_field", name, r.Code, r.Body)
		}
	}

	mustStatus(t, te.do(http.MethodDelete, p, key, nil), http.StatusNoContent)
	r = te.do(http.MethodGet, p, key, nil)
	if r.Code != http.StatusNotFound || r.errorCode(t) != "webhook_endpoint_not_found" {
		t.Fatalf("after delete: %d %s", r.Code, r.Body)
	}
	te.assertNotLogged(ep.Secret)
}

// TestWebhookEndpoints_PrivateAddresses: with ALLOW_PRIVATE_CALLBACKS false, loopback,
// private and link-local addresses are refused when saved, and refused at delivery
// without connecting (an endpoint saved while they were allowed).
func TestWebhookEndpoints_PrivateAddresses(t *testing.T) {
	te := newCallbacksEnv(t, false, time.Hour)
	tid, key := te.newTenant("ssrf")
	for _, u := range []string{"http://127.0.0.1/x", "http://10.0.0.1/x", "http://169.254.169.254/latest/meta-data/",
		"http://[::1]:8080/x", "https://localhost/x", "http://0.0.0.0/x", "http://100.64.0.1/x", "http://[fe80::1]/x",
		"http://[::ffff:127.0.0.1]/x", "http://192.168.1.1/x", "http://172.16.0.1/x"} {
		r := te.do(http.MethodPost, "/webhook-endpoints/", key, map[string]any{"url": u, "events": []string{"*"}})
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" || !strings.Contains(string(r.Body), `"field":"url"`) {
			t.Errorf("%s: %d %s, want 422 invalid_field url", u, r.Code, r.Body)
		}
	}
	// PATCH to a private address is refused the same way.
	ep := te.createEndpoint(key, "https://8.8.8.8/never-called", "message.received")
	r := te.do(http.MethodPatch, "/webhook-endpoints/"+ep.ID.String()+"/", key, map[string]any{"url": "http://10.0.0.1/x"})
	if r.Code != http.StatusUnprocessableEntity {
		t.Fatalf("patch to 10.0.0.1: %d %s", r.Code, r.Body)
	}
	mustStatus(t, te.do(http.MethodDelete, "/webhook-endpoints/"+ep.ID.String()+"/", key, nil), http.StatusNoContent)

	// Saved while private addresses were allowed (another process's setting, the same
	// database), delivered by this one: refused before connecting.
	hook := newHookServer(t)
	keys, _ := telegram.NewKeyring(make([]byte, 32))
	permissive := callbacks.New(callbacks.Deps{DB: te.db, Sealer: keys, AllowPrivate: true})
	ctx := context.Background()
	var eps []callbacks.Endpoint
	// A host name that resolves to loopback when dialled (DNS rebinding: it may have
	// resolved to a public address when saved) is refused on the address being dialled.
	byName := strings.Replace(hook.URL, "127.0.0.1", "localhost", 1) + "/by-name"
	for _, u := range []string{hook.URL + "/hook", byName, "http://10.0.0.1:9/x", "http://169.254.169.254/latest/", "http://[::1]:9/x"} {
		e, _, err := permissive.Create(ctx, tid, callbacks.NewEndpoint{URL: u, Events: []string{"contact.linked"}})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		eps = append(eps, e)
	}
	if err := te.tg.Callbacks().EmitContactLinked(ctx, te.db, tid, callbacks.ContactLinkedData{ContactID: uuid.New(), ExternalID: "u1", Method: "link_token"}); err != nil {
		t.Fatal(err)
	}
	n, err := te.tg.Callbacks().DeliverDue(ctx)
	if err != nil || n != len(eps) {
		t.Fatalf("DeliverDue = %d, %v; want %d", n, err, len(eps))
	}
	for _, e := range eps {
		var ds listPage[webhookDeliveryResponse]
		r := te.do(http.MethodGet, "/webhook-endpoints/"+e.ID.String()+"/deliveries/", key, nil)
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &ds)
		if len(ds.Items) != 1 || len(ds.Items[0].Attempts) != 1 {
			t.Fatalf("%s: deliveries %+v", e.URL, ds.Items)
		}
		a := ds.Items[0].Attempts[0]
		if a.Status != "failed" || a.Error != "private address refused" || a.ResponseCode != nil || ds.Items[0].Status != "pending" {
			t.Errorf("%s: delivery %+v attempt %+v, want a failed attempt 'private address refused' and a retry", e.URL, ds.Items[0], a)
		}
	}
	if got := hook.requests(); len(got) != 0 {
		t.Fatalf("the loopback server was connected to: %d requests", len(got))
	}
}

// TestWebhookDelivery_InboundSigned: a real inbound update through the webhook emits
// message.received and contact.created; the endpoint gets them signed with Stripe's scheme,
// verified here with an independent HMAC computation.
func TestWebhookDelivery_InboundSigned(t *testing.T) {
	te := newCallbacksEnv(t, true, 0)
	tid, key := te.newTenant("signed")
	bot, info := te.newBot(key, "signed bot")
	hook := newHookServer(t)
	ep := te.createEndpoint(key, hook.URL+"/events", "message.received", "contact.created", "contact.opted_out")
	// Another tenant's endpoint must not hear of it.
	_, keyB := te.newTenant("other")
	otherHook := newHookServer(t)
	te.createEndpoint(keyB, otherHook.URL+"/b", "*")

	te.pushUpdate(bot, info, 7001, 4242, "Ada", "hello there")
	te.pushUpdate(bot, info, 7002, 4242, "Ada", "/stop")
	if _, err := te.tg.ProcessPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	te.deliverUntil(func() bool { return len(hook.requests()) >= 4 })

	byType := map[string][]callbacks.Body{}
	for _, rq := range hook.requests() {
		ts, v1 := signatures(t, rq.header.Get("Botfleet-Signature"))
		if len(v1) != 1 || !hmac.Equal([]byte(v1[0]), []byte(hmacHex(ep.Secret, ts, rq.body))) {
			t.Fatalf("signature %q does not verify for body %s", rq.header.Get("Botfleet-Signature"), rq.body)
		}
		if hmac.Equal([]byte(v1[0]), []byte(hmacHex(ep.Secret+"x", ts, rq.body))) {
			t.Fatal("a wrong secret verifies")
		}
		var b callbacks.Body
		if err := json.Unmarshal(rq.body, &b); err != nil {
			t.Fatal(err)
		}
		if rq.header.Get("Botfleet-Event-Id") != b.ID.String() || rq.header.Get("Content-Type") != "application/json" {
			t.Fatalf("headers %v for body %s", rq.header, rq.body)
		}
		byType[b.Type] = append(byType[b.Type], b)
	}
	if len(byType["message.received"]) != 2 || len(byType["contact.created"]) != 1 || len(byType["contact.opted_out"]) != 1 {
		t.Fatalf("events: %v", byType)
	}
	var msg telegram.MessageReceivedData
	for _, b := range byType["message.received"] {
		var d telegram.MessageReceivedData
		if err := json.Unmarshal(b.Data, &d); err != nil {
			t.Fatal(err)
		}
		if d.UpdateID == 7001 {
			msg = d
		}
	}
	if msg.Text != "hello there" || msg.BotAppID != bot.BotAppID || msg.ChatID != 4242 || msg.ContactID == uuid.Nil {
		t.Fatalf("message.received data: %+v", msg)
	}
	ct, err := te.contacts.Get(context.Background(), tid, msg.ContactID)
	if err != nil || ct.TelegramChatID != 4242 {
		t.Fatalf("the event's contact: %+v, %v", ct, err)
	}
	// A second message of the same contact creates no contact.created.
	te.pushUpdate(bot, info, 7003, 4242, "Ada", "again")
	if _, err := te.tg.ProcessPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	te.deliverUntil(func() bool { return len(hook.requests()) >= 5 })
	var last callbacks.Body
	_ = json.Unmarshal(hook.requests()[4].body, &last)
	if last.Type != "message.received" {
		t.Fatalf("fifth event %s, want message.received only", last.Type)
	}
	if n, _ := te.tg.Callbacks().DeliverDue(context.Background()); n != 0 || len(otherHook.requests()) != 0 {
		t.Fatalf("left over: %d deliveries; other tenant got %d", n, len(otherHook.requests()))
	}
	te.assertNotLogged(ep.Secret)
}

// TestWebhookDelivery_RetryBackoff: 500, 500, then 200; each attempt listed with its code.
// Then a delivery that never succeeds is failed once MaxAge has passed, and the retry
// route delivers it again.
func TestWebhookDelivery_RetryBackoff(t *testing.T) {
	te := newCallbacksEnv(t, true, 0)
	tid, key := te.newTenant("retries")
	hook := newHookServer(t, 500, 500)
	ep := te.createEndpoint(key, hook.URL+"/flaky", "contact.linked")
	ctx := context.Background()
	if err := te.tg.Callbacks().EmitContactLinked(ctx, te.db, tid, callbacks.ContactLinkedData{ContactID: uuid.New(), ExternalID: "crm-7", Method: "verification_code"}); err != nil {
		t.Fatal(err)
	}
	te.deliverUntil(func() bool { return len(hook.requests()) >= 3 })
	var ds listPage[webhookDeliveryResponse]
	r := te.do(http.MethodGet, "/webhook-endpoints/"+ep.ID.String()+"/deliveries/", key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &ds)
	if len(ds.Items) != 1 {
		t.Fatalf("deliveries: %s", r.Body)
	}
	d := ds.Items[0]
	if d.Status != "succeeded" || d.AttemptCount != 3 || len(d.Attempts) != 3 || d.CompletedAt == nil || d.EventType != "contact.linked" {
		t.Fatalf("delivery: %s", r.Body)
	}
	for i, want := range []int{500, 500, 200} {
		a := d.Attempts[i]
		if a.ResponseCode == nil || *a.ResponseCode != want || (a.Status == "succeeded") != (want == 200) {
			t.Errorf("attempt %d: %+v, want %d", i+1, a, want)
		}
	}
	// The same event id on every retry (receivers dedupe on it).
	ids := map[string]bool{}
	for _, rq := range hook.requests() {
		ids[rq.header.Get("Botfleet-Event-Id")] = true
	}
	if len(ids) != 1 {
		t.Fatalf("event ids across retries: %v", ids)
	}

	// Give up after MaxAge: an environment whose window is 50 ms.
	te2 := newCallbacksEnv(t, true, 50*time.Millisecond)
	tid2, key2 := te2.newTenant("gives up")
	down := newHookServer(t, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503, 503)
	ep2 := te2.createEndpoint(key2, down.URL+"/down", "contact.linked")
	if err := te2.tg.Callbacks().EmitContactLinked(ctx, te2.db, tid2, callbacks.ContactLinkedData{ContactID: uuid.New(), ExternalID: "x"}); err != nil {
		t.Fatal(err)
	}
	list := func() webhookDeliveryResponse {
		var ds listPage[webhookDeliveryResponse]
		te2.do(http.MethodGet, "/webhook-endpoints/"+ep2.ID.String()+"/deliveries/", key2, nil).decode(t, &ds)
		return ds.Items[0]
	}
	te2.deliverUntil(func() bool { return list().Status == "failed" })
	failed := list()
	if failed.CompletedAt == nil || failed.NextAttemptAt != nil || len(failed.Attempts) < 2 || failed.Attempts[len(failed.Attempts)-1].Error != "HTTP 503" {
		t.Fatalf("failed delivery: %+v", failed)
	}
	down.mu.Lock()
	down.codes = nil // the endpoint is back
	down.mu.Unlock()
	r = te2.do(http.MethodPost, "/webhook-endpoints/"+ep2.ID.String()+"/deliveries/"+failed.ID.String()+"/retry/", key2, nil)
	mustStatus(t, r, http.StatusAccepted)
	te2.deliverUntil(func() bool { return list().Status == "succeeded" })
	if got := list(); len(got.Attempts) != len(failed.Attempts)+1 {
		t.Fatalf("after retry: %d attempts, want %d", len(got.Attempts), len(failed.Attempts)+1)
	}
	r = te2.do(http.MethodPost, "/webhook-endpoints/"+ep2.ID.String()+"/deliveries/"+uuid.NewString()+"/retry/", key2, nil)
	if r.Code != http.StatusNotFound || r.errorCode(t) != "webhook_delivery_not_found" {
		t.Fatalf("retry of an unknown delivery: %d %s", r.Code, r.Body)
	}
}

// TestWebhookDelivery_RotateSecret: after rotate-secret, deliveries carry two v1= entries,
// the new secret's first and the old one's second; the old one stops after 24 h.
func TestWebhookDelivery_RotateSecret(t *testing.T) {
	te := newCallbacksEnv(t, true, 0)
	tid, key := te.newTenant("rotation")
	hook := newHookServer(t)
	ep := te.createEndpoint(key, hook.URL+"/r", "contact.linked")
	r := te.do(http.MethodPost, "/webhook-endpoints/"+ep.ID.String()+"/rotate-secret/", key, nil)
	mustStatus(t, r, http.StatusOK)
	var rot webhookEndpointResponse
	r.decode(t, &rot)
	testlog.RecordSecret("webhook_signing_secret", rot.Secret)
	if rot.Secret == "" || rot.Secret == ep.Secret || rot.PreviousSecretExpiresAt == nil ||
		rot.PreviousSecretExpiresAt.Before(time.Now().Add(23*time.Hour)) || r.Header.Get("Cache-Control") != "no-store" {
		t.Fatalf("rotate-secret: %s", r.Body)
	}
	ctx := context.Background()
	if err := te.tg.Callbacks().EmitContactLinked(ctx, te.db, tid, callbacks.ContactLinkedData{ContactID: uuid.New(), ExternalID: "r"}); err != nil {
		t.Fatal(err)
	}
	te.deliverUntil(func() bool { return len(hook.requests()) == 1 })
	rq := hook.requests()[0]
	ts, v1 := signatures(t, rq.header.Get("Botfleet-Signature"))
	if len(v1) != 2 || v1[0] != hmacHex(rot.Secret, ts, rq.body) || v1[1] != hmacHex(ep.Secret, ts, rq.body) {
		t.Fatalf("signature %q: want v1=<new>,v1=<old>", rq.header.Get("Botfleet-Signature"))
	}
	// 24 h later the old secret no longer signs.
	if _, err := te.db.NewRaw("UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = ?", ep.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := te.tg.Callbacks().EmitContactLinked(ctx, te.db, tid, callbacks.ContactLinkedData{ContactID: uuid.New(), ExternalID: "r2"}); err != nil {
		t.Fatal(err)
	}
	te.deliverUntil(func() bool { return len(hook.requests()) == 2 })
	rq = hook.requests()[1]
	ts, v1 = signatures(t, rq.header.Get("Botfleet-Signature"))
	if len(v1) != 1 || v1[0] != hmacHex(rot.Secret, ts, rq.body) {
		t.Fatalf("after the overlap: %q", rq.header.Get("Botfleet-Signature"))
	}
	te.assertNotLogged(ep.Secret, rot.Secret)
}

// TestWebhookDelivery_MessageSent: POST /messages/ sent by the worker emits message.sent.
func TestWebhookDelivery_MessageSent(t *testing.T) {
	te := newCallbacksEnv(t, true, 0)
	_, key := te.newTenant("sends")
	bot, info := te.newBot(key, "sender")
	if err := te.emu.AddUser(info.ID, tgemu.User{ID: 5151, FirstName: "Bea"}); err != nil {
		t.Fatal(err)
	}
	te.pushUpdate(bot, info, 9001, 5151, "Bea", "hi")
	if _, err := te.tg.ProcessPending(context.Background()); err != nil {
		t.Fatal(err)
	}
	hook := newHookServer(t)
	te.createEndpoint(key, hook.URL+"/s", "message.sent", "message.failed")
	var cs listPage[contactResponse]
	te.do(http.MethodGet, "/contacts/", key, nil).decode(t, &cs)
	r := te.do(http.MethodPost, "/messages/", key, map[string]any{"bot_app_id": bot.BotAppID, "contact_id": cs.Items[0].ID, "text": "your order shipped"})
	mustStatus(t, r, http.StatusAccepted)
	var m messageResponse
	r.decode(t, &m)
	task, err := telegram.NewSendTask(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.tg.HandleSend(context.Background(), task); err != nil {
		t.Fatalf("HandleSend: %v", err)
	}
	te.deliverUntil(func() bool { return len(hook.requests()) == 1 })
	var b callbacks.Body
	_ = json.Unmarshal(hook.requests()[0].body, &b)
	var d telegram.MessageOutcomeData
	_ = json.Unmarshal(b.Data, &d)
	if b.Type != "message.sent" || d.MessageID != m.ID || d.Status != "sent" || d.TelegramMessageID == nil || d.Kind != "message" {
		t.Fatalf("event %s %s", b.Type, b.Data)
	}
}

// TestWebhookDelivery_BlockedAndBroadcast: contact.blocked from my_chat_member kicked and
// from a 403 on send; broadcast.completed once, with the counts.
func TestWebhookDelivery_BlockedAndBroadcast(t *testing.T) {
	te := newCallbacksEnv(t, true, 0)
	_, key := te.newTenant("blocks")
	bot, info := te.newBot(key, "blocky")
	ctx := context.Background()
	for _, u := range []int64{6161, 6262, 6363} {
		if err := te.emu.AddUser(info.ID, tgemu.User{ID: u, FirstName: "U"}); err != nil {
			t.Fatal(err)
		}
		te.pushUpdate(bot, info, u, u, "U", "hi")
	}
	if _, err := te.tg.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	hook := newHookServer(t)
	te.createEndpoint(key, hook.URL+"/b", "contact.blocked", "broadcast.completed")

	// 6262 blocks the bot: my_chat_member kicked.
	req := request(t, http.MethodPost, "/telegram/v1/webhooks/"+bot.BotAppID.String()+"/", "", map[string]any{
		"update_id": 9999,
		"my_chat_member": map[string]any{"date": time.Now().Unix(),
			"chat":            map[string]any{"id": 6262, "type": "private", "first_name": "U"},
			"from":            map[string]any{"id": 6262, "is_bot": false, "first_name": "U"},
			"old_chat_member": map[string]any{"status": "member", "user": map[string]any{"id": info.ID, "is_bot": true, "first_name": "blocky"}},
			"new_chat_member": map[string]any{"status": "kicked", "until_date": 0, "user": map[string]any{"id": info.ID, "is_bot": true, "first_name": "blocky"}}},
	})
	req.Header.Set(telegram.SecretHeader, te.emu.WebhookInfo(info.ID).SecretToken)
	mustStatus(t, te.serve(req), http.StatusOK)
	if _, err := te.tg.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	// 6363 blocked the bot without telling: the broadcast's send gets a 403.
	te.emu.AddFault(info.ID, tgemu.Fault{Method: "sendMessage", ChatID: 6363, Kind: tgemu.FaultBlocked})

	var cs listPage[contactResponse]
	te.do(http.MethodGet, "/contacts/", key, nil).decode(t, &cs)
	var ids []uuid.UUID
	for _, c := range cs.Items {
		if c.TelegramChatID != 6262 {
			ids = append(ids, c.ID)
		}
	}
	r := te.do(http.MethodPost, "/broadcast/", key, map[string]any{"name": "news", "platform": "TELEGRAM", "message_text": "News!",
		"bot_app_id": bot.BotAppID, "recipients": ids})
	mustStatus(t, r, http.StatusAccepted)
	var bc broadcastResponse
	r.decode(t, &bc)
	task, _ := broadcast.NewRunTask(bc.ID)
	for i := 0; ; i++ {
		err := te.bc.HandleRun(ctx, task)
		if err == nil {
			break
		}
		if i > 50 {
			t.Fatalf("broadcast run: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	te.deliverUntil(func() bool { return len(hook.requests()) >= 3 })
	got := map[string][]json.RawMessage{}
	for _, rq := range hook.requests() {
		var b callbacks.Body
		_ = json.Unmarshal(rq.body, &b)
		got[b.Type] = append(got[b.Type], b.Data)
	}
	if len(got["contact.blocked"]) != 2 || len(got["broadcast.completed"]) != 1 {
		t.Fatalf("events: %v", got)
	}
	chats := map[int64]bool{}
	for _, raw := range got["contact.blocked"] {
		var d telegram.ContactEventData
		_ = json.Unmarshal(raw, &d)
		chats[d.ChatID] = true
	}
	if !chats[6262] || !chats[6363] {
		t.Fatalf("blocked chats %v, want 6262 (kicked) and 6363 (403)", chats)
	}
	var done broadcast.CompletedData
	_ = json.Unmarshal(got["broadcast.completed"][0], &done)
	if done.BroadcastID != bc.ID || done.Total != 2 || done.Sent != 1 || done.Sent+done.Failed+done.Skipped != 2 {
		t.Fatalf("broadcast.completed: %+v", done)
	}
}
