package telegram

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
)

// benchLimiter measures Acquire + Done with the limits far above the load (TELEGRAM_RATE_LIMIT
// on, as it always is) over nBots bots and distinct chats, from 16 × GOMAXPROCS goroutines.
// split forces the Cluster form of Acquire (the global step as its own script). Reports
// permits/s.
func benchLimiter(b *testing.B, rdb redis.UniversalClient, nBots int, split bool) {
	l := NewLimiter(rdb, LimiterConfig{
		GlobalRate:   config.Rate{N: 1_000_000, Per: time.Second},
		BotRate:      config.Rate{N: 1_000_000, Per: time.Second},
		ChatInterval: time.Microsecond,
	})
	l.split = l.split || split
	bots := make([]uuid.UUID, nBots)
	for i := range bots {
		bots[i] = uuid.New()
	}
	var next atomic.Int64
	ctx := context.Background()
	b.SetParallelism(16)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			n := next.Add(1)
			p, r, err := l.Acquire(ctx, bots[n%int64(len(bots))], n, AcquireOpts{MaxWait: time.Second})
			if err != nil || r != nil {
				b.Errorf("acquire: refusal %v err %v", r, err)
				return
			}
			p.Done()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "permits/s")
}

// BenchmarkLimiterAcquireManyBots runs benchLimiter over 100 bots (many broadcasts at once,
// where the per-bot gate does not serialise the calls) on the shared single Redis, in both
// forms of Acquire: one script per permit (single Redis) and the Cluster form (a second
// script for the global slot).
//
//	go test ./telegram -run '^$' -bench BenchmarkLimiterAcquire -benchtime 3s
func BenchmarkLimiterAcquireManyBots(b *testing.B) {
	b.Run("one-script", func(b *testing.B) { benchLimiter(b, testenv.Redis(b), 100, false) })
	b.Run("split", func(b *testing.B) { benchLimiter(b, testenv.Redis(b), 100, true) })
}

// BenchmarkLimiterAcquireCluster runs benchLimiter over 100 bots on a local 3-master Redis
// Cluster (testenv.RedisCluster), all on this machine.
func BenchmarkLimiterAcquireCluster(b *testing.B) {
	addrs := testenv.RedisCluster(b) // once: the parent of sub-benchmarks runs once
	rdb := testenv.RedisClusterClient(b, addrs)
	b.Run("split", func(b *testing.B) { benchLimiter(b, rdb, 100, true) })
}
