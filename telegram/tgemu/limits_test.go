package tgemu

import (
	"sync"
	"testing"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

func TestRateWindowUnit(t *testing.T) {
	s := New(Options{PerBotPerSecond: 3, PerChatInterval: time.Second})
	defer s.Close()
	b := newBot(s, BotInfo{ID: 1})
	t0 := time.Unix(1000, 0)
	step := func(chat int64, at time.Duration) (int, bool) {
		b.mu.Lock()
		defer b.mu.Unlock()
		res, ok := b.checkRateLocked(chat, t0.Add(at))
		if ok {
			return 0, true
		}
		return res.params.RetryAfter, false
	}
	// Three chats at t0, t0+100ms, t0+200ms fill the per-bot window.
	for i, at := range []time.Duration{0, 100 * time.Millisecond, 200 * time.Millisecond} {
		if _, ok := step(int64(10+i), at); !ok {
			t.Fatalf("send %d rejected", i)
		}
	}
	if ra, ok := step(20, 500*time.Millisecond); ok || ra != 1 {
		t.Fatalf("4th in window: ok=%v retry_after=%d", ok, ra)
	}
	// At exactly t0+1s the first arrival has left the window (t-1s, t].
	if _, ok := step(21, time.Second); !ok {
		t.Fatal("send at t0+1s rejected")
	}
	// Per chat: chat 21 sent at t0+1s, so at t0+1.5s it must wait (the per-chat
	// check comes first, so this is a per-chat violation only).
	if ra, ok := step(21, 1500*time.Millisecond); ok || ra != 1 {
		t.Fatalf("per-chat: ok=%v ra=%d", ok, ra)
	}
	if _, ok := step(21, 2500*time.Millisecond); !ok {
		t.Fatal("chat 21 after its interval rejected")
	}
	if v := b.viol; v.PerBot != 1 || v.PerChat != 1 {
		t.Fatalf("violations %+v", v)
	}
}

func TestPerBotLimit(t *testing.T) {
	s := NewTest(t, Options{})
	info := s.CreateBot("burst_bot", "Burst")
	b := newGotBot(t, s, info.Token)
	const n = 35
	for i := range n {
		if _, err := s.SendText(info.ID, User{ID: int64(100 + i), FirstName: "U"}, "/start"); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	var rejected []*gotgbot.TelegramError
	for i := range n {
		if _, err := b.SendMessage(int64(100+i), "broadcast", nil); err != nil {
			rejected = append(rejected, asTelegramError(t, err))
		}
	}
	if time.Since(start) > 900*time.Millisecond {
		t.Skip("machine too slow to send 35 requests inside one second")
	}
	if len(rejected) != n-30 || len(s.Sent(info.ID)) != 30 {
		t.Fatalf("rejected %d, sent %d; want %d and 30", len(rejected), len(s.Sent(info.ID)), n-30)
	}
	for _, te := range rejected {
		if te.Code != 429 || te.ResponseParams == nil || te.ResponseParams.RetryAfter < 1 {
			t.Fatalf("rejection %+v", te)
		}
	}
	if v := s.Violations(info.ID); v.PerBot != n-30 || v.PerChat != 0 {
		t.Fatalf("violations %+v", v)
	}
	if tv := s.TotalViolations(); tv.PerBot != n-30 {
		t.Fatalf("total %+v", tv)
	}
}

func TestPerChatLimit(t *testing.T) {
	s := NewTest(t, Options{})
	info := s.CreateBot("chatty_bot", "Chatty")
	b := newGotBot(t, s, info.Token)
	u := User{ID: 77, FirstName: "Jo"}
	_, _ = s.SendText(info.ID, u, "hi")
	if _, err := b.SendMessage(u.ID, "1", nil); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		_, err := b.SendMessage(u.ID, "2", nil)
		te := asTelegramError(t, err)
		if te.Code != 429 || te.ResponseParams.RetryAfter != 1 || te.Description != "Too Many Requests: retry after 1" {
			t.Fatalf("per-chat 429: %+v", te)
		}
	}
	if v := s.Violations(info.ID); v.PerChat != 2 || v.PerBot != 0 {
		t.Fatalf("violations %+v", v)
	}
	if n := len(s.Sent(info.ID)); n != 1 {
		t.Fatalf("sent %d", n)
	}
}

func TestConcurrentSends(t *testing.T) {
	s := NewTest(t, Options{PerBotPerSecond: -1, PerChatInterval: -1})
	info := s.CreateBot("conc_bot", "Conc")
	b := newGotBot(t, s, info.Token)
	for i := range 8 {
		_, _ = s.SendText(info.ID, User{ID: int64(i + 1), FirstName: "U"}, "hi")
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := b.SendMessage(int64(i+1), "x", nil); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := len(s.Sent(info.ID)); n != 80 {
		t.Fatalf("sent %d", n)
	}
	// Message ids are per chat and increasing.
	for chat := int64(1); chat <= 8; chat++ {
		for i, m := range s.SentTo(info.ID, chat) {
			if m.MessageID != int64(i+2) {
				t.Fatalf("chat %d message %d id %d", chat, i, m.MessageID)
			}
		}
	}
}
