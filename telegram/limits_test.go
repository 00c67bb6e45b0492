package telegram

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
)

// twoRedisClients returns two independent clients on one reserved Redis database, standing
// for two worker processes.
func twoRedisClients(t *testing.T) (*redis.Client, *redis.Client) {
	t.Helper()
	u := testenv.RedisDBURL(t)
	var cs [2]*redis.Client
	for i := range cs {
		opt, err := redis.ParseURL(u)
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = redis.NewClient(opt)
		t.Cleanup(func() { cs[i].Close() })
	}
	return cs[0], cs[1]
}

// acquireNow acquires a permit without waiting; it fails the test on a Redis error.
func acquireNow(t *testing.T, l *Limiter, bot uuid.UUID, chat int64, prio Priority) (Permit, *Refusal) {
	t.Helper()
	p, r, err := l.Acquire(context.Background(), bot, chat, AcquireOpts{Priority: prio})
	if err != nil {
		t.Fatalf("acquire: %v", err)
	}
	return p, r
}

// TestLimiter_WindowHoldsUnderJitter has two Limiters (two processes) send for one bot as
// fast as permits come, each send taking a random 0-40 ms round trip and arriving at a
// random moment of it, and checks what Telegram would count: no 1-second window of arrivals
// holds more than the limit, while the achieved rate stays close to it.
func TestLimiter_WindowHoldsUnderJitter(t *testing.T) {
	r1, r2 := twoRedisClients(t)
	cfg := LimiterConfig{BotRate: config.Rate{N: 10, Per: time.Second}}
	lims := []*Limiter{NewLimiter(r1, cfg), NewLimiter(r2, cfg)}
	bot := uuid.New()
	ctx := context.Background()
	var mu sync.Mutex
	var arrivals []time.Time
	stopAt := time.Now().Add(2500 * time.Millisecond)
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			chat := int64(1000 * (w + 1))
			for time.Now().Before(stopAt) {
				chat++
				p, r, err := lims[w%2].Acquire(ctx, bot, chat, AcquireOpts{MaxWait: 2 * time.Second})
				if err != nil {
					t.Error(err)
					return
				}
				if r != nil {
					continue
				}
				rtt := time.Duration(rand.Int64N(int64(40 * time.Millisecond)))
				arrive := time.Duration(rand.Int64N(int64(rtt) + 1))
				time.Sleep(arrive)
				mu.Lock()
				arrivals = append(arrivals, time.Now())
				mu.Unlock()
				time.Sleep(rtt - arrive)
				p.Done()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(arrivals, func(a, b time.Time) int { return a.Compare(b) })
	worst := 0
	for i := range arrivals {
		j := i
		for j < len(arrivals) && arrivals[j].Sub(arrivals[i]) < time.Second {
			j++
		}
		worst = max(worst, j-i)
	}
	if worst > 10 {
		t.Fatalf("a 1-second window of arrivals holds %d sends, limit 10", worst)
	}
	// 2.5 s at 10/s per window: at least 20 sends (two full windows) must have gone out.
	if len(arrivals) < 20 {
		t.Fatalf("only %d sends in 2.5 s at 10/s: the limiter is too slow", len(arrivals))
	}
}

// TestLimiter_IndependentKeys checks that another bot and another chat are not slowed by a
// busy chat or a full bot window.
func TestLimiter_IndependentKeys(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{ChatInterval: time.Hour, BotRate: config.Rate{N: 1, Per: time.Hour}})
	bot := uuid.New()
	if _, r := acquireNow(t, l, bot, 1, PriorityBulk); r != nil {
		t.Fatalf("first acquire refused: %+v", r)
	}
	if _, r := acquireNow(t, l, bot, 1, PriorityBulk); r == nil || r.Reason != RefusedChat {
		t.Fatalf("same chat: refusal %+v, want %q", r, RefusedChat)
	}
	if _, r := acquireNow(t, l, bot, 2, PriorityBulk); r == nil || r.Reason != RefusedBot {
		t.Fatalf("same bot, other chat: refusal %+v, want %q", r, RefusedBot)
	}
	if _, r := acquireNow(t, l, uuid.New(), 1, PriorityBulk); r != nil {
		t.Fatalf("other bot refused: %+v", r)
	}
}

// TestLimiter_ChatWindowCountsUntilDone checks that a chat's window runs from the send's
// completion (Done), not its start: a slow send keeps the chat busy until a window after it
// ended; Cancel gives the slot back at once; a permit never completed counts until its
// in-flight bound.
func TestLimiter_ChatWindowCountsUntilDone(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{ChatInterval: 300 * time.Millisecond, InFlight: 2 * time.Second})
	ctx := context.Background()
	bot := uuid.New()
	p, r := acquireNow(t, l, bot, 7, PriorityBulk)
	if r != nil {
		t.Fatalf("first: %+v", r)
	}
	time.Sleep(400 * time.Millisecond) // "in flight" longer than the window
	if _, r := acquireNow(t, l, bot, 7, PriorityBulk); r == nil || r.Reason != RefusedChat {
		t.Fatalf("while in flight: refusal %+v, want %q", r, RefusedChat)
	}
	p.Done()
	time.Sleep(20 * time.Millisecond) // Done is recorded within doneDelay
	if _, r := acquireNow(t, l, bot, 7, PriorityBulk); r == nil || r.Reason != RefusedChat || r.RetryAfter <= 0 || r.RetryAfter > 300*time.Millisecond {
		t.Fatalf("just after Done: refusal %+v, want chat busy for at most 300ms", r)
	}
	// Interactive sends wait for the chat.
	start := time.Now()
	p2, r2, err := l.Acquire(ctx, bot, 7, AcquireOpts{MaxWait: time.Second, WaitForChat: true})
	if err != nil || r2 != nil || time.Since(start) < 200*time.Millisecond {
		t.Fatalf("interactive wait: refusal %+v err %v after %v, want a permit after about 300ms", r2, err, time.Since(start))
	}
	if err := p2.Cancel(ctx); err != nil {
		t.Fatal(err)
	}
	p3, r := acquireNow(t, l, bot, 7, PriorityBulk)
	if r != nil {
		t.Fatalf("after Cancel: refusal %+v, want the slot back", r)
	}
	_ = p3 // never completed: counts until InFlight (2s) + window
	time.Sleep(time.Second)
	if _, r := acquireNow(t, l, bot, 7, PriorityBulk); r == nil {
		t.Fatal("a permit never completed stopped counting before its in-flight bound")
	}
	time.Sleep(1500 * time.Millisecond)
	if _, r := acquireNow(t, l, bot, 7, PriorityBulk); r != nil {
		t.Fatalf("after the in-flight bound and the window: refusal %+v", r)
	}
}

// TestLimiter_InteractiveFirst checks that while a reply waits for a bot's full window,
// broadcast sends of that bot get no slot, and the reply gets the next one.
func TestLimiter_InteractiveFirst(t *testing.T) {
	r1, r2 := twoRedisClients(t)
	cfg := LimiterConfig{BotRate: config.Rate{N: 2, Per: 500 * time.Millisecond}}
	l1, l2 := NewLimiter(r1, cfg), NewLimiter(r2, cfg)
	ctx := context.Background()
	bot := uuid.New()
	for chat := range int64(2) {
		p, r, err := l1.Acquire(ctx, bot, chat+1, AcquireOpts{Priority: PriorityBulk, MaxWait: time.Second})
		if err != nil || r != nil {
			t.Fatalf("fill: %+v %v", r, err)
		}
		p.Done()
	}
	got := make(chan error, 1)
	go func() {
		_, r, err := l2.Acquire(ctx, bot, 99, AcquireOpts{Priority: PriorityInteractive, MaxWait: 2 * time.Second})
		if err == nil && r != nil {
			err = fmt.Errorf("refused: %+v", *r)
		}
		got <- err
	}()
	time.Sleep(100 * time.Millisecond) // the reply is waiting now
	deadline := time.Now().Add(2 * time.Second)
	bulkGranted := false
	for time.Now().Before(deadline) {
		select {
		case err := <-got:
			if err != nil {
				t.Fatal(err)
			}
			if bulkGranted {
				t.Fatal("a bulk send got a slot while the reply waited")
			}
			return
		default:
		}
		if p, r := acquireNow(t, l1, bot, 50, PriorityBulk); r == nil {
			bulkGranted = true
			_ = p.Cancel(ctx)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the reply got no slot within 2s")
}

// TestLimiter_GroupChatRate checks the default group limit, 20 per minute.
func TestLimiter_GroupChatRate(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{ChatInterval: 100 * time.Millisecond})
	bot := uuid.New()
	for i := range 20 {
		p, r := acquireNow(t, l, bot, -1001, PriorityBulk)
		if r != nil {
			t.Fatalf("group send %d refused: %+v", i, r)
		}
		p.Done()
	}
	time.Sleep(20 * time.Millisecond) // Done is recorded within doneDelay
	if _, r := acquireNow(t, l, bot, -1001, PriorityBulk); r == nil || r.Reason != RefusedChat || r.RetryAfter < 59*time.Second {
		t.Fatalf("21st group send in a minute: refusal %+v, want chat busy for about a minute", r)
	}
	l = NewLimiter(rdb, LimiterConfig{GroupChatRate: config.Rate{N: -1}})
	for range 30 {
		if _, r := acquireNow(t, l, bot, -5, PriorityBulk); r != nil {
			t.Fatalf("disabled group limit refused: %+v", r)
		}
	}
}

// TestLimiter_GlobalRate checks TELEGRAM_RATE_LIMIT's spacing across bots and processes.
func TestLimiter_GlobalRate(t *testing.T) {
	r1, r2 := twoRedisClients(t)
	cfg := LimiterConfig{GlobalRate: config.Rate{N: 20, Per: time.Second}}
	lims := []*Limiter{NewLimiter(r1, cfg), NewLimiter(r2, cfg)}
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			if _, r, err := lims[i%2].Acquire(ctx, uuid.New(), 1, AcquireOpts{MaxWait: 10 * time.Second}); err != nil || r != nil {
				t.Errorf("acquire %d: refusal %+v err %v", i, r, err)
			}
		})
	}
	wg.Wait()
	if d := time.Since(start); d < 900*time.Millisecond {
		t.Fatalf("20 sends at 20/s across bots took %v, want about 1s", d)
	}
	// With no wait allowed, at most 20 of the next sends fit in any second: the 21st at the
	// latest is refused (on a loaded machine the window may have moved on since the wait).
	refused := false
	for i := 0; i < 21 && !refused; i++ {
		_, r, err := lims[i%2].Acquire(ctx, uuid.New(), 1, AcquireOpts{})
		if err != nil {
			t.Fatal(err)
		}
		if r != nil {
			if r.Reason != RefusedGlobal {
				t.Fatalf("with no wait allowed: refusal %+v, want %q", r, RefusedGlobal)
			}
			refused = true
		}
	}
	if !refused {
		t.Fatalf("21 sends with no wait at 20/s: none refused, want %q", RefusedGlobal)
	}
}

// TestLimiter_PauseBot checks that a 429 pause stops the bot in every process, only that
// bot, is never shortened, and that interactive sends wait it out.
func TestLimiter_PauseBot(t *testing.T) {
	r1, r2 := twoRedisClients(t)
	l1, l2 := NewLimiter(r1, LimiterConfig{}), NewLimiter(r2, LimiterConfig{})
	ctx := context.Background()
	bot, other := uuid.New(), uuid.New()
	if err := l1.PauseBot(ctx, bot, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if err := l1.PauseBot(ctx, bot, time.Second); err != nil { // must not shorten
		t.Fatal(err)
	}
	if _, r := acquireNow(t, l2, bot, 1, PriorityBulk); r == nil || r.Reason != RefusedPaused || r.RetryAfter < 1300*time.Millisecond {
		t.Fatalf("paused bot: refusal %+v, want paused for about 1.5s", r)
	}
	if _, r := acquireNow(t, l2, other, 1, PriorityBulk); r != nil {
		t.Fatalf("other bot: refusal %+v", r)
	}
	start := time.Now()
	_, r, err := l2.Acquire(ctx, bot, 1, AcquireOpts{MaxWait: 5 * time.Second, WaitForPause: true})
	if err != nil || r != nil || time.Since(start) < 1300*time.Millisecond {
		t.Fatalf("waiting out the pause: refusal %+v err %v after %v", r, err, time.Since(start))
	}
}

// TestLimiter_WaitersBounded checks that a process queues at most MaxWaiters goroutines per
// bot: more are refused at once, so that a bot's backlog holds no task slots.
func TestLimiter_WaitersBounded(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{BotRate: config.Rate{N: 1, Per: time.Hour}, MaxWaiters: 2})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bot := uuid.New()
	if _, r := acquireNow(t, l, bot, 1, PriorityBulk); r != nil {
		t.Fatal("first refused")
	}
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { _, _, _ = l.Acquire(ctx, bot, int64(i+2), AcquireOpts{MaxWait: time.Hour}) })
	}
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	_, r, err := l.Acquire(ctx, bot, 9, AcquireOpts{MaxWait: time.Hour})
	if err != nil || r == nil || time.Since(start) > 50*time.Millisecond {
		t.Fatalf("third waiter: refusal %+v err %v after %v, want an immediate refusal", r, err, time.Since(start))
	}
	cancel()
	wg.Wait()
}

// TestLimiter_Daily checks the per-bot daily counter: it stops at the limit, release gives one
// back, days and bots are separate, and 0 is unlimited without a key.
func TestLimiter_Daily(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{})
	ctx := context.Background()
	bot := uuid.New()
	now := time.Date(2026, 3, 4, 23, 59, 0, 0, time.UTC)
	for i := range 3 {
		if ok, err := l.ReserveDaily(ctx, bot, 3, now); err != nil || !ok {
			t.Fatalf("reserve %d: ok=%v err=%v", i, ok, err)
		}
	}
	if ok, err := l.ReserveDaily(ctx, bot, 3, now); err != nil || ok {
		t.Fatalf("reserve over limit: ok=%v err=%v, want false", ok, err)
	}
	if n, _ := l.DailyCount(ctx, bot, now); n != 3 {
		t.Fatalf("count = %d, want 3 (a refused reservation must not count)", n)
	}
	if err := l.ReleaseDaily(ctx, bot, now); err != nil {
		t.Fatal(err)
	}
	if n, _ := l.DailyCount(ctx, bot, now); n != 2 {
		t.Fatalf("count after release = %d, want 2", n)
	}
	if ok, _ := l.ReserveDaily(ctx, bot, 3, now); !ok {
		t.Fatal("reserve after release refused")
	}
	// The next UTC day and another bot start from zero.
	if ok, _ := l.ReserveDaily(ctx, bot, 3, now.Add(2*time.Minute)); !ok {
		t.Fatal("next day refused")
	}
	if ok, _ := l.ReserveDaily(ctx, uuid.New(), 3, now); !ok {
		t.Fatal("other bot refused")
	}
	if ttl := rdb.TTL(ctx, limDailyKey(bot, now)).Val(); ttl < 47*time.Hour || ttl > 48*time.Hour {
		t.Fatalf("daily key TTL = %v, want about 48h", ttl)
	}
	// Release never goes below zero.
	other := uuid.New()
	_ = l.ReleaseDaily(ctx, other, now)
	if n, _ := l.DailyCount(ctx, other, now); n != 0 {
		t.Fatalf("count after release of nothing = %d, want 0", n)
	}
	// Unlimited touches nothing.
	unl := uuid.New()
	for range 5 {
		if ok, err := l.ReserveDaily(ctx, unl, 0, now); err != nil || !ok {
			t.Fatalf("unlimited: ok=%v err=%v", ok, err)
		}
	}
	if n := rdb.Exists(ctx, limDailyKey(unl, now)).Val(); n != 0 {
		t.Fatal("unlimited reservation created a key")
	}
}

func TestNextUTCMidnight(t *testing.T) {
	paris := time.FixedZone("UTC+2", 2*3600)
	tests := []struct {
		now  time.Time
		want time.Time
	}{
		{time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC), time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 3, 4, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 12, 31, 23, 59, 59, 0, time.UTC), time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)},
		{time.Date(2026, 3, 5, 1, 0, 0, 0, paris), time.Date(2026, 3, 5, 0, 0, 0, 0, time.UTC)}, // 23:00 UTC on the 4th
	}
	for _, tt := range tests {
		if got := NextUTCMidnight(tt.now); !got.Equal(tt.want) {
			t.Errorf("NextUTCMidnight(%v) = %v, want %v", tt.now, got, tt.want)
		}
	}
}
