package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/testenv"
)

// target is one webhook the load generator posts to.
type target struct {
	url    string
	secret string
	bot    *fleetBot
}

// loadStats is what the load generator saw.
type loadStats struct {
	ok      int
	errs    map[string]int // by status or transport error
	lat     []time.Duration
	elapsed time.Duration
}

func (s loadStats) rate() float64 { return rate(s.ok, s.elapsed) }

func (s loadStats) errText() string {
	if len(s.errs) == 0 {
		return "no errors"
	}
	var parts []string
	for k, n := range s.errs {
		parts = append(parts, fmt.Sprintf("%s x %d", k, n))
	}
	return strings.Join(parts, ", ")
}

// runLoad posts realistic updates to targets over conns keep-alive connections (one
// goroutine each, one request at a time) for dur.
func runLoad(ctx context.Context, conns int, dur time.Duration, targets []target) loadStats {
	tr := &http.Transport{
		MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var (
		mu  sync.Mutex
		all = loadStats{errs: map[string]int{}}
		wg  sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for i := range conns {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(i)))
			var lat []time.Duration
			errs := map[string]int{}
			ok := 0
			var buf []byte
			for ctx.Err() == nil && time.Now().Before(deadline) {
				t := targets[rng.IntN(len(targets))]
				buf = appendUpdate(buf[:0], rng, t.bot)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(buf))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("X-Telegram-Bot-Api-Secret-Token", t.secret)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					if ctx.Err() == nil {
						errs[errKey(err)]++
					}
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					ok++
					lat = append(lat, time.Since(t0))
				} else {
					errs[strconv.Itoa(resp.StatusCode)]++
				}
			}
			mu.Lock()
			all.ok += ok
			all.lat = append(all.lat, lat...)
			for k, n := range errs {
				all.errs[k] += n
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	all.elapsed = time.Since(start)
	all.lat = sortedDurations(all.lat)
	return all
}

func errKey(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "transport error"
}

var chatTexts = []string{
	"Hi! Is the shop open on Sunday?",
	"What are your prices for delivery to Berlin?",
	"thanks 👍",
	"Can I change the size of my order #48213?",
	"ok",
	"Where is my parcel? It has been a week.",
}

// appendUpdate appends a Telegram Update (core.telegram.org/bots/api#update) for a random user
// of bot: a text message (45 %), a command (15 %: /help, /start), a callback query (20 %) or
// an edited message (20 %), with the bot's next unique update_id.
func appendUpdate(b []byte, rng *rand.Rand, bot *fleetBot) []byte {
	u := bot.users[rng.IntN(len(bot.users))]
	uid := bot.nextID.Add(1)
	mid := bot.nextMsg.Add(1)
	now := time.Now().Unix()
	from := fmt.Sprintf(`{"id":%d,"is_bot":false,"first_name":%q,"language_code":"en"}`, u.ID, u.FirstName)
	chat := fmt.Sprintf(`{"id":%d,"first_name":%q,"type":"private"}`, u.ID, u.FirstName)
	switch k := rng.IntN(100); {
	case k < 45:
		text, _ := json.Marshal(chatTexts[rng.IntN(len(chatTexts))])
		return fmt.Appendf(b, `{"update_id":%d,"message":{"message_id":%d,"from":%s,"chat":%s,"date":%d,"text":%s}}`,
			uid, mid, from, chat, now, text)
	case k < 60:
		cmd := "/help"
		if k < 50 {
			cmd = "/start"
		}
		return fmt.Appendf(b, `{"update_id":%d,"message":{"message_id":%d,"from":%s,"chat":%s,"date":%d,"text":%q,"entities":[{"offset":0,"length":%d,"type":"bot_command"}]}}`,
			uid, mid, from, chat, now, cmd, len(cmd))
	case k < 80:
		botUser := fmt.Sprintf(`{"id":%d,"is_bot":true,"first_name":%q,"username":%q}`, bot.tg.ID, bot.tg.FirstName, bot.tg.Username)
		return fmt.Appendf(b, `{"update_id":%d,"callback_query":{"id":"%d%d","from":%s,"message":{"message_id":%d,"from":%s,"chat":%s,"date":%d,"text":"Choose a plan","reply_markup":{"inline_keyboard":[[{"text":"Basic","callback_data":"plan_basic"},{"text":"Pro","callback_data":"plan_pro"}]]}},"chat_instance":"%d","data":"plan_pro"}}`,
			uid, u.ID, uid, from, mid, botUser, chat, now-60, u.ID*7)
	default:
		text, _ := json.Marshal(chatTexts[rng.IntN(len(chatTexts))] + " (edited)")
		return fmt.Appendf(b, `{"update_id":%d,"edited_message":{"message_id":%d,"from":%s,"chat":%s,"date":%d,"edit_date":%d,"text":%s}}`,
			uid, max(mid-1, 1), from, chat, now-30, now, text)
	}
}

// minimalHandler is the yardstick of scenario 4: a webhook that does one INSERT into its
// own table and one asynq enqueue per request, nothing else (no bot lookup, no secret check).
type minimalHandler struct {
	pool  *pgxpool.Pool
	rdb   *redis.Client
	queue *asynq.Client
	srv   *http.Server
	base  string
}

func startMinimal(ctx context.Context, r *run, dbURL string) (*minimalHandler, error) {
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 40 // the platform's pool size (internal/database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS bench_minimal_events (
		id bigserial PRIMARY KEY, bot_id uuid NOT NULL, update_id bigint NOT NULL, payload jsonb NOT NULL,
		received_at timestamptz NOT NULL DEFAULT now(), UNIQUE (bot_id, update_id))`); err != nil {
		pool.Close()
		return nil, err
	}
	opt, err := redis.ParseURL(testenv.RedisDBURL(r.b))
	if err != nil {
		pool.Close()
		return nil, err
	}
	m := &minimalHandler{pool: pool, rdb: redis.NewClient(opt)}
	m.queue = asynq.NewClientFromRedisClient(m.rdb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.close()
		return nil, err
	}
	m.base = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /telegram/v1/webhooks/{bot_app_id}/", m.serve)
	m.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = m.srv.Serve(ln) }()
	return m, nil
}

func (m *minimalHandler) serve(w http.ResponseWriter, req *http.Request) {
	botID, err := uuid.Parse(req.PathValue("bot_app_id"))
	if err != nil {
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, 1<<20))
	if err != nil {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	var u struct {
		UpdateID int64 `json:"update_id"`
	}
	if json.Unmarshal(body, &u) != nil || u.UpdateID <= 0 {
		http.Error(w, "bad update", http.StatusBadRequest)
		return
	}
	ctx := req.Context()
	var id int64
	err = m.pool.QueryRow(ctx, `INSERT INTO bench_minimal_events (bot_id, update_id, payload) VALUES ($1, $2, $3)
		ON CONFLICT (bot_id, update_id) DO NOTHING RETURNING id`, botID, u.UpdateID, body).Scan(&id)
	if err != nil {
		http.Error(w, "store: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	t := asynq.NewTask("bench:minimal", []byte(fmt.Sprintf(`{"event_id":%d}`, id)))
	if _, err := m.queue.EnqueueContext(ctx, t, asynq.Queue("bench_minimal"), asynq.TaskID(strconv.FormatInt(id, 10))); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		http.Error(w, "enqueue: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write([]byte(`{"ok":true}`))
}

func (m *minimalHandler) stored(ctx context.Context) (int, error) {
	var n int
	err := m.pool.QueryRow(ctx, "SELECT count(*) FROM bench_minimal_events").Scan(&n)
	return n, err
}

func (m *minimalHandler) close() {
	if m.srv != nil {
		_ = m.srv.Close()
	}
	if m.queue != nil {
		_ = m.queue.Close()
	}
	if m.rdb != nil {
		_ = m.rdb.Close()
	}
	m.pool.Close()
}

// scenario4 is the inbound benchmark: realistic updates posted straight to the webhooks of
// many bots over 64 keep-alive connections, then the drain of what was stored, against the
// minimal handler driven by the same load generator.
func scenario4(ctx context.Context, r *run) error {
	id, rep := r.id, r.rep
	nbots, err := r.cfg.count(4, "BOTS", 1000, 2)
	if err != nil {
		return err
	}
	nusers, err := r.cfg.count(4, "USERS", 100, 10)
	if err != nil {
		return err
	}
	dur, err := envDuration("BENCH_S4_DURATION", max(5*time.Second, time.Duration(float64(30*time.Second)*r.cfg.scale)))
	if err != nil {
		return err
	}
	drainCap, err := r.cfg.timeout(4, 10*time.Minute)
	if err != nil {
		return err
	}
	const conns = 64
	r.rep.title(4, fmt.Sprintf("inbound: %d bots, %d connections, %s", nbots, conns, secs(dur)))

	p, err := r.newPlatform(ctx, platformOpts{})
	if err != nil {
		return err
	}
	bots, err := p.registerBots(ctx, nbots, 10)
	if err != nil {
		return err
	}
	makeUsers(bots, nusers)
	for _, fb := range bots {
		for _, u := range fb.users {
			if err := p.emu.AddUser(fb.tg.ID, u); err != nil { // replies to /start and /help reach a chat
				return err
			}
		}
	}

	// The yardstick first, while the platform is idle.
	m, err := startMinimal(ctx, r, p.dbURL)
	if err != nil {
		return err
	}
	mt := make([]target, len(bots))
	for i, fb := range bots {
		mt[i] = target{url: m.base + "/telegram/v1/webhooks/" + fb.appID + "/", secret: fb.hookToken, bot: fb}
	}
	r.logf("minimal handler: %d connections for %s", conns, secs(dur))
	mstat := runLoad(ctx, conns, dur, mt)
	mstored, err := m.stored(ctx)
	m.close()
	if err != nil {
		return err
	}
	r.logf("minimal handler: %s acknowledged (%s), p99 %s", num(mstat.ok), perSec(mstat.rate()), ms(percentile(mstat.lat, 0.99)))
	rep.add(id, "minimal handler (1 INSERT + 1 enqueue): acknowledged", "-",
		fmt.Sprintf("%s (p50 %s, p99 %s; %s stored; %s)", perSec(mstat.rate()), ms(percentile(mstat.lat, 0.5)),
			ms(percentile(mstat.lat, 0.99)), num(mstored), mstat.errText()), verdictInfo)

	// The platform.
	targets := make([]target, len(bots))
	for i, fb := range bots {
		targets[i] = target{url: fb.hookURL, secret: fb.hookToken, bot: fb}
	}
	if r.cfg.profile != "" {
		pd := min(20*time.Second, dur)
		p.profileCPU(p.serve, pd, "s4-serve.cpu.pprof")
		p.profileCPU(p.workerList()[0], pd, "s4-worker1.cpu.pprof")
	}
	r.logf("webhook: %d connections for %s", conns, secs(dur))
	ps := runLoad(ctx, conns, dur, targets)
	loadEnd := time.Now()
	p.waitProfiles()
	r.logf("webhook: %s acknowledged (%s), p99 %s, %s", num(ps.ok), perSec(ps.rate()), ms(percentile(ps.lat, 0.99)), ps.errText())
	r.b.ReportMetric(ps.rate(), "acks/s")

	var stored, unprocessed int
	count := func(ctx context.Context) error {
		return p.db.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE processed_at IS NULL) FROM webhook_events").Scan(&stored, &unprocessed)
	}
	if err := count(ctx); err != nil {
		return err
	}
	atLoadEnd := unprocessed
	err = p.waitFor(ctx, drainCap, func(ctx context.Context) (bool, error) {
		err := count(ctx)
		return unprocessed == 0, err
	}, func() { r.logf("drain: %s of %s stored updates unprocessed", num(unprocessed), num(stored)) })
	drained := !errors.Is(err, errTimeout)
	if err != nil && drained {
		return err
	}
	drain := time.Since(loadEnd)
	if err := count(ctx); err != nil {
		return err
	}
	r.logf("drain: %s in %s, %s unprocessed", map[bool]string{true: "done", false: "timed out"}[drained], secs(drain), num(unprocessed))

	rep.add(id, "webhook: acknowledged", "-", fmt.Sprintf("%s (%s in %s; %s)", perSec(ps.rate()), num(ps.ok), secs(ps.elapsed), ps.errText()), verdictInfo)
	rep.add(id, "webhook: ack latency p50", "-", ms(percentile(ps.lat, 0.5)), verdictInfo)
	rep.check(id, "webhook: ack latency p99", "< 50 ms", ms(percentile(ps.lat, 0.99)), len(ps.lat) > 0 && percentile(ps.lat, 0.99) < 50*time.Millisecond)
	rep.add(id, "unprocessed when the load stopped", "-", num(atLoadEnd), verdictInfo)
	if drained {
		rep.add(id, "drain after the load", "-", secs(drain), verdictInfo)
	} else {
		rep.add(id, "drain after the load", "-", fmt.Sprintf("timed out after %s, %s left", secs(drainCap), num(unprocessed)), verdictTimeout)
	}
	e2e := rate(stored-unprocessed, ps.elapsed+drain)
	goal := 0.8 * mstat.rate()
	rep.check(id, "end-to-end processed/s (load + drain)", ">= "+perSec(goal)+" (0.8 x minimal)",
		fmt.Sprintf("%s (%s in %s + %s)", perSec(e2e), num(stored-unprocessed), secs(ps.elapsed), secs(drain)), drained && e2e >= goal)
	rep.check(id, "stored = acknowledged", num(ps.ok), num(stored), stored == ps.ok)
	if drained {
		rep.check(id, "every stored update processed", "0 left", num(unprocessed)+" left", unprocessed == 0)
	} else {
		rep.add(id, "every stored update processed", "0 left", num(unprocessed)+" left at the cap", verdictTimeout)
	}
	p.reportCPU()
	rep.add(id, "peak RSS serve; workers", "-", mib(p.serve.PeakRSS())+"; "+rssList(p.workersPeakRSS()), verdictInfo)
	return nil
}
