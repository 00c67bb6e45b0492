package telegram

import (
	"context"
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

// TestLimiter_ReserveSpacing has two Limiters (two processes) reserve concurrently and checks
// that no two reserved slots are closer than the limit's interval.
func TestLimiter_ReserveSpacing(t *testing.T) {
	bot := uuid.New()
	tests := []struct {
		name     string
		cfg      LimiterConfig
		interval time.Duration
		key      func(i int) (uuid.UUID, int64) // the bot and chat of reservation i
	}{
		{"global", LimiterConfig{GlobalRate: config.Rate{N: 100, Per: time.Second}}, 10 * time.Millisecond,
			func(i int) (uuid.UUID, int64) { return uuid.New(), int64(i + 1) }},
		{"per bot", LimiterConfig{BotRate: config.Rate{N: 100, Per: time.Second}}, 10 * time.Millisecond,
			func(i int) (uuid.UUID, int64) { return bot, int64(i + 1) }},
		{"per chat", LimiterConfig{ChatInterval: 15 * time.Millisecond}, 15 * time.Millisecond,
			func(i int) (uuid.UUID, int64) { return bot, 42 }},
		{"per group chat", LimiterConfig{ChatInterval: time.Millisecond, GroupChatInterval: 12 * time.Millisecond}, 12 * time.Millisecond,
			func(i int) (uuid.UUID, int64) { return bot, -100123 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r1, r2 := twoRedisClients(t)
			lims := []*Limiter{NewLimiter(r1, tt.cfg), NewLimiter(r2, tt.cfg)}
			const workers, each = 8, 10
			var mu sync.Mutex
			var slots []int64
			var wg sync.WaitGroup
			errs := make(chan error, workers*each)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for j := range each {
						b, c := tt.key(w*each + j)
						_, ok, slot, err := lims[w%2].reserve(context.Background(), b, c, time.Minute)
						if err != nil || !ok {
							errs <- err
							return
						}
						mu.Lock()
						slots = append(slots, slot)
						mu.Unlock()
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatalf("reserve failed: %v", err)
			}
			if len(slots) != workers*each {
				t.Fatalf("got %d slots, want %d", len(slots), workers*each)
			}
			slices.Sort(slots)
			for i := 1; i < len(slots); i++ {
				if gap := time.Duration(slots[i]-slots[i-1]) * time.Microsecond; gap < tt.interval {
					t.Fatalf("slots %d and %d are %v apart, want >= %v", i-1, i, gap, tt.interval)
				}
			}
		})
	}
}

// TestLimiter_ReserveIndependentKeys checks that another bot and another chat are not slowed
// by a busy chat.
func TestLimiter_ReserveIndependentKeys(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{ChatInterval: time.Hour})
	ctx := context.Background()
	bot := uuid.New()
	if _, ok, err := l.Reserve(ctx, bot, 1, 0); err != nil || !ok {
		t.Fatalf("first reserve: ok=%v err=%v", ok, err)
	}
	for _, tc := range []struct {
		bot  uuid.UUID
		chat int64
	}{{bot, 2}, {uuid.New(), 1}} {
		if w, ok, err := l.Reserve(ctx, tc.bot, tc.chat, 0); err != nil || !ok || w != 0 {
			t.Fatalf("reserve %v/%d: wait=%v ok=%v err=%v, want an immediate slot", tc.bot, tc.chat, w, ok, err)
		}
	}
}

// TestLimiter_BusyChatDoesNotStallBot checks that a send waiting for its chat's interval does
// not hold back the bot's sends to other chats.
func TestLimiter_BusyChatDoesNotStallBot(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{BotRate: config.Rate{N: 50, Per: time.Second}, ChatInterval: time.Second})
	ctx := context.Background()
	bot := uuid.New()
	if _, ok, err := l.Reserve(ctx, bot, 1, 0); err != nil || !ok {
		t.Fatalf("first: ok=%v err=%v", ok, err)
	}
	done := make(chan time.Duration, 1)
	go func() {
		start := time.Now()
		w, ok, err := l.Reserve(ctx, bot, 1, 5*time.Second)
		if err != nil || !ok {
			t.Errorf("same chat: ok=%v err=%v", ok, err)
		}
		done <- time.Since(start) + w
	}()
	time.Sleep(100 * time.Millisecond) // the goroutine is now waiting for chat 1
	for chat := int64(2); chat < 6; chat++ {
		w, ok, err := l.Reserve(ctx, bot, chat, 5*time.Second)
		if err != nil || !ok || w > 100*time.Millisecond {
			t.Fatalf("chat %d while chat 1 is busy: wait=%v ok=%v err=%v, want within a few bot intervals", chat, w, ok, err)
		}
	}
	if total := <-done; total < 900*time.Millisecond || total > 1500*time.Millisecond {
		t.Fatalf("same chat waited %v, want about 1s", total)
	}
}

// TestLimiter_MaxWaitReservesNothing checks that a refused reservation leaves the schedule
// unchanged.
func TestLimiter_MaxWaitReservesNothing(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{ChatInterval: time.Second})
	ctx := context.Background()
	bot := uuid.New()
	if w, ok, err := l.Reserve(ctx, bot, 7, 0); err != nil || !ok || w != 0 {
		t.Fatalf("first: wait=%v ok=%v err=%v", w, ok, err)
	}
	for range 3 {
		w, ok, err := l.Reserve(ctx, bot, 7, 100*time.Millisecond)
		if err != nil || ok {
			t.Fatalf("over maxWait: ok=%v err=%v, want refused", ok, err)
		}
		if w < 800*time.Millisecond || w > time.Second {
			t.Fatalf("over maxWait: wait=%v, want about 1s", w)
		}
	}
	// Had the refused calls reserved anything, the next slot would be 3-4 s away.
	w, ok, err := l.Reserve(ctx, bot, 7, 5*time.Second)
	if err != nil || !ok || w > time.Second {
		t.Fatalf("after refusals: wait=%v ok=%v err=%v, want ok within 1s", w, ok, err)
	}
}

// TestLimiter_GroupChatInterval checks the 3 s default spacing of groups (20 msg/min).
func TestLimiter_GroupChatInterval(t *testing.T) {
	rdb := testenv.Redis(t)
	l := NewLimiter(rdb, LimiterConfig{ChatInterval: 100 * time.Millisecond})
	ctx := context.Background()
	bot := uuid.New()
	if _, ok, _ := l.Reserve(ctx, bot, -1001, 0); !ok {
		t.Fatal("first group reserve refused")
	}
	w, ok, err := l.Reserve(ctx, bot, -1001, 0)
	if err != nil || ok || w < 2900*time.Millisecond || w > 3*time.Second {
		t.Fatalf("second group reserve: wait=%v ok=%v err=%v, want refused with about 3s", w, ok, err)
	}
	// Disabled.
	l = NewLimiter(rdb, LimiterConfig{GroupChatInterval: -1})
	for range 3 {
		if w, ok, _ := l.Reserve(ctx, uuid.New(), -5, 0); !ok || w != 0 {
			t.Fatalf("disabled group interval: wait=%v ok=%v", w, ok)
		}
	}
}

// TestLimiter_PauseBot checks that a 429 pause delays the bot in every process, only that
// bot, and is never shortened.
func TestLimiter_PauseBot(t *testing.T) {
	r1, r2 := twoRedisClients(t)
	l1, l2 := NewLimiter(r1, LimiterConfig{}), NewLimiter(r2, LimiterConfig{})
	ctx := context.Background()
	bot, other := uuid.New(), uuid.New()
	if err := l1.PauseBot(ctx, bot, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l1.PauseBot(ctx, bot, time.Second); err != nil { // must not shorten
		t.Fatal(err)
	}
	w, ok, err := l2.Reserve(ctx, bot, 1, 0)
	if err != nil || ok || w < 1800*time.Millisecond || w > 2*time.Second {
		t.Fatalf("paused bot: wait=%v ok=%v err=%v, want refused with about 2s", w, ok, err)
	}
	if w, ok, err := l2.Reserve(ctx, other, 1, 0); err != nil || !ok || w != 0 {
		t.Fatalf("other bot: wait=%v ok=%v err=%v, want immediate", w, ok, err)
	}
	start := time.Now()
	w, ok, err = l2.Reserve(ctx, bot, 1, 5*time.Second)
	if total := time.Since(start) + w; err != nil || !ok || total < 1800*time.Millisecond {
		t.Fatalf("paused bot with long maxWait: blocked+wait=%v ok=%v err=%v, want ok after about 2s", total, ok, err)
	}
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
