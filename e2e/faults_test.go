package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// Faults survived (issue 6): each test stops or degrades a dependency of a running platform
// and checks that nothing is lost. Tests that stop PostgreSQL or Redis run their own private
// server (testenv.StartPostgres, testenv.StartRedis), never the shared one.

// webhookCounter is a reverse proxy in front of the serve process's webhook (the bots'
// webhook URLs point at it through PUBLIC_BASE_URL) that counts the answers by status.
type webhookCounter struct {
	target atomic.Pointer[url.URL]
	mu     sync.Mutex
	codes  map[int]int
}

// start serves the proxy and returns its base URL; setTarget must be called before the
// first webhook delivery.
func (w *webhookCounter) start(t *testing.T) string {
	t.Helper()
	w.codes = map[int]int{}
	rp := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) { r.SetURL(w.target.Load()) },
		ModifyResponse: func(resp *http.Response) error {
			w.mu.Lock()
			w.codes[resp.StatusCode]++
			w.mu.Unlock()
			return nil
		},
		ErrorHandler: func(rw http.ResponseWriter, _ *http.Request, _ error) {
			w.mu.Lock()
			w.codes[http.StatusBadGateway]++
			w.mu.Unlock()
			rw.WriteHeader(http.StatusBadGateway)
		},
	}
	addr := freeAddr(t)
	srv := &http.Server{Addr: addr, Handler: rp, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = srv.ListenAndServe() }()
	t.Cleanup(func() { _ = srv.Close() })
	return "http://" + addr
}

func (w *webhookCounter) setTarget(t *testing.T, base string) {
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	w.target.Store(u)
}

// count returns the answers with status code so far.
func (w *webhookCounter) count(code int) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.codes[code]
}

// snapshot returns a copy of the counts by status.
func (w *webhookCounter) snapshot() map[int]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := make(map[int]int, len(w.codes))
	for k, v := range w.codes {
		m[k] = v
	}
	return m
}

// dsn returns the platform's DATABASE_URL.
func (p *platform) dsn() string {
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			return v
		}
	}
	return ""
}

// TestPostgresOutage stops PostgreSQL while users write to two bots: the webhook answers 503
// (never 200, never another error) and the emulator redelivers, as Telegram does; once
// PostgreSQL is back every update is stored once and processed: each user becomes a contact
// and is welcomed exactly once, nothing is left unprocessed, and the API and the event
// processors recover without a restart.
func TestPostgresOutage(t *testing.T) {
	t.Parallel() // with TestRedisOutageMidBroadcast: each has its own servers
	const bots, before, during, after = 2, 4, 12, 3
	const users = before + during + after
	pg := testenv.StartPostgres(t)
	var hook webhookCounter
	public := hook.start(t)
	p := newPlatform(t, options{
		emu: tgemu.Options{RetryBackoff: 100 * time.Millisecond, MaxRetryBackoff: time.Second},
		env: map[string]string{
			"DATABASE_URL": pg.URL("botfleet"), "PUBLIC_BASE_URL": public,
			"TELEGRAM_RATE_LIMIT": "100000/s", "TELEGRAM_REQUEST_TIMEOUT": "2s", "TELEGRAM_MAX_WAIT": "2s",
			"SWEEP_INTERVAL": "1s",
		},
	})
	hook.setTarget(t, p.base)

	f := registerFleet(t, p, "outage", bots)
	emuIDs := f.emuIDs
	userID := func(bot, u int) int64 { return int64(3_000_000*(bot+1) + u) }
	start := func(from, to int) {
		for u := from; u < to; u++ {
			for i := range bots {
				if _, err := p.emu.SendCommand(emuIDs[i], tgemu.User{ID: userID(i, u), FirstName: fmt.Sprint("U", u)}, "/start"); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	welcomes := func(n int) (missing, dups int) {
		for i := range bots {
			got := map[int64]int{}
			for _, s := range p.emu.Sent(emuIDs[i]) {
				if strings.HasPrefix(s.Text, "Hi U") {
					got[s.ChatID]++
				}
			}
			for u := range n {
				switch c := got[userID(i, u)]; {
				case c == 0:
					missing++
				case c > 1:
					dups += c - 1
				}
			}
		}
		return missing, dups
	}

	start(0, before)
	eventually(t, 30*time.Second, "the first users welcomed", func() bool { m, _ := welcomes(before); return m == 0 })

	// Users keep writing, one every 100 ms per bot; PostgreSQL stops while the first of them
	// are being stored, processed and welcomed.
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for u := before; u < before+during; u++ {
			start(u, u+1)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	eventually(t, 30*time.Second, "new users being welcomed", func() bool {
		m, _ := welcomes(users)
		return m <= bots*(during+after-2)
	})
	pg.Stop()
	downAt := time.Now()
	okAtStop := hook.count(http.StatusOK) // pg_ctl has waited for the server to exit
	missingAtStop, _ := welcomes(users)
	<-fed
	start(before+during, users) // and a few surely while it is down
	// Every bot's first pending update is answered 503 and redelivered with backoff
	// (100 ms doubling to 1 s: five answers take about 2.5 s).
	eventually(t, 30*time.Second, "503 answers to redeliveries", func() bool { return hook.count(http.StatusServiceUnavailable) >= 5*bots })
	var ready readyResponse
	if code := p.do("GET", "/readyz", "", nil, &ready); code != http.StatusServiceUnavailable || ready.Checks["postgres"] != "unavailable" {
		t.Errorf("GET /readyz with PostgreSQL down: %d %+v, want 503 postgres unavailable", code, ready)
	}
	var apiErr errorResp
	apiCode := p.do("GET", "/contacts/", f.key, nil, &apiErr)
	if apiCode != http.StatusServiceUnavailable {
		t.Errorf("GET /contacts/ with PostgreSQL down: %d %+v, want 503", apiCode, apiErr)
	}
	if n := hook.count(http.StatusOK); n != okAtStop {
		t.Errorf("the webhook acknowledged %d updates while PostgreSQL was down", n-okAtStop)
	}
	pg.Start()
	outage := time.Since(downAt)

	eventually(t, 60*time.Second, "every user welcomed after the outage", func() bool {
		m, _ := welcomes(users)
		return m == 0
	})
	total := bots * users
	eventually(t, 20*time.Second, "every update processed", func() bool {
		return p.query(t, `SELECT count(*) FROM webhook_events WHERE processed_at IS NULL`) == 0
	})
	if n := p.query(t, `SELECT count(*) FROM webhook_events`); n != total {
		t.Errorf("%d stored updates, want %d (each once)", n, total)
	}
	if n := p.query(t, `SELECT count(*) FROM contacts`); n != total {
		t.Errorf("%d contacts, want %d", n, total)
	}
	if n := p.query(t, `SELECT count(*) FROM messages WHERE direction = 'outbound'`); n != total {
		t.Errorf("%d replies stored, want %d", n, total)
	}
	// A reply arrives at the emulator before its result is written (results are flushed in
	// batches), so the status may lag the arrival a little.
	eventually(t, 20*time.Second, "every reply recorded as sent", func() bool {
		return p.query(t, `SELECT count(*) FROM messages WHERE direction = 'outbound' AND status <> 'sent'`) == 0
	})
	_, dups := welcomes(users)
	if dups != 0 {
		t.Errorf("%d duplicate welcomes", dups)
	}
	for i := range bots {
		if wi := p.emu.WebhookInfo(emuIDs[i]); wi.PendingUpdateCount != 0 {
			t.Errorf("bot %d: %d updates still pending in the emulator", i, wi.PendingUpdateCount)
		}
	}
	codes := hook.snapshot()
	for code, n := range codes {
		if code != http.StatusOK && code != http.StatusServiceUnavailable {
			t.Errorf("the webhook answered %d %d times; only 200 and 503 are right", code, n)
		}
	}
	if code := p.do("GET", "/readyz", "", nil, nil); code != http.StatusOK {
		t.Errorf("GET /readyz after the outage: %d", code)
	}
	t.Logf("PostgreSQL down %s (%d of %d users welcomed at the stop): webhook answered 503 %d times (200: %d), %d updates stored once and processed, %d duplicate welcomes",
		outage.Round(time.Millisecond), total-missingAtStop, total, codes[http.StatusServiceUnavailable], codes[http.StatusOK], total, dups)
}

type readyResponse struct {
	Status   string            `json:"status"`
	Checks   map[string]string `json:"checks"`
	Warnings []string          `json:"warnings"`
}

// recipientRow is one broadcast_recipients row.
type recipientRow struct {
	chatID   int64
	status   string
	attempts int
	err      string
}

// recipients reads the recipients of broadcast id.
func (p *platform) recipients(t *testing.T, id string) []recipientRow {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.dsn())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT chat_id, status, attempts, error FROM broadcast_recipients WHERE broadcast_id = $1`, id)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []recipientRow
	for rows.Next() {
		var r recipientRow
		if err := rows.Scan(&r.chatID, &r.status, &r.attempts, &r.err); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRedisOutageMidBroadcast stops Redis while a broadcast of a bot with a daily limit is half sent, and starts it again empty: the
// broadcast resumes and completes, every recipient gets the message (duplicates are counted
// and reported), Telegram's limits hold, and the bot's daily counter continues from the sends
// recorded in PostgreSQL instead of starting again at zero. Users who write while Redis is
// down are welcomed once it is back, each once. Two Redis setups: without persistence,
// killed (the restart loses every key — queued tasks, limiter windows, daily counters — the
// worst case), and with AOF and noeviction, stopped (the project's own setup).
func TestRedisOutageMidBroadcast(t *testing.T) {
	t.Parallel()
	t.Run("no persistence, killed", func(t *testing.T) {
		t.Parallel()
		rd := testenv.StartRedis(t)
		redisOutageMidBroadcast(t, rd, rd.Kill)
	})
	// The project's own Redis (scripts/services.sh, docker-compose.yml): the keys survive.
	t.Run("aof, stopped", func(t *testing.T) {
		t.Parallel()
		rd := testenv.StartRedis(t, "--appendonly", "yes", "--maxmemory-policy", "noeviction")
		redisOutageMidBroadcast(t, rd, rd.Stop)
	})
}

func redisOutageMidBroadcast(t *testing.T, rd *testenv.PrivateRedis, stop func()) {
	const perBot, senders = 90, 8
	p := newPlatform(t, options{
		workers: 1,
		emu:     tgemu.Options{RetryBackoff: 100 * time.Millisecond, MaxRetryBackoff: time.Second},
		env: map[string]string{
			"REDIS_URL":           rd.URL(0),
			"TELEGRAM_RATE_LIMIT": "100000/s", "TELEGRAM_MAX_WAIT": "2s", "TELEGRAM_REQUEST_TIMEOUT": "2s",
			"SWEEP_INTERVAL": "1s", "SHUTDOWN_TIMEOUT": "5s", "BROADCAST_SENDERS": fmt.Sprint(senders),
		},
	})
	t0 := time.Now()
	f := newFleet(t, p, 1, perBot)
	t.Logf("fleet ready in %s", time.Since(t0).Round(time.Millisecond))
	const dailyLimit = 10_000
	if code := p.do("PUT", "/telegram/v1/bots/"+f.bots[0].BotAppID+"/", f.key, map[string]any{"daily_limit": dailyLimit}, nil); code != 200 {
		t.Fatalf("set daily_limit: %d", code)
	}
	// The bot sends at Telegram's 30/s, so the broadcast takes about 3 s.
	bc := f.broadcast(t, 0, "redis down sale")
	eventually(t, 30*time.Second, "half of the broadcast", func() bool {
		return len(f.copies(0, "redis down sale")) >= perBot/2
	})
	stop()
	sentAtStop := len(f.copies(0, "redis down sale"))
	// New users write while Redis is down: PostgreSQL is the inbound queue, so their updates
	// are stored (or redelivered) and welcomed once Redis is back.
	const newUsers = 5
	newUser := func(u int) int64 { return int64(5_000_000 + u) }
	for u := range newUsers {
		if _, err := p.emu.SendCommand(f.emuIDs[0], tgemu.User{ID: newUser(u), FirstName: fmt.Sprint("N", u)}, "/start"); err != nil {
			t.Fatal(err)
		}
	}
	// Down long enough for the worker's Redis calls to fail and its windows to expire.
	time.Sleep(1500 * time.Millisecond)
	rd.Start()
	restartedAt := time.Now()

	eventually(t, 60*time.Second, "the broadcast completed after the restart", func() bool {
		p.do("GET", "/broadcast/"+bc.ID+"/", f.key, nil, &bc)
		return bc.Status == "completed"
	})
	took := time.Since(restartedAt)
	got := f.copies(0, "redis down sale")
	dups := 0
	for _, c := range f.contacts[0] {
		switch n := got[c.TelegramChatID]; {
		case n == 0:
			t.Errorf("chat %d never got the broadcast (lost)", c.TelegramChatID)
		case n > 1:
			dups += n - 1
		}
	}
	if bc.Sent != perBot || bc.Failed != 0 {
		t.Errorf("broadcast: %+v, want sent=%d", bc, perBot)
	}
	welcomes := map[int64]int{}
	eventually(t, 30*time.Second, "the users who wrote during the outage welcomed", func() bool {
		clear(welcomes)
		for _, s := range p.emu.Sent(f.emuIDs[0]) {
			if strings.HasPrefix(s.Text, "Hi N") {
				welcomes[s.ChatID]++
			}
		}
		return len(welcomes) == newUsers
	})
	for u := range newUsers {
		if n := welcomes[newUser(u)]; n != 1 {
			t.Errorf("user %d welcomed %d times, want once", newUser(u), n)
		}
	}
	if v := p.emu.Violations(f.emuIDs[0]); v != (tgemu.Violations{}) {
		t.Errorf("Telegram limits violated: %+v", v)
	}
	// The daily counter is the only key of the bot's day; after the restart it was reseeded
	// from PostgreSQL, so it counts every send of the day, not only those after the restart.
	ctx := context.Background()
	c := rd.Client()
	keys, err := c.Keys(ctx, "*daily*").Result()
	if err != nil || len(keys) != 1 {
		t.Fatalf("daily counter keys %q: %v", keys, err)
	}
	n, err := c.Get(ctx, keys[0]).Int()
	if err != nil {
		t.Fatal(err)
	}
	// The reseed counts the sends recorded in PostgreSQL; sends in flight at that moment (at
	// most BROADCAST_SENDERS of the run's chunk) are not recorded yet and may be missed.
	// Without the reseed the counter would hold only the sends after the restart.
	delivered := perBot + dups
	for _, c := range welcomes {
		delivered += c // the welcomes count too
	}
	if n > delivered || n < delivered-senders {
		t.Errorf("daily counter after the restart = %d, want %d (at least %d); %d were sent before Redis lost the counter",
			n, delivered, delivered-senders, sentAtStop)
	}
	if dups > 0 {
		if a := p.query(t, `SELECT count(*) FROM broadcast_recipients WHERE attempts > 1`); a < dups {
			t.Errorf("%d duplicates but only %d recipients record more than one attempt", dups, a)
		}
	}
	t.Logf("Redis stopped after %d/%d sends and restarted: completed %s later, %d duplicates, %d users who wrote meanwhile welcomed once, daily counter %d of %d sends",
		sentAtStop, perBot, took.Round(time.Millisecond), dups, newUsers, n, delivered)
}

// TestTelegramSlowAndFailing runs broadcasts of two bots while Telegram answers half of the
// sendMessage calls with 500, a third of the others only after 80 % of
// TELEGRAM_REQUEST_TIMEOUT and a tenth of the rest too late (timeouts): every recipient ends
// sent or failed as the retry rules say (a failed one after exactly TELEGRAM_MAX_RETRIES+1
// attempts, each attempt one call), no Telegram limit is violated, no message recorded sent
// is missing, duplicates (a timed-out attempt that Telegram had delivered) are counted, and
// meanwhile GET /contacts/ stays fast (p99 over a few hundred requests, under 100 ms or at
// most twice the same load's p99 without the broadcasts).
func TestTelegramSlowAndFailing(t *testing.T) {
	const bots, perBot, maxRetries = 2, 60, 2
	timeout := time.Second
	p := newPlatform(t, options{
		workers: 1,
		env: map[string]string{
			"TELEGRAM_RATE_LIMIT": "100000/s", "TELEGRAM_MAX_WAIT": "2s", "TELEGRAM_REQUEST_TIMEOUT": timeout.String(),
			"TELEGRAM_MAX_RETRIES": fmt.Sprint(maxRetries), "SWEEP_INTERVAL": "1s",
			// The load below measures latency with one API key, not the per-key limit.
			"API_RATE_LIMIT": "100000/s",
		},
	})
	f := newFleet(t, p, bots, perBot)
	// The same load before the faults and the broadcasts.
	before := startLoad(p, f.key)
	eventually(t, 30*time.Second, "200 requests before the broadcasts", func() bool { return before.count() >= 200 })
	base, _ := before.stop()
	baseP99 := percentile(base, 0.99)

	for i := range bots {
		p.emu.AddFault(f.emuIDs[i], tgemu.Fault{Kind: tgemu.FaultServerError, Probability: 0.5})
		p.emu.AddFault(f.emuIDs[i], tgemu.Fault{Kind: tgemu.FaultLatency, Latency: timeout * 8 / 10, Probability: 0.35})
		// And a few answer too late: the request times out (the emulator then sends nothing).
		p.emu.AddFault(f.emuIDs[i], tgemu.Fault{Kind: tgemu.FaultLatency, Latency: timeout * 3 / 2, Probability: 0.1})
	}
	bcs := make([]broadcastResp, bots)
	for i := range bots {
		bcs[i] = f.broadcast(t, i, fmt.Sprint("flaky news ", i))
	}

	// Meanwhile: GET /contacts/ from 2 clients until the broadcasts are done.
	during := startLoad(p, f.key)
	start := time.Now()
	eventually(t, 60*time.Second, "both broadcasts completed", func() bool {
		for i := range bcs {
			p.do("GET", "/broadcast/"+bcs[i].ID+"/", f.key, nil, &bcs[i])
			if bcs[i].Status != "completed" {
				return false
			}
		}
		return true
	})
	took := time.Since(start)
	durations, bad := during.stop()
	// And after them (nothing is sent any more): with the load before, the box's own latency.
	after := startLoad(p, f.key)
	eventually(t, 30*time.Second, "150 requests after the broadcasts", func() bool { return after.count() >= 150 })
	afterDs, _ := after.stop()
	baseP99 = max(baseP99, percentile(afterDs, 0.99))

	var sent, failed, failedDelivered, dups, calls int
	for i := range bots {
		text := fmt.Sprint("flaky news ", i)
		got := f.copies(i, text)
		callsTo := map[int64]int{}
		for _, c := range p.emu.Calls(f.emuIDs[i], "sendMessage") {
			if c.Params["text"] == text {
				var id int64
				_, _ = fmt.Sscan(c.Params["chat_id"], &id)
				callsTo[id]++
				calls++
			}
		}
		rows := p.recipients(t, bcs[i].ID)
		if len(rows) != perBot {
			t.Fatalf("broadcast %d has %d recipients, want %d", i, len(rows), perBot)
		}
		for _, r := range rows {
			n := got[r.chatID]
			switch r.status {
			case "sent":
				sent++
				if n == 0 {
					t.Errorf("bot %d chat %d recorded sent but never received the message", i, r.chatID)
				}
				dups += max(n-1, 0)
			case "failed":
				failed++
				// A timed-out attempt may have been delivered (its answer was lost), so a
				// failed recipient may have the message: counted, not an error.
				if n > 0 {
					failedDelivered++
				}
				if r.attempts != maxRetries+1 {
					t.Errorf("bot %d chat %d failed after %d attempts, want %d (%q)", i, r.chatID, r.attempts, maxRetries+1, r.err)
				}
			default:
				t.Errorf("bot %d chat %d left %s", i, r.chatID, r.status)
			}
			if r.attempts > maxRetries+1 {
				t.Errorf("bot %d chat %d: %d attempts, more than %d", i, r.chatID, r.attempts, maxRetries+1)
			}
			if c := callsTo[r.chatID]; c != r.attempts {
				t.Errorf("bot %d chat %d: %d sendMessage calls for %d recorded attempts", i, r.chatID, c, r.attempts)
			}
		}
		if bcs[i].Sent+bcs[i].Failed != perBot {
			t.Errorf("broadcast %d: %+v, want sent+failed = %d", i, bcs[i], perBot)
		}
		if v := p.emu.Violations(f.emuIDs[i]); v != (tgemu.Violations{}) {
			t.Errorf("bot %d: Telegram limits violated %+v", i, v)
		}
	}

	if len(durations) < 100 {
		t.Fatalf("only %d GET /contacts/ answers measured (%d bad)", len(durations), bad)
	}
	if bad > 0 {
		t.Errorf("%d GET /contacts/ requests failed during the broadcasts", bad)
	}
	p50, p99 := percentile(durations, 0.50), percentile(durations, 0.99)
	// The budget is 100 ms. Other tests share this 2-core box, so a p99 over budget fails only
	// when the faulty broadcasts made it worse: more than twice the p99 of the same load just
	// before and just after them (the larger of the two).
	if p99 > 100*time.Millisecond && p99 > 2*baseP99 {
		t.Errorf("GET /contacts/ p99 = %s during the faulty broadcasts (before them: %s), want under 100ms", p99, baseP99)
	}
	t.Logf("Telegram 50%% 5xx, 35%% of the rest at %s, 10%% of the rest timed out: %d recipients in %s, %d sent, %d failed after %d attempts (%d of them delivered by a timed-out attempt), %d calls, %d duplicates; GET /contacts/ p50 %s p99 %s over %d requests",
		timeout*8/10, bots*perBot, took.Round(time.Millisecond), sent, failed, maxRetries+1, failedDelivered, calls, dups,
		p50.Round(100*time.Microsecond), p99.Round(100*time.Microsecond), len(durations))
	t.Logf("GET /contacts/ without broadcasts (before/after, the larger): p99 %s over %d+%d requests",
		baseP99.Round(100*time.Microsecond), len(base), len(afterDs))
}

// load is GET /contacts/?limit=50 from 2 clients, each a request every 25 ms or so.
type load struct {
	done chan struct{}
	wg   sync.WaitGroup
	mu   sync.Mutex
	ds   []time.Duration // answers 200, by duration
	bad  int             // errors and other statuses
}

// startLoad starts a load on the tenant with key until stop.
func startLoad(p *platform, key string) *load {
	l := &load{done: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	for range 2 {
		l.wg.Go(func() {
			for {
				select {
				case <-l.done:
					return
				default:
				}
				req, _ := http.NewRequest("GET", p.base+"/contacts/?limit=50", nil)
				req.Header.Set("Authorization", "Bearer "+key)
				t0 := time.Now()
				resp, err := client.Do(req)
				d := time.Since(t0)
				l.mu.Lock()
				if err != nil || resp.StatusCode != 200 {
					l.bad++
				} else {
					l.ds = append(l.ds, d)
				}
				l.mu.Unlock()
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
				}
				time.Sleep(25 * time.Millisecond)
			}
		})
	}
	return l
}

// count returns the answers so far.
func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ds) + l.bad
}

// stop ends the load and returns the durations of the 200 answers, sorted, and the number
// of failed requests.
func (l *load) stop() ([]time.Duration, int) {
	close(l.done)
	l.wg.Wait()
	sort.Slice(l.ds, func(a, b int) bool { return l.ds[a] < l.ds[b] })
	return l.ds, l.bad
}

// percentile returns the q quantile of sorted ds (0 when empty).
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	return ds[int(q*float64(len(ds)-1))]
}
