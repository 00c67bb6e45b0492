package tgemu

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"
)

func TestAddUser(t *testing.T) {
	var posts atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { posts.Add(1) }))
	defer hook.Close()
	opts := fastOpts
	opts.PerChatInterval = -1 // two sends to one chat in a row
	s := NewTest(t, opts)
	info := s.CreateBot("seed_bot", "Seed")
	b := newGotBot(t, s, info.Token)
	if _, err := b.SetWebhook(hook.URL, nil); err != nil {
		t.Fatal(err)
	}

	if _, err := b.SendMessage(42, "before", nil); err == nil {
		t.Fatal("sendMessage to a chat nobody opened succeeded")
	}
	if err := s.AddUser(info.ID, User{ID: 42, FirstName: "Ann"}); err != nil {
		t.Fatal(err)
	}
	m, err := b.SendMessage(42, "after", nil)
	if err != nil {
		t.Fatalf("sendMessage after AddUser: %v", err)
	}
	if m.Chat.Id != 42 || m.Chat.FirstName != "Ann" {
		t.Fatalf("chat = %+v", m.Chat)
	}
	if err := s.AddUser(info.ID, User{ID: 42, FirstName: "Anna"}); err != nil {
		t.Fatal(err)
	}
	if m, err := b.SendMessage(42, "again", nil); err != nil || m.MessageId != 2 || m.Chat.FirstName != "Anna" {
		t.Fatalf("second send: %+v, %v (want message id 2, the chat kept)", m, err)
	}
	if err := s.AddUser(info.ID, User{ID: 0}); err == nil {
		t.Fatal("AddUser accepted user id 0")
	}
	if err := s.AddUser(1, User{ID: 7}); err == nil {
		t.Fatal("AddUser accepted an unknown bot")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.WaitIdle(ctx, info.ID); err != nil {
		t.Fatal(err)
	}
	if n := posts.Load(); n != 0 {
		t.Fatalf("AddUser delivered %d updates to the webhook, want 0", n)
	}
}

func TestSentCount(t *testing.T) {
	s := NewTest(t, Options{PerChatInterval: -1})
	info := s.CreateBot("count_bot", "Count")
	b := newGotBot(t, s, info.Token)
	if n := s.SentCount(info.ID); n != 0 {
		t.Fatalf("SentCount before any send = %d", n)
	}
	if err := s.AddUser(info.ID, User{ID: 5}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		if _, err := b.SendMessage(5, "hi", nil); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = b.SendMessage(6, "unknown chat", nil) // rejected: not counted
	if n := s.SentCount(info.ID); n != 3 || n != len(s.Sent(info.ID)) {
		t.Fatalf("SentCount = %d, Sent has %d, want 3", n, len(s.Sent(info.ID)))
	}
	if n := s.SentCount(12345); n != 0 {
		t.Fatalf("SentCount of an unknown bot = %d", n)
	}
}
