package e2e

import (
	"fmt"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// balancer is a round-robin HTTP load balancer in front of the serve processes, standing
// for the operator's: Telegram's webhooks and the API calls alternate between them.
type balancer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	backends []*url.URL
	hooks    []atomic.Int64 // webhook requests per backend
	next     atomic.Int64
}

func newBalancer(t *testing.T) *balancer {
	b := &balancer{hooks: make([]atomic.Int64, 8)}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		b.mu.Lock()
		i := int(b.next.Add(1)) % len(b.backends)
		u := b.backends[i]
		b.mu.Unlock()
		if strings.HasPrefix(r.In.URL.Path, "/telegram/v1/webhooks/") {
			b.hooks[i].Add(1)
		}
		r.SetURL(u)
	}}
	b.srv = httptest.NewServer(rp)
	t.Cleanup(b.srv.Close)
	return b
}

func (b *balancer) add(addr string) {
	b.mu.Lock()
	b.backends = append(b.backends, &url.URL{Scheme: "http", Host: addr})
	b.mu.Unlock()
}

// TestRedisCluster runs botfleet on a local 3-master Redis Cluster with two serve processes
// (behind a round-robin balancer that Telegram's webhooks and the API go through) and two
// worker processes: users /start three bots through tgemu and become contacts with a welcome
// reply each; then a broadcast per bot reaches every contact. Nothing is lost or sent twice,
// Telegram's limits hold, every task completes (none archived), both serve processes took
// webhooks, both workers ran on the cluster, and TELEGRAM_RATE_LIMIT (40/s, binding here) is
// shared by both workers: no two sends closer than its interval on average.
func TestRedisCluster(t *testing.T) {
	const bots, users, globalPerSec = 3, 40, 40
	addrs := testenv.RedisCluster(t) // skips when redis-server is absent
	lb := newBalancer(t)
	p := newPlatform(t, options{
		workers: 2,
		env: map[string]string{
			"REDIS_URL": testenv.RedisClusterURL(addrs), "REDIS_CLUSTER": "true",
			"PUBLIC_BASE_URL":     lb.srv.URL,
			"TELEGRAM_RATE_LIMIT": fmt.Sprint(globalPerSec, "/s"), "SWEEP_INTERVAL": "2s", "SHUTDOWN_TIMEOUT": "5s",
		},
	})
	// A second serve process on its own address; both behind the balancer.
	lb.add(strings.TrimPrefix(p.base, "http://"))
	addr2 := freeAddr(t)
	env := p.env
	p.env = append(slices.Clone(env), "HTTP_ADDR="+addr2) // the last value of a key wins
	p.start("serve")
	p.env = env
	p.base = "http://" + addr2
	p.waitHealthy()
	lb.add(addr2)
	p.base = lb.srv.URL

	f := registerFleet(t, p, "cluster", bots)
	f.contacts = make([][]contactResp, bots)
	userID := func(bot, u int) int64 { return int64(3_000_000*(bot+1) + u) }
	for _, b := range f.bots {
		if !strings.HasPrefix(b.WebhookURL, lb.srv.URL) {
			t.Fatalf("webhook URL %q does not go through the balancer %s", b.WebhookURL, lb.srv.URL)
		}
	}
	for u := range users {
		for i := range bots {
			if _, err := p.emu.SendCommand(f.emuIDs[i], tgemu.User{ID: userID(i, u), FirstName: fmt.Sprint("U", u)}, "/start"); err != nil {
				t.Fatal(err)
			}
		}
	}
	welcomes := func() (total, dups int) {
		for i := range bots {
			got := map[int64]int{}
			for _, s := range p.emu.Sent(f.emuIDs[i]) {
				if strings.HasPrefix(s.Text, "Hi U") {
					got[s.ChatID]++
				}
			}
			for _, n := range got {
				total++
				dups += n - 1
			}
		}
		return total, dups
	}
	eventually(t, 30*time.Second, "every user welcomed", func() bool {
		n, _ := welcomes()
		return n == bots*users
	})
	for i, b := range f.bots {
		eventually(t, 10*time.Second, "contacts of bot "+b.BotAppID, func() bool {
			var page struct {
				Items []contactResp `json:"items"`
			}
			p.do("GET", "/contacts/?limit=200&bot_app_id="+b.BotAppID, f.key, nil, &page)
			f.contacts[i] = page.Items
			return len(page.Items) == users
		})
	}
	if _, dups := welcomes(); dups != 0 {
		t.Errorf("%d duplicate welcomes", dups)
	}
	if n := p.query(t, `SELECT count(*) FROM webhook_events WHERE processed_at IS NULL`); n != 0 {
		t.Errorf("%d stored updates left unprocessed", n)
	}
	if n := p.query(t, `SELECT count(*) FROM webhook_events`); n != bots*users {
		t.Errorf("%d stored updates, want one per /start (%d)", n, bots*users)
	}
	welcomeEnd := time.Now()

	bcs := make([]broadcastResp, bots)
	for i := range bots {
		bcs[i] = f.broadcast(t, i, fmt.Sprint("cluster news ", i))
	}
	eventually(t, 30*time.Second, "every broadcast completed", func() bool {
		for i := range bcs {
			p.do("GET", "/broadcast/"+bcs[i].ID+"/", f.key, nil, &bcs[i])
			if bcs[i].Status != "completed" {
				return false
			}
		}
		return true
	})

	var welcomeAt, broadcastAt []time.Time
	for i := range bots {
		got := f.copies(i, fmt.Sprint("cluster news ", i))
		for _, c := range f.contacts[i] {
			if n := got[c.TelegramChatID]; n != 1 {
				t.Errorf("bot %d chat %d got the broadcast %d times, want 1", i, c.TelegramChatID, n)
			}
		}
		if bcs[i].Sent != users || bcs[i].Failed != 0 {
			t.Errorf("broadcast %d: %+v, want sent=%d", i, bcs[i], users)
		}
		if v := p.emu.Violations(f.emuIDs[i]); v != (tgemu.Violations{}) {
			t.Errorf("bot %d: Telegram limits violated %+v", i, v)
		}
		for _, s := range p.emu.Sent(f.emuIDs[i]) {
			if s.At.Before(welcomeEnd) {
				welcomeAt = append(welcomeAt, s.At)
			} else {
				broadcastAt = append(broadcastAt, s.At)
			}
		}
	}
	// TELEGRAM_RATE_LIMIT spaces the starts of all sends, of all bots and both workers, by
	// its interval: n sends span at least n-1 intervals (less a little arrival jitter).
	interval := time.Second / globalPerSec
	for phase, at := range map[string][]time.Time{"welcome": welcomeAt, "broadcast": broadcastAt} {
		slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
		span := at[len(at)-1].Sub(at[0])
		if want := time.Duration(len(at)-1)*interval - 50*time.Millisecond; span < want {
			t.Errorf("%s: %d sends in %v, faster than TELEGRAM_RATE_LIMIT=%d/s allows (%v)", phase, len(at), span, globalPerSec, want)
		}
		t.Logf("%s: %d sends in %v (%.1f/s)", phase, len(at), span.Round(time.Millisecond), float64(len(at)-1)/span.Seconds())
	}

	for i := range 2 {
		if n := lb.hooks[i].Load(); n == 0 {
			t.Errorf("serve process %d took no webhook", i+1)
		}
	}
	t.Logf("webhooks per serve process: %d, %d", lb.hooks[0].Load(), lb.hooks[1].Load())

	// The workers' asynq servers heartbeat on the cluster; no task was archived (lost).
	insp := asynq.NewInspectorFromRedisClient(testenv.RedisClusterClient(t, addrs))
	servers, err := insp.Servers()
	if err != nil {
		t.Fatal(err)
	}
	pids := map[int]bool{}
	for _, s := range servers {
		pids[s.PID] = true
	}
	for _, w := range p.workers {
		if !pids[w.cmd.Process.Pid] {
			t.Errorf("worker pid %d has no asynq server on the cluster (servers: %v)", w.cmd.Process.Pid, pids)
		}
	}
	queues, err := insp.Queues()
	if err != nil || len(queues) == 0 {
		t.Fatalf("queues %v err %v", queues, err)
	}
	for _, q := range queues {
		info, err := insp.GetQueueInfo(q)
		if err != nil {
			t.Fatal(err)
		}
		if info.Archived != 0 {
			t.Errorf("queue %s: %d archived tasks", q, info.Archived)
		}
		t.Logf("queue %s: processed %d, failed %d, archived %d", q, info.ProcessedTotal, info.FailedTotal, info.Archived)
	}
}
