package tgemu

import (
	"testing"
	"time"
)

// TestPaidAndGroupLimits checks the emulator's limits for messages with
// allow_paid_broadcast (PaidPerBotPerSecond instead of PerBotPerSecond, in the
// bot's one window) and for groups (GroupChatLimit per GroupChatWindow instead
// of PerChatInterval, counted as PerGroup).
func TestPaidAndGroupLimits(t *testing.T) {
	s := New(Options{PerBotPerSecond: 3, PaidPerBotPerSecond: 5, GroupChatLimit: 2, GroupChatWindow: 10 * time.Second})
	defer s.Close()
	b := newBot(s, BotInfo{ID: 1})
	t0 := time.Unix(1000, 0)
	send := func(chat int64, at time.Duration, paid bool) (int, bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		res, ok := b.checkSendLocked(chat, t0.Add(at), paid)
		if ok {
			return 0, true
		}
		return res.params.RetryAfter, false
	}
	// Three unpaid fill the unpaid window; paid ones go on up to five.
	for i := range 3 {
		if _, ok := send(int64(10+i), time.Duration(i)*time.Millisecond, false); !ok {
			t.Fatalf("unpaid %d rejected", i)
		}
	}
	if _, ok := send(20, 10*time.Millisecond, false); ok {
		t.Fatal("4th unpaid in the second accepted")
	}
	for i := range 2 {
		if _, ok := send(int64(30+i), 20*time.Millisecond, true); !ok {
			t.Fatalf("paid %d rejected", i)
		}
	}
	if ra, ok := send(40, 30*time.Millisecond, true); ok || ra != 1 {
		t.Fatalf("6th in the second (paid): ok=%v retry_after=%d", ok, ra)
	}
	if v := b.viol; v.PerBot != 2 {
		t.Fatalf("violations %+v, want 2 per bot", v)
	}

	// A group takes two messages in any 10 s, whatever the 1 s private interval.
	g := int64(-100123)
	if _, ok := send(g, 2*time.Second, false); !ok {
		t.Fatal("group 1st rejected")
	}
	if _, ok := send(g, 2100*time.Millisecond, false); !ok {
		t.Fatal("group 2nd (0.1 s later) rejected")
	}
	if ra, ok := send(g, 5*time.Second, false); ok || ra != 7 {
		t.Fatalf("group 3rd within 10 s: ok=%v retry_after=%d, want 7", ok, ra)
	}
	if _, ok := send(g, 12*time.Second, false); !ok {
		t.Fatal("group after its window rejected")
	}
	if v := b.viol; v.PerGroup != 1 || v.PerChat != 0 {
		t.Fatalf("violations %+v, want 1 per group", v)
	}
}
