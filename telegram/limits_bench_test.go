package telegram

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
)

// BenchmarkLimiterAcquireManyBots measures Acquire + Done with the limits far above the load
// (TELEGRAM_RATE_LIMIT on, as it always is), spread over 100 bots and distinct chats: the
// shape of many broadcasts at once, where the per-bot gate does not serialise the calls.
// Reports permits/s.
//
//	go test ./telegram -run '^$' -bench BenchmarkLimiterAcquire -benchtime 3s
func BenchmarkLimiterAcquireManyBots(b *testing.B) {
	rdb := testenv.Redis(b)
	l := NewLimiter(rdb, LimiterConfig{
		GlobalRate:   config.Rate{N: 1_000_000, Per: time.Second},
		BotRate:      config.Rate{N: 1_000_000, Per: time.Second},
		ChatInterval: time.Microsecond,
	})
	bots := make([]uuid.UUID, 100)
	for i := range bots {
		bots[i] = uuid.New()
	}
	var next atomic.Int64
	ctx := context.Background()
	b.SetParallelism(16) // 16 × GOMAXPROCS goroutines
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
