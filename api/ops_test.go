package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/metrics"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

// newServedEnv is newEnv served on a loopback port that is also PUBLIC_BASE_URL, so that
// tgemu delivers updates to the webhook over HTTP as Telegram would, with /metrics wired
// the way cmd wires it (the PostgreSQL and Redis collectors).
func newServedEnv(t *testing.T) *testEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	emu := tgemu.NewTest(t, tgemu.Options{})
	logs := &syncBuffer{}
	log := slogTo(logs)
	queue := asynq.NewClientFromRedisClient(rdb)
	cs := contacts.New(db)
	tg, err := telegram.New(telegram.Deps{
		DB: db, Redis: rdb, Queue: queue, Contacts: cs, Log: log,
		Cfg: telegram.Config{
			APIURL: emu.URL(), PublicBaseURL: "http://" + ln.Addr().String(), RequestTimeout: 5 * time.Second, MaxRetries: 3,
			GlobalRate: config.Rate{N: 100, Per: time.Second}, BotRate: config.Rate{N: 25, Per: time.Second},
			ChatInterval: time.Second, EncryptionKey: make([]byte, 32),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	bc := broadcast.New(broadcast.Deps{DB: db, Queue: queue, Telegram: tg, Contacts: cs, Log: log, MaxRetries: 3})
	bcol, qcol := metrics.NewBroadcastCollector(db), metrics.NewQueueCollector(asynq.NewInspectorFromRedisClient(rdb))
	bcol.MinInterval, qcol.MinInterval = 0, 0 // every scrape reads
	te := &testEnv{t: t, emu: emu, db: db, rdb: rdb, tenants: tenant.New(db), tg: tg, contacts: cs, bc: bc, logs: logs}
	te.e = New(Deps{
		Tenants: te.tenants, Telegram: tg, Contacts: cs, Broadcasts: bc, DB: db, Redis: rdb,
		AdminToken: testAdminToken, Log: log,
		Metrics: metrics.Handler(bcol, qcol),
	})
	srv := &http.Server{Handler: te.e, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return te
}

// scrape GETs /metrics with the admin token and returns the body.
func (te *testEnv) scrape() string {
	te.t.Helper()
	r := te.serve(request(te.t, http.MethodGet, "/metrics", testAdminToken, nil))
	mustStatus(te.t, r, http.StatusOK)
	return string(r.Body)
}

// metricSum sums the samples of metric name (a counter, a gauge or a histogram's _count
// or _sum series) whose labels include every pair of labels ("k", "v", ...).
func metricSum(t *testing.T, body, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		ok := true
		for i := 0; i+1 < len(labels); i += 2 {
			if !strings.Contains(line, labels[i]+`="`+labels[i+1]+`"`) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// TestMetrics drives real traffic (updates delivered by tgemu to the webhook over HTTP, a
// redelivery, a wrong secret, processing, a send) and checks that the counters moved.
func TestMetrics(t *testing.T) {
	te := newServedEnv(t)

	t.Run("401", func(t *testing.T) {
		for _, key := range []string{"", "wrong-token"} {
			r := te.serve(request(t, http.MethodGet, "/metrics", key, nil))
			if r.Code != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
				t.Fatalf("GET /metrics with %q: %d %v", key, r.Code, r.Header)
			}
		}
	})

	before := te.scrape()
	tid, key := te.newTenant("metrics")
	bot, info := te.newBot(key, "Metrics Bot")
	user := tgemu.User{ID: 4242, FirstName: "Ann"}
	updateID, err := te.emu.SendText(info.ID, user, "hello")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := te.emu.WaitIdle(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if err := te.emu.Redeliver(info.ID, updateID); err != nil {
		t.Fatal(err)
	}
	if err := te.emu.WaitIdle(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	bad := request(t, http.MethodPost, "/telegram/v1/webhooks/"+bot.BotAppID.String()+"/", "", `{"update_id": 99}`)
	bad.Header.Set(telegram.SecretHeader, "wrong")
	mustStatus(t, te.serve(bad), http.StatusUnauthorized)
	if _, err := te.tg.ProcessPending(ctx); err != nil {
		t.Fatal(err)
	}
	tb, err := te.tg.BotByID(ctx, bot.BotAppID)
	if err != nil {
		t.Fatal(err)
	}
	if out := te.tg.Send(ctx, tb, user.ID, telegram.Outgoing{Text: "hi"}); out.Status != telegram.OutcomeSent {
		t.Fatalf("send: %+v", out)
	}
	other := tgemu.User{ID: 4343, FirstName: "Bo"}
	if err := te.emu.AddUser(info.ID, other); err != nil {
		t.Fatal(err)
	}
	te.emu.AddFault(info.ID, tgemu.Fault{Kind: tgemu.FaultTooManyRequests, RetryAfter: 1, Times: 1})
	if out := te.tg.Send(ctx, tb, other.ID, telegram.Outgoing{Text: "flood"}); out.Status != telegram.OutcomeWait {
		t.Fatalf("send into a 429: %+v", out)
	}
	contact := te.newContact(tid, bot.BotAppID, 777)
	if _, _, err := te.bc.Create(ctx, tid, broadcast.NewBroadcast{BotID: &bot.BotAppID, Name: "b", Platform: "TELEGRAM", MessageText: "news", Recipients: []uuid.UUID{contact.ID}}); err != nil {
		t.Fatal(err)
	}
	after := te.scrape()

	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"botfleet_webhook_updates_total", []string{"outcome", "stored"}, 1},
		{"botfleet_webhook_updates_total", []string{"outcome", "duplicate"}, 1},
		{"botfleet_webhook_updates_total", []string{"outcome", "unauthorized"}, 1},
		{"botfleet_update_processing_lag_seconds_count", nil, 1},
		{"botfleet_telegram_sends_total", []string{"outcome", "sent"}, 1},
		{"botfleet_telegram_sends_total", []string{"outcome", "429"}, 1},
		{"botfleet_telegram_429_total", nil, 1},
		{"botfleet_limiter_wait_seconds_count", []string{"reason", "slot"}, 1},
		{"botfleet_http_request_duration_seconds_count", []string{"route", "/telegram/v1/webhooks/:bot_app_id/", "code", "2xx"}, 2},
		{"botfleet_http_request_duration_seconds_count", []string{"route", "/telegram/v1/webhooks/:bot_app_id/", "code", "4xx"}, 1},
	} {
		if d := metricSum(t, after, c.name, c.labels...) - metricSum(t, before, c.name, c.labels...); d < c.min {
			t.Errorf("%s%v moved by %v, want >= %v", c.name, c.labels, d, c.min)
		}
	}
	// Collectors reading PostgreSQL and Redis at scrape time, and the standard metrics.
	for _, c := range []struct {
		name   string
		labels []string
	}{
		{"botfleet_broadcasts", []string{"status", "scheduled"}},
		{"botfleet_queue_tasks", []string{"queue", "broadcast", "state", "pending"}},
		{"go_goroutines", nil},
		{"process_resident_memory_bytes", nil},
	} {
		if v := metricSum(t, after, c.name, c.labels...); v < 1 {
			t.Errorf("%s%v = %v, want >= 1", c.name, c.labels, v)
		}
	}
	if strings.Contains(after, bot.BotAppID.String()) || strings.Contains(after, info.Token) {
		t.Error("/metrics carries a bot id or token: labels must stay bounded and secret-free")
	}

	t.Run("basic auth", func(t *testing.T) {
		req := request(t, http.MethodGet, "/metrics", "", nil)
		req.SetBasicAuth("prometheus", testAdminToken)
		if r := te.serve(req); r.Code != http.StatusOK {
			t.Fatalf("GET /metrics with Basic: %d", r.Code)
		}
	})
}

// TestQueueUI checks the asynq web UI at /admin/queues/: 401 without the token, the page
// with it (Basic, as a browser sends it), its API listing our queues, and a cross-origin
// action refused.
func TestQueueUI(t *testing.T) {
	te := newEnv(t)
	te.validate = false // asynqmon's own answers are not in openapi.yaml in detail
	q := asynq.NewClientFromRedisClient(te.rdb)
	if _, err := q.Enqueue(asynq.NewTask("test:noop", nil), asynq.Queue("broadcast"), asynq.ProcessIn(time.Hour)); err != nil {
		t.Fatal(err)
	}

	for _, path := range []string{"/admin/queues/", "/admin/queues", "/admin/queues/api/queues"} {
		r := te.do(http.MethodGet, path, "", nil)
		if r.Code != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Basic") {
			t.Fatalf("GET %s without a token: %d %v", path, r.Code, r.Header)
		}
		if r := te.do(http.MethodGet, path, "wrong", nil); r.Code != http.StatusUnauthorized {
			t.Fatalf("GET %s with a wrong token: %d", path, r.Code)
		}
	}
	req := request(t, http.MethodGet, "/admin/queues/", "", nil)
	req.SetBasicAuth("admin", testAdminToken)
	r := te.serve(req)
	if r.Code != http.StatusOK || !strings.HasPrefix(r.Header.Get("Content-Type"), "text/html") || !strings.Contains(string(r.Body), "/admin/queues") {
		t.Fatalf("GET /admin/queues/: %d %q %.200s", r.Code, r.Header.Get("Content-Type"), r.Body)
	}

	r = te.do(http.MethodGet, "/admin/queues/api/queues", testAdminToken, nil)
	mustStatus(t, r, http.StatusOK)
	var list struct {
		Queues []struct {
			Queue     string `json:"queue"`
			Scheduled int    `json:"scheduled"`
		} `json:"queues"`
	}
	r.decode(t, &list)
	found := false
	for _, q := range list.Queues {
		found = found || (q.Queue == "broadcast" && q.Scheduled == 1)
	}
	if !found {
		t.Fatalf("asynqmon's queue list lacks the broadcast queue with its scheduled task: %s", r.Body)
	}

	pause := request(t, http.MethodPost, "/admin/queues/api/queues/broadcast:pause", testAdminToken, nil)
	pause.Header.Set("Origin", "https://evil.example")
	if r := te.serve(pause); r.Code != http.StatusForbidden {
		t.Fatalf("cross-origin POST: %d %s", r.Code, r.Body)
	}
}

// TestRequestLogScope checks that the log lines of a request, the access log and the
// domain's own, carry request_id, tenant_id and bot_app_id.
func TestRequestLogScope(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("logs")
	info := te.emu.CreateBot("", "Log Bot")
	req := request(t, http.MethodPost, "/telegram/v1/bots/", key, map[string]any{"name": "Log Bot", "bot_token": info.Token})
	req.Header.Set("X-Request-ID", "req-create-bot")
	r := te.serve(req)
	mustStatus(t, r, http.StatusCreated)
	var bot botResponse
	r.decode(t, &bot)
	req = request(t, http.MethodGet, "/telegram/v1/bots/"+bot.BotAppID.String()+"/", key, nil)
	req.Header.Set("X-Request-ID", "req-get-bot")
	mustStatus(t, te.serve(req), http.StatusOK)

	lines := logLines(t, te.logs.String())
	want := map[string]map[string]string{
		"req-create-bot": {"tenant_id": tid.String()},
		"req-get-bot":    {"tenant_id": tid.String(), "bot_app_id": bot.BotAppID.String()},
	}
	seen := map[string][]string{}
	for _, l := range lines {
		rid, _ := l["request_id"].(string)
		w, ok := want[rid]
		if !ok {
			continue
		}
		seen[rid] = append(seen[rid], l["msg"].(string))
		for k, v := range w {
			if l[k] != v {
				t.Errorf("%s: line %q has %s=%v, want %s", rid, l["msg"], k, l[k], v)
			}
		}
	}
	if len(seen["req-create-bot"]) < 2 || len(seen["req-get-bot"]) < 1 {
		t.Fatalf("log lines by request: %v (want the domain's \"bot registered\" and the access log)", seen)
	}
}

// logLines decodes JSON log lines.
func logLines(t *testing.T, logs string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}
