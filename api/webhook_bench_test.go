package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/telegram"
)

// BenchmarkWebhook POSTs updates with distinct update_ids to the webhook of a registered
// bot through a real HTTP server (httptest, keep-alive connections, GOMAXPROCS×4 clients)
// and reports requests/s. Each request is acknowledged once its webhook_events row is
// committed (group commit with the concurrent requests); nothing processes the events.
//
//	go test ./api/ -run '^$' -bench 'Webhook$' -benchtime 5s
func BenchmarkWebhook(b *testing.B) {
	te := newEnv(b)
	te.validate = false
	te.e = New(Deps{Tenants: te.tenants, Telegram: te.tg, Contacts: te.contacts, Broadcasts: te.bc,
		DB: te.db, Redis: te.rdb, AdminToken: testAdminToken, Log: discardLog()})
	_, key := te.newTenant("bench")
	bot, info := te.newBot(key, "bench")
	secret := te.emu.WebhookInfo(info.ID).SecretToken
	srv := httptest.NewServer(te.e)
	defer srv.Close()
	url := srv.URL + "/telegram/v1/webhooks/" + bot.BotAppID.String() + "/"
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: 256, MaxIdleConnsPerHost: 256}}

	var next atomic.Int64
	next.Store(1)
	var failed atomic.Int64
	b.SetParallelism(4)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := next.Add(1)
			body := fmt.Appendf(nil, `{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":{"id":%d,"type":"private","first_name":"B"},"from":{"id":%d,"is_bot":false,"first_name":"B"},"text":"hello"}}`,
				id, id, 1000+id%500, 1000+id%500)
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set(telegram.SecretHeader, secret)
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				continue
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed.Add(1)
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d webhook requests failed", n, b.N)
	}
}

// inboundBot is a registered bot of BenchmarkInbound.
type inboundBot struct {
	id         uuid.UUID
	secret     string
	secretHash []byte
	tenantID   uuid.UUID
}

// loadResult is what one load run measured.
type loadResult struct {
	acked, failed int64
	elapsed       time.Duration
	latencies     []time.Duration
}

func (r loadResult) rate() float64 {
	if r.elapsed == 0 {
		return 0
	}
	return float64(r.acked) / r.elapsed.Seconds()
}

func (r loadResult) pct(p float64) time.Duration {
	if len(r.latencies) == 0 {
		return 0
	}
	return r.latencies[min(len(r.latencies)-1, int(float64(len(r.latencies))*p))]
}

// inboundUpdate returns a realistic update for chat chatID: 40 % text, 25 % commands
// (/start, /help, now and then /stop), 20 % callback queries, 15 % edits.
func inboundUpdate(rng *rand.Rand, updateID, chatID int64) []byte {
	user := fmt.Sprintf(`{"id":%d,"is_bot":false,"first_name":"U%d","username":"user%d","language_code":"en"}`, chatID, chatID, chatID)
	chat := fmt.Sprintf(`{"id":%d,"type":"private","first_name":"U%d"}`, chatID, chatID)
	switch n := rng.IntN(100); {
	case n < 40:
		return fmt.Appendf(nil, `{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":%s,"from":%s,"text":"hello there, this is message %d"}}`,
			updateID, updateID, chat, user, updateID)
	case n < 65:
		cmd := "/start"
		if n >= 54 {
			cmd = "/help"
		}
		if n >= 63 {
			cmd = "/stop"
		}
		return fmt.Appendf(nil, `{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":%s,"from":%s,"text":%q,"entities":[{"type":"bot_command","offset":0,"length":%d}]}}`,
			updateID, updateID, chat, user, cmd, len(cmd))
	case n < 85:
		return fmt.Appendf(nil, `{"update_id":%d,"callback_query":{"id":"cb%d","from":%s,"chat_instance":"ci%d","data":"buy:%d","message":{"message_id":7,"date":1700000000,"chat":%s,"text":"pick one"}}}`,
			updateID, updateID, user, chatID, updateID%10, chat)
	default:
		return fmt.Appendf(nil, `{"update_id":%d,"edited_message":{"message_id":%d,"date":1700000000,"edit_date":1700000100,"chat":%s,"from":%s,"text":"edited text"}}`,
			updateID, updateID-1, chat, user)
	}
}

// runLoad posts realistic updates to url(bot) from conns keep-alive connections for d and
// measures every acknowledgement.
func runLoad(url func(inboundBot) string, bots []inboundBot, conns int, d time.Duration, nextID *atomic.Int64) loadResult {
	client := &http.Client{Transport: &http.Transport{MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2}, Timeout: 30 * time.Second}
	var acked, failed atomic.Int64
	lat := make([][]time.Duration, conns)
	start := time.Now()
	var wg sync.WaitGroup
	for w := range conns {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 42))
			for time.Since(start) < d {
				bot := bots[rng.IntN(len(bots))]
				body := inboundUpdate(rng, nextID.Add(1), 10_000+rng.Int64N(50))
				req, _ := http.NewRequest(http.MethodPost, url(bot), bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set(telegram.SecretHeader, bot.secret)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					failed.Add(1)
					continue
				}
				lat[w] = append(lat[w], time.Since(t0))
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	r := loadResult{acked: acked.Load(), failed: failed.Load(), elapsed: time.Since(start)}
	for _, l := range lat {
		r.latencies = append(r.latencies, l...)
	}
	slices.Sort(r.latencies)
	return r
}

// minimalWebhook is the reference of TECH-NOTES.md ("Measured on this machine"): a handler
// that checks the secret of a bot kept in memory, parses update_id, does one INSERT and one
// asynq enqueue per request, and nothing else.
func minimalWebhook(te *testEnv, bots map[uuid.UUID]inboundBot, queue *asynq.Client) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := uuid.Parse(strings.Trim(strings.TrimPrefix(r.URL.Path, "/minimal/"), "/"))
		bot, ok := bots[id]
		if err != nil || !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		h := sha256.Sum256([]byte(r.Header.Get(telegram.SecretHeader)))
		if subtle.ConstantTimeCompare(h[:], bot.secretHash) != 1 {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		body, _ := io.ReadAll(r.Body)
		var head struct {
			UpdateID int64 `json:"update_id"`
		}
		if json.Unmarshal(body, &head) != nil {
			w.WriteHeader(http.StatusOK)
			return
		}
		var eventID int64
		err = te.db.NewRaw(`INSERT INTO webhook_events (tenant_id, bot_id, update_id, update_type, payload)
			VALUES (?, ?, ?, 'message', ?::jsonb) ON CONFLICT (bot_id, update_id) DO NOTHING RETURNING id`,
			bot.tenantID, bot.id, head.UpdateID, string(body)).Scan(r.Context(), &eventID)
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 5*time.Second)
		defer cancel()
		task := asynq.NewTask("bench:update", []byte(strconv.FormatInt(eventID, 10)),
			asynq.TaskID("bench:"+strconv.FormatInt(eventID, 10)), asynq.Queue("bench"))
		if _, err := queue.EnqueueContext(ctx, task); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}
}

// BenchmarkInbound is the inbound benchmark of issue 5: BENCH_BOTS bots (default 1,000),
// BENCH_CONNS keep-alive connections (default 64) posting realistic updates (text,
// commands, callback queries, edits; 50 users per bot) for BENCH_DURATION (default 10s)
// through the real router, with RunEventProcessors(BENCH_PROCESSORS, default 2) running in
// the same process (as `botfleet all`); then it waits until every stored event is
// processed. Before that, the same load runs against minimalWebhook (one INSERT + one
// enqueue per request) as the reference. It reports acknowledged/s, p50 and p99, and
// end-to-end processed/s = updates / (load time + drain time). It runs once whatever
// -benchtime says.
//
//	go test ./api/ -run '^$' -bench Inbound -benchtime 1x -timeout 30m
//	BENCH_DURATION=30s go test ./api/ -run '^$' -bench Inbound -benchtime 1x -cpuprofile cpu.prof
func BenchmarkInbound(b *testing.B) {
	envInt := func(name string, def int) int {
		if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
			return v
		}
		return def
	}
	nBots, conns, procs := envInt("BENCH_BOTS", 1000), envInt("BENCH_CONNS", 64), envInt("BENCH_PROCESSORS", 2)
	d := 10 * time.Second
	if v, err := time.ParseDuration(os.Getenv("BENCH_DURATION")); err == nil && v > 0 {
		d = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	te := newEnv(b)
	te.validate = false
	e := New(Deps{Tenants: te.tenants, Telegram: te.tg, Contacts: te.contacts, Broadcasts: te.bc,
		DB: te.db, Redis: te.rdb, AdminToken: testAdminToken, Log: discardLog()})
	tenantID, _ := te.newTenant("bench")

	// Register the bots (getMe, setWebhook, setMyCommands against the emulator).
	bots := make([]inboundBot, nBots)
	var wg sync.WaitGroup
	var regErr atomic.Value
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < nBots; i += 8 {
				info := te.emu.CreateBot("", fmt.Sprintf("bench %d", i))
				bot, err := te.tg.RegisterBot(ctx, tenantID, telegram.NewBot{Name: fmt.Sprintf("Bench %d", i), Token: info.Token})
				if err != nil {
					regErr.Store(err)
					return
				}
				secret := te.emu.WebhookInfo(info.ID).SecretToken
				h := sha256.Sum256([]byte(secret))
				bots[i] = inboundBot{id: bot.ID, secret: secret, secretHash: h[:], tenantID: tenantID}
			}
		})
	}
	wg.Wait()
	if err, _ := regErr.Load().(error); err != nil {
		b.Fatal(err)
	}
	byID := map[uuid.UUID]inboundBot{}
	for _, bot := range bots {
		byID[bot.id] = bot
	}
	var nextID atomic.Int64
	nextID.Store(1)
	count := func(where string) int {
		var n int
		if err := te.db.NewRaw("SELECT count(*) FROM webhook_events WHERE "+where).Scan(context.Background(), &n); err != nil {
			b.Fatal(err)
		}
		return n
	}

	// The reference: one INSERT + one enqueue per request (BENCH_MINIMAL=0 skips it).
	var minimal loadResult
	if os.Getenv("BENCH_MINIMAL") != "0" {
		minSrv := httptest.NewServer(minimalWebhook(te, byID, asynq.NewClientFromRedisClient(te.rdb)))
		minimal = runLoad(func(bot inboundBot) string { return minSrv.URL + "/minimal/" + bot.id.String() + "/" }, bots, conns, d, &nextID)
		minSrv.Close()
		if _, err := te.db.ExecContext(ctx, "DELETE FROM webhook_events"); err != nil {
			b.Fatal(err)
		}
	}

	// botfleet: the router, Ingest's group commit, the event processors. BENCH_PHASES=1
	// runs the load with no processor first, then the processors alone on the backlog, and
	// reports the CPU time of this database's PostgreSQL backends in each phase.
	phases := os.Getenv("BENCH_PHASES") == "1"
	srv := httptest.NewServer(e)
	defer srv.Close()
	procDone := make(chan struct{})
	startProcessors := func() {
		go func() { defer close(procDone); _ = te.tg.RunEventProcessors(ctx, procs) }()
	}
	if !phases {
		startProcessors()
	}
	cpu0 := backendCPU(b, te)
	b.ResetTimer()
	res := runLoad(func(bot inboundBot) string { return srv.URL + "/telegram/v1/webhooks/" + bot.id.String() + "/" }, bots, conns, d, &nextID)
	cpu1 := backendCPU(b, te)
	if phases {
		b.Logf("phase 1, ingest only: %.0f ack/s, p50 %s, p99 %s; PostgreSQL CPU %.2fs = %.0f µs per update",
			res.rate(), res.pct(0.5), res.pct(0.99), cpu1-cpu0, (cpu1-cpu0)*1e6/float64(res.acked))
		startProcessors()
	}
	drainStart := time.Now()
	backlog := count("processed_at IS NULL")
	for count("processed_at IS NULL") > 0 {
		if time.Since(drainStart) > 10*time.Minute {
			b.Fatal("events still unprocessed after 10 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	drain := time.Since(drainStart)
	b.StopTimer()
	if cpu2 := backendCPU(b, te); phases {
		b.Logf("phase 2, processing only: %d updates in %s = %.0f/s; PostgreSQL CPU %.2fs = %.0f µs per update",
			res.acked, drain.Round(time.Millisecond), float64(res.acked)/drain.Seconds(), cpu2-cpu1, (cpu2-cpu1)*1e6/float64(res.acked))
	}
	cancel()
	<-procDone

	stored := count("true")
	failedEvents := count("process_error LIKE 'failed:%'")
	processedRate := float64(stored) / (res.elapsed + drain).Seconds()
	b.Logf("bots %d, connections %d, processors %d, load %s", nBots, conns, procs, d)
	b.Logf("minimal handler (INSERT + enqueue): %.0f ack/s, p50 %s, p99 %s, failed %d",
		minimal.rate(), minimal.pct(0.5), minimal.pct(0.99), minimal.failed)
	b.Logf("botfleet: %.0f ack/s, p50 %s, p99 %s, failed %d; stored %d (acked %d); backlog at end of load %d, drained in %s; processed end to end %.0f/s (%.2f of the minimal handler's ack/s); failed events %d",
		res.rate(), res.pct(0.5), res.pct(0.99), res.failed, stored, res.acked, backlog, drain.Round(time.Millisecond),
		processedRate, processedRate/minimal.rate(), failedEvents)
	b.ReportMetric(res.rate(), "ack/s")
	b.ReportMetric(float64(res.pct(0.5).Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(res.pct(0.99).Microseconds())/1000, "p99_ms")
	b.ReportMetric(processedRate, "processed/s")
	b.ReportMetric(minimal.rate(), "minimal_ack/s")
	b.ReportMetric(float64(minimal.pct(0.99).Microseconds())/1000, "minimal_p99_ms")
	if res.failed > 0 || int64(stored) != res.acked || failedEvents > 0 {
		b.Fatalf("failed requests %d, stored %d for %d acknowledged, failed events %d", res.failed, stored, res.acked, failedEvents)
	}
}

// backendCPU returns the CPU seconds (user + system) used so far by the PostgreSQL backends
// connected to te's database (read from /proc: PostgreSQL must run on this machine; 0
// otherwise). Backends that exited are not counted: the pool keeps its connections.
func backendCPU(b *testing.B, te *testEnv) float64 {
	var pids []int
	if err := te.db.NewRaw("SELECT pid FROM pg_stat_activity WHERE datname = current_database()").Scan(context.Background(), &pids); err != nil {
		b.Fatal(err)
	}
	ticks := 0
	for _, pid := range pids {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// Fields after the command (which may hold spaces): state is field 3, utime 14, stime 15.
		f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+2:]))
		if len(f) > 12 {
			u, _ := strconv.Atoi(f[11])
			s, _ := strconv.Atoi(f[12])
			ticks += u + s
		}
	}
	return float64(ticks) / 100 // USER_HZ
}
