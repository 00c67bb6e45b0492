package telegram

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// BenchmarkSend measures Send end to end (Redis limiter script, token decryption, sendMessage
// over loopback to tgemu, classification) with parallel goroutines over many chats. The
// emulator's limits are off and the limiter's rates are high, so the figure is the send
// path's own cost, not Telegram's 30 msg/s. Reports msgs/s.
//
//	go test ./telegram -run '^$' -bench BenchmarkSend -benchmem
func BenchmarkSend(b *testing.B) {
	e := newSendEnv(b, tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1}, func(c *Config) {
		c.GlobalRate = config.Rate{N: 1_000_000, Per: time.Second}
		c.BotRate = config.Rate{N: 1_000_000, Per: time.Second}
		c.ChatInterval = time.Microsecond
	})
	const chats = 1000
	for i := range chats {
		e.chat(e.info, int64(10_000+i))
	}
	var next, failed atomic.Int64
	ctx := context.Background()
	b.SetParallelism(8) // 8 × GOMAXPROCS goroutines
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			chat := 10_000 + next.Add(1)%chats
			if out := e.svc.Send(ctx, e.bot, chat, Outgoing{Text: "benchmark"}); out.Status != OutcomeSent {
				failed.Add(1)
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d of %d sends not sent", n, b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
}

// BenchmarkLimiterAcquire measures Acquire + Done (two Redis scripts per send) with the
// limits far above the load, on distinct chats of one bot.
func BenchmarkLimiterAcquire(b *testing.B) {
	rdb := testenv.Redis(b)
	l := NewLimiter(rdb, LimiterConfig{
		GlobalRate:   config.Rate{N: 1_000_000, Per: time.Second},
		BotRate:      config.Rate{N: 1_000_000, Per: time.Second},
		ChatInterval: time.Microsecond,
	})
	bot := uuid.New()
	var next atomic.Int64
	ctx := context.Background()
	b.SetParallelism(4)
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			p, r, err := l.Acquire(ctx, bot, next.Add(1), AcquireOpts{MaxWait: time.Second})
			if err != nil || r != nil {
				b.Errorf("acquire: refusal %v err %v", r, err)
				return
			}
			p.Done()
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "permits/s")
}
