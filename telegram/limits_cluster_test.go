package telegram

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
)

// keySlot is the Redis Cluster hash slot of key: CRC16 (XMODEM) of its hash tag (the text
// between the first '{' and the next '}', when not empty) or of the whole key, mod 16384
// (redis.io/docs/reference/cluster-spec, "Keys distribution model").
func keySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for k := 0; k < len(key); k++ {
		crc ^= uint16(key[k]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}

// slotChecker is a go-redis hook that records every script call (EVAL, EVALSHA) and every
// MULTI block whose keys fall in more than one hash slot: what a Redis Cluster refuses with
// CROSSSLOT.
type slotChecker struct {
	mu        sync.Mutex
	scripts   int // script calls with more than one key
	crossSlot []string
}

func (h *slotChecker) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *slotChecker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.check([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (h *slotChecker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.check(cmds)
		return next(ctx, cmds)
	}
}

// check looks at each script call of cmds, and at all keyed commands of cmds together when
// they form a MULTI transaction.
func (h *slotChecker) check(cmds []redis.Cmder) {
	h.mu.Lock()
	defer h.mu.Unlock()
	tx := len(cmds) > 0 && strings.EqualFold(cmds[0].Name(), "multi")
	var txKeys []string
	for _, c := range cmds {
		args := c.Args()
		switch strings.ToLower(c.Name()) {
		case "eval", "evalsha", "eval_ro", "evalsha_ro":
			n, _ := strconv.Atoi(fmt.Sprint(args[2]))
			keys := make([]string, n)
			for i := range n {
				keys[i] = fmt.Sprint(args[3+i])
			}
			if n > 1 {
				h.scripts++
			}
			if !sameSlot(keys) {
				h.crossSlot = append(h.crossSlot, fmt.Sprint(args[:3+n]))
			}
			txKeys = append(txKeys, keys...)
		case "multi", "exec":
		default:
			if len(args) > 1 {
				txKeys = append(txKeys, fmt.Sprint(args[1]))
			}
		}
	}
	if tx && !sameSlot(txKeys) {
		h.crossSlot = append(h.crossSlot, fmt.Sprint("MULTI ", txKeys))
	}
}

func sameSlot(keys []string) bool {
	for _, k := range keys {
		if keySlot(k) != keySlot(keys[0]) {
			return false
		}
	}
	return true
}

// TestKeySlot checks keySlot against slots Redis documents (CLUSTER KEYSLOT examples and
// the cluster specification).
func TestKeySlot(t *testing.T) {
	for key, want := range map[string]int{
		"somekey":              11058,
		"foo":                  12182,
		"{user1000}.following": keySlot("user1000"),
		"foo{}{bar}":           keySlot("foo{}{bar}"),
		"{}x":                  keySlot("{}x"),
	} {
		if got := keySlot(key); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if keySlot("{user1000}.following") != keySlot("{user1000}.followers") {
		t.Error("keys with the same hash tag in different slots")
	}
}

// TestLimiter_ScriptKeysShareSlot drives every Limiter operation (Acquire under each limit
// and refusal, the global slot, Done for many bots at once, Cancel, PauseBot, the daily
// counter) through a client that checks each script call and transaction: all the keys of
// one call must hash to one Redis Cluster slot.
func TestLimiter_ScriptKeysShareSlot(t *testing.T) {
	rdb := testenv.Redis(t)
	h := &slotChecker{}
	rdb.AddHook(h)
	l := NewLimiter(rdb, LimiterConfig{
		GlobalRate:   config.Rate{N: 1_000_000, Per: time.Second},
		BotRate:      config.Rate{N: 3, Per: time.Second},
		ChatInterval: time.Second,
	})
	l.split = true // as on a Cluster: on a single Redis the global key joins the bot's script
	exerciseLimiter(t, l)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.scripts == 0 {
		t.Fatal("no multi-key script call seen: the check saw nothing")
	}
	for _, c := range h.crossSlot {
		t.Errorf("keys in more than one hash slot: %s", c)
	}
}

// exerciseLimiter runs every Limiter operation at least once, failing t on Redis errors.
func exerciseLimiter(t *testing.T, l *Limiter) {
	t.Helper()
	ctx := context.Background()
	bots := make([]uuid.UUID, 20)
	for i := range bots {
		bots[i] = uuid.New()
	}
	var permits []Permit
	for i, b := range bots {
		p, r, err := l.Acquire(ctx, b, int64(i+1), AcquireOpts{MaxWait: time.Second})
		if err != nil || r != nil {
			t.Fatalf("acquire: refusal %+v err %v", r, err)
		}
		permits = append(permits, p)
	}
	if _, r, err := l.Acquire(ctx, bots[0], 1, AcquireOpts{}); err != nil || r == nil || r.Reason != RefusedChat {
		t.Fatalf("busy chat: refusal %+v err %v, want %q", r, err, RefusedChat)
	}
	for i := range 2 {
		p, r, err := l.Acquire(ctx, bots[0], int64(100+i), AcquireOpts{MaxWait: time.Second, Priority: PriorityInteractive})
		if err != nil || r != nil {
			t.Fatalf("acquire: refusal %+v err %v", r, err)
		}
		if i == 0 {
			if err := p.Cancel(ctx); err != nil {
				t.Fatal(err)
			}
			continue
		}
		permits = append(permits, p)
	}
	// Bot window full (3/s with Done not yet recorded): refused, and the interactive flag set.
	if _, r, err := l.Acquire(ctx, bots[0], 200, AcquireOpts{Priority: PriorityInteractive}); err != nil || r == nil || r.Reason != RefusedBot {
		t.Fatalf("full bot window: refusal %+v err %v, want %q", r, err, RefusedBot)
	}
	for _, p := range permits {
		p.Done() // one flush covers many bots
	}
	time.Sleep(50 * time.Millisecond)
	if err := l.PauseBot(ctx, bots[1], time.Second); err != nil {
		t.Fatal(err)
	}
	if _, r, err := l.Acquire(ctx, bots[1], 300, AcquireOpts{}); err != nil || r == nil || r.Reason != RefusedPaused {
		t.Fatalf("paused bot: refusal %+v err %v, want %q", r, err, RefusedPaused)
	}
	now := time.Now()
	if ok, err := l.ReserveDaily(ctx, bots[2], 1, now); err != nil || !ok {
		t.Fatalf("reserve daily: %v %v", ok, err)
	}
	if n, err := l.DailyCount(ctx, bots[2], now); err != nil || n != 1 {
		t.Fatalf("daily count %d %v, want 1", n, err)
	}
	if err := l.ReleaseDaily(ctx, bots[2], now); err != nil {
		t.Fatal(err)
	}
}

// TestLimiter_GlobalRefusal checks a global refusal in both forms of Acquire (the global
// step in the bot's script on a single Redis, or its own script after the bot's, as on a
// Cluster): the bot's windows keep nothing (the chat is free at once), the refusal says
// global, and once a process knows the global slot is far away it refuses without asking
// Redis.
func TestLimiter_GlobalRefusal(t *testing.T) {
	for _, split := range []bool{false, true} {
		t.Run(fmt.Sprint("split=", split), func(t *testing.T) {
			r1, r2 := twoRedisClients(t)
			cfg := LimiterConfig{GlobalRate: config.Rate{N: 1, Per: time.Hour}, BotRate: config.Rate{N: 30, Per: time.Second}, ChatInterval: time.Hour}
			l1, l2 := NewLimiter(r1, cfg), NewLimiter(r2, cfg)
			if l1.split || l2.split {
				t.Fatal("a single-server client must not split the scripts")
			}
			l1.split, l2.split = split, split
			ctx := context.Background()
			if _, r := acquireNow(t, l1, uuid.New(), 1, PriorityBulk); r != nil {
				t.Fatalf("first send refused: %+v", r)
			}
			bot := uuid.New()
			// l2 has not seen the global slot taken: Redis refuses.
			_, r := acquireNow(t, l2, bot, 7, PriorityBulk)
			if r == nil || r.Reason != RefusedGlobal || r.RetryAfter < 59*time.Minute {
				t.Fatalf("refusal %+v, want %q for about an hour", r, RefusedGlobal)
			}
			for _, k := range []string{limChatKey(bot, 7), limBotKey(bot)} {
				if n := r2.ZCard(ctx, k).Val(); n != 0 {
					t.Fatalf("%s holds %d permits after the global refusal, want 0", k, n)
				}
			}
			// Now l2 knows: refused again without a Redis call, with the same wait.
			calls := 0
			r2.AddHook(countHook{&calls})
			if _, r := acquireNow(t, l2, bot, 8, PriorityBulk); r == nil || r.Reason != RefusedGlobal || r.RetryAfter < 59*time.Minute {
				t.Fatalf("second refusal %+v", r)
			}
			if calls != 0 {
				t.Fatalf("%d Redis calls for a global slot known to be an hour away, want 0", calls)
			}
		})
	}
}

// countHook counts the commands a client sends.
type countHook struct{ n *int }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { *h.n++; return next(ctx, cmd) }
}
func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { *h.n += len(cmds); return next(ctx, cmds) }
}

// TestLimiter_RedisCluster runs the Limiter on a local 3-master Redis Cluster with two
// clients (two processes): every operation works (no CROSSSLOT), the slots computed here
// match the cluster's own, TELEGRAM_RATE_LIMIT spaces sends across bots whose keys live on
// different masters, and the bot cache's invalidations published on any master reach a
// subscriber.
func TestLimiter_RedisCluster(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	c1, c2 := testenv.RedisClusterClient(t, addrs), testenv.RedisClusterClient(t, addrs)
	ctx := context.Background()

	t.Run("slots", func(t *testing.T) {
		bot := uuid.New()
		for _, k := range []string{limGlobalKey(), limBotKey(bot), limChatKey(bot, 5), limDailyKey(bot, time.Now()), "somekey"} {
			want, err := c1.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got := keySlot(k); int64(got) != want {
				t.Fatalf("keySlot(%q) = %d, CLUSTER KEYSLOT says %d", k, got, want)
			}
		}
	})

	t.Run("every operation", func(t *testing.T) {
		exerciseLimiter(t, NewLimiter(c1, LimiterConfig{
			GlobalRate:   config.Rate{N: 1_000_000, Per: time.Second},
			BotRate:      config.Rate{N: 3, Per: time.Second},
			ChatInterval: time.Second,
		}))
	})

	t.Run("global rate across masters", func(t *testing.T) {
		cfg := LimiterConfig{GlobalRate: config.Rate{N: 20, Per: time.Second}, BotRate: config.Rate{N: 30, Per: time.Second}}
		lims := []*Limiter{NewLimiter(c1, cfg), NewLimiter(c2, cfg)}
		var mu sync.Mutex
		var starts []time.Time
		var wg sync.WaitGroup
		masters := map[string]bool{}
		for i := range 20 {
			bot := uuid.New()
			node, err := c1.MasterForKey(ctx, limBotKey(bot))
			if err != nil {
				t.Fatal(err)
			}
			masters[node.Options().Addr] = true
			wg.Go(func() {
				p, r, err := lims[i%2].Acquire(ctx, bot, 1, AcquireOpts{MaxWait: 3 * time.Second})
				if err != nil || r != nil {
					t.Errorf("acquire %d: refusal %+v err %v", i, r, err)
					return
				}
				mu.Lock()
				starts = append(starts, time.Now())
				mu.Unlock()
				p.Done()
			})
		}
		wg.Wait()
		if len(masters) < 2 {
			t.Fatalf("the bots' keys all live on %v: the test proves nothing", masters)
		}
		if len(starts) != 20 {
			t.Fatalf("%d sends started, want 20", len(starts))
		}
		first, last := starts[0], starts[0]
		for _, s := range starts {
			first, last = minTime(first, s), maxTime(last, s)
		}
		// 20 sends spaced 50 ms apart span at least 19 intervals.
		if d := last.Sub(first); d < 900*time.Millisecond {
			t.Fatalf("20 sends at 20/s across bots spanned %v, want about 950ms", d)
		}
	})

	t.Run("bot cache invalidation from any master", func(t *testing.T) {
		loads := 0
		var mu sync.Mutex
		cache := newBotCache(c1, slog.New(slog.NewTextHandler(io.Discard, nil)), func(context.Context, uuid.UUID) (Bot, error) {
			mu.Lock()
			loads++
			mu.Unlock()
			return Bot{}, nil
		}, nil)
		defer cache.Close()
		bot := uuid.New()
		if _, err := cache.Get(ctx, bot); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * time.Second)
		for !cache.Subscribed() {
			if time.Now().After(deadline) {
				t.Fatal("bot cache subscription not up")
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, a := range addrs {
			if _, err := cache.Get(ctx, bot); err != nil { // cached
				t.Fatal(err)
			}
			mu.Lock()
			before := loads
			mu.Unlock()
			node := redis.NewClient(&redis.Options{Addr: a})
			err := node.Publish(ctx, BotInvalidationChannel, bot.String()).Err()
			node.Close()
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(time.Second)
			for {
				if _, err := cache.Get(ctx, bot); err != nil {
					t.Fatal(err)
				}
				mu.Lock()
				n := loads
				mu.Unlock()
				if n > before {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("invalidation published on %s not received within 1s", a)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
	})
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
