package tgemu

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// receiver is an httptest webhook that records updates and answers with the
// statuses in plan (then 200).
type receiver struct {
	srv *httptest.Server

	mu      sync.Mutex
	plan    []int
	got     []gotgbot.Update
	raw     []string
	secrets []string
	ctypes  []string
	hits    atomic.Int64
}

func newReceiver(t *testing.T, plan ...int) *receiver {
	rc := &receiver{plan: plan}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc.hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if len(rc.plan) > 0 {
			st := rc.plan[0]
			rc.plan = rc.plan[1:]
			if st != http.StatusOK {
				w.WriteHeader(st)
				return
			}
		}
		var u gotgbot.Update
		if err := json.Unmarshal(body, &u); err != nil {
			t.Errorf("webhook body does not decode as gotgbot.Update: %v: %s", err, body)
		}
		rc.got = append(rc.got, u)
		rc.raw = append(rc.raw, string(body))
		rc.secrets = append(rc.secrets, r.Header.Get("X-Telegram-Bot-Api-Secret-Token"))
		rc.ctypes = append(rc.ctypes, r.Header.Get("Content-Type"))
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) updates() []gotgbot.Update {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]gotgbot.Update(nil), rc.got...)
}

func waitIdle(t *testing.T, s *Server, botID int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.WaitIdle(ctx, botID); err != nil {
		t.Fatalf("WaitIdle: %v (webhook %+v)", err, s.WebhookInfo(botID))
	}
}

func TestWebhookDelivery(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("deliver_bot", "Deliver")
	b := newGotBot(t, s, info.Token)
	rc := newReceiver(t)
	if _, err := b.SetWebhook(rc.srv.URL+"/tg/1", &gotgbot.SetWebhookOpts{SecretToken: "sekret"}); err != nil {
		t.Fatal(err)
	}
	u := User{ID: 5005, FirstName: "Eve", LastName: "E", Username: "eve", LanguageCode: "en"}
	id1, err := s.SendCommand(info.ID, u, "start")
	if err != nil {
		t.Fatal(err)
	}
	id2, _ := s.SendText(info.ID, u, "plain text")
	id3, _ := s.Block(info.ID, u)
	id4, _ := s.Unblock(info.ID, u)
	waitIdle(t, s, info.ID)

	got := rc.updates()
	if len(got) != 4 {
		t.Fatalf("got %d updates", len(got))
	}
	for i, id := range []int64{id1, id2, id3, id4} {
		if got[i].UpdateId != id || (i > 0 && id != id1+int64(i)) {
			t.Fatalf("update %d id %d, want %d (ids must increase by 1)", i, got[i].UpdateId, id)
		}
		if rc.secrets[i] != "sekret" || rc.ctypes[i] != "application/json" {
			t.Fatalf("headers: secret %q content-type %q", rc.secrets[i], rc.ctypes[i])
		}
	}
	m := got[0].Message
	if m == nil || m.Text != "/start" || len(m.Entities) != 1 || m.Entities[0].Type != "bot_command" || m.Entities[0].Length != 6 ||
		m.From.Id != u.ID || m.From.IsBot || m.From.LanguageCode != "en" || m.Chat.Id != u.ID || m.Chat.Type != "private" || m.Chat.LastName != "E" {
		t.Fatalf("command message = %+v", m)
	}
	if got[1].Message.Entities != nil || got[1].Message.MessageId != m.MessageId+1 {
		t.Fatalf("text message = %+v", got[1].Message)
	}
	mcm := got[2].MyChatMember
	if mcm == nil || mcm.NewChatMember.GetStatus() != "kicked" || mcm.OldChatMember.GetStatus() != "member" ||
		mcm.NewChatMember.GetUser().Id != info.ID || mcm.From.Id != u.ID || mcm.Chat.Id != u.ID {
		t.Fatalf("block update = %+v", mcm)
	}
	if !strings.Contains(rc.raw[2], `"until_date":0`) {
		t.Fatalf("kicked member lacks until_date: %s", rc.raw[2])
	}
	if st := got[3].MyChatMember.NewChatMember.GetStatus(); st != "member" {
		t.Fatalf("unblock status %q", st)
	}
	if wi := s.WebhookInfo(info.ID); wi.PendingUpdateCount != 0 || wi.LastErrorDate != 0 {
		t.Fatalf("webhook info after delivery: %+v", wi)
	}
}

func TestWebhookRetry(t *testing.T) {
	s := NewTest(t, Options{RetryBackoff: 150 * time.Millisecond, MaxRetryBackoff: 300 * time.Millisecond})
	info := s.CreateBot("retry_bot", "Retry")
	b := newGotBot(t, s, info.Token)
	rc := newReceiver(t, 503, 503, 200)
	if _, err := b.SetWebhook(rc.srv.URL, nil); err != nil {
		t.Fatal(err)
	}
	id, _ := s.SendText(info.ID, User{ID: 6006, FirstName: "Fay"}, "retry me")
	_, _ = s.SendText(info.ID, User{ID: 6006, FirstName: "Fay"}, "second")

	// While the receiver fails, both updates stay pending and the error shows.
	deadline := time.Now().Add(3 * time.Second)
	var wi *gotgbot.WebhookInfo
	for {
		var err error
		if wi, err = b.GetWebhookInfo(nil); err != nil {
			t.Fatal(err)
		}
		if wi.LastErrorMessage != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if wi.PendingUpdateCount != 2 || wi.LastErrorMessage != "Wrong response from the webhook: 503 Service Unavailable" || wi.LastErrorDate == 0 {
		t.Fatalf("during failure: %+v", wi)
	}
	waitIdle(t, s, info.ID)
	got := rc.updates()
	if len(got) != 2 || got[0].UpdateId != id || got[1].UpdateId != id+1 {
		t.Fatalf("delivered %+v", got)
	}
	if n := rc.hits.Load(); n != 4 {
		t.Fatalf("receiver hits %d, want 4 (2 failures + 2 deliveries)", n)
	}
	wi, _ = b.GetWebhookInfo(nil)
	if wi.PendingUpdateCount != 0 || wi.LastErrorMessage == "" {
		t.Fatalf("after recovery: %+v (last error is kept, as on Telegram)", wi)
	}
}

func TestWebhookConnectionRefused(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("refused_bot", "Refused")
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	b := newGotBot(t, s, info.Token)
	if _, err := b.SetWebhook(deadURL, nil); err != nil {
		t.Fatal(err)
	}
	_, _ = s.SendText(info.ID, User{ID: 7, FirstName: "G"}, "x")
	deadline := time.Now().Add(3 * time.Second)
	for s.WebhookInfo(info.ID).LastErrorMessage == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if wi := s.WebhookInfo(info.ID); wi.LastErrorMessage != "Connection refused" || wi.PendingUpdateCount != 1 {
		t.Fatalf("webhook info: %+v", wi)
	}
	// drop_pending_updates on re-registration discards the update.
	rc := newReceiver(t)
	if _, err := b.SetWebhook(rc.srv.URL, &gotgbot.SetWebhookOpts{DropPendingUpdates: true}); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s, info.ID)
	time.Sleep(50 * time.Millisecond)
	if n := len(rc.updates()); n != 0 {
		t.Fatalf("dropped update delivered %d times", n)
	}
}

func TestWebhookAllowedUpdatesAndRedeliver(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("filter_bot", "Filter")
	b := newGotBot(t, s, info.Token)
	rc := newReceiver(t)
	if _, err := b.SetWebhook(rc.srv.URL, &gotgbot.SetWebhookOpts{AllowedUpdates: []string{"message", "callback_query"}}); err != nil {
		t.Fatal(err)
	}
	u := User{ID: 8008, FirstName: "Hal"}
	_, _ = s.Block(info.ID, u) // my_chat_member: filtered
	id, _ := s.SendText(info.ID, u, "kept")
	cbID, err := s.PushUpdate(info.ID, map[string]any{"callback_query": map[string]any{
		"id": "cb1", "from": map[string]any{"id": u.ID, "is_bot": false, "first_name": "Hal"},
		"chat_instance": "ci", "data": "go",
	}})
	if err != nil || cbID != id+1 {
		t.Fatalf("PushUpdate: %d %v", cbID, err)
	}
	_, _ = s.PushUpdate(info.ID, map[string]any{"message_reaction": map[string]any{}}) // not allowed
	waitIdle(t, s, info.ID)
	if err := s.Redeliver(info.ID, id); err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s, info.ID)

	got := rc.updates()
	if len(got) != 3 || got[0].UpdateId != id || got[1].CallbackQuery == nil || got[1].CallbackQuery.Data != "go" || got[2].UpdateId != id || got[2].Message.Text != "kept" {
		t.Fatalf("delivered %+v", got)
	}
	if err := s.Redeliver(info.ID, 1); err == nil {
		t.Fatal("Redeliver of an unknown update succeeded")
	}
	// Explicit update_id is kept.
	if got, err := s.PushUpdate(info.ID, map[string]any{"update_id": 5, "message": map[string]any{"message_id": 1}}); err != nil || got != 5 {
		t.Fatalf("explicit update_id: %d %v", got, err)
	}
	waitIdle(t, s, info.ID)
	// Default allowed set excludes chat_member.
	if _, err := b.SetWebhook(rc.srv.URL, &gotgbot.SetWebhookOpts{AllowedUpdates: []string{}}); err != nil {
		t.Fatal(err)
	}
	_, _ = s.PushUpdate(info.ID, map[string]any{"chat_member": map[string]any{}})
	if n := s.WebhookInfo(info.ID).PendingUpdateCount; n != 0 {
		t.Fatalf("chat_member queued by default: %d", n)
	}
	if _, err := s.PushUpdate(info.ID, map[string]any{"update_id": 9}); err == nil {
		t.Fatal("update without payload accepted")
	}
}

func TestNoWebhookKeepsUpdatesPending(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("pending_bot", "Pending")
	_, _ = s.SendText(info.ID, User{ID: 9, FirstName: "I"}, "a")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.WaitIdle(ctx, info.ID); err == nil {
		t.Fatal("WaitIdle returned without a consumer")
	}
	if n := s.WebhookInfo(info.ID).PendingUpdateCount; n != 1 {
		t.Fatalf("pending %d", n)
	}
	if _, err := s.SendText(12345, User{ID: 9}, "x"); err == nil {
		t.Fatal("unknown bot accepted")
	}
	if _, err := s.SendText(info.ID, User{}, "x"); err == nil {
		t.Fatal("user id 0 accepted")
	}
}
