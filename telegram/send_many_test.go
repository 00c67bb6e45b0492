package telegram

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestService_HandleSendMany sends a batch of replies of one bot in one task: each message
// gets its own text, a blocked chat fails alone, a 5xx is requeued with its attempt counted
// and the task asks to run again, and the second run sends only that one; no message is
// sent twice.
func TestService_HandleSendMany(t *testing.T) {
	e := newSendEnv(t, tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1}, nil)
	ctx := context.Background()
	var ids []uuid.UUID
	var ms []contacts.Message
	for i := range 5 {
		c := e.contact(e.info, e.bot, int64(7000+i))
		m := e.queuedMessage(c, "reply "+string(rune('A'+i)))
		ms = append(ms, m)
		ids = append(ids, m.ID)
	}
	if _, err := e.emu.Block(e.info.ID, tgemu.User{ID: 7001, FirstName: "User"}); err != nil {
		t.Fatal(err)
	}
	e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tgemu.FaultServerError, ChatID: 7002, Times: 1})
	// A second bot's batch rides in the same task.
	info2, bot2 := e.addBot(e.tenantID, 0)
	c2 := e.contact(info2, bot2, 8000)
	m2 := e.queuedMessage(c2, "other bot")
	task, err := NewSendManyTask(SendManyBatch{BotID: e.bot.ID, MessageIDs: ids}, SendManyBatch{BotID: bot2.ID, MessageIDs: []uuid.UUID{m2.ID}})
	if err != nil {
		t.Fatal(err)
	}
	err = e.svc.HandleSendMany(ctx, task)
	var ra *RetryAfterError
	if !errors.As(err, &ra) || ra.RetryAfter > 2*time.Second {
		t.Fatalf("first run = %v, want a RetryAfterError of about 1s for the 5xx", err)
	}
	want := map[int]struct {
		status   string
		attempts int
	}{0: {contacts.StatusSent, 1}, 1: {contacts.StatusFailed, 1}, 2: {contacts.StatusQueued, 1}, 3: {contacts.StatusSent, 1}, 4: {contacts.StatusSent, 1}}
	for i, m := range ms {
		got := e.message(m.ID)
		if got.Status != want[i].status || got.Attempts != want[i].attempts {
			t.Errorf("message %d: %s attempts %d, want %s %d", i, got.Status, got.Attempts, want[i].status, want[i].attempts)
		}
	}
	if got := e.message(m2.ID); got.Status != contacts.StatusSent || len(e.emu.SentTo(info2.ID, 8000)) != 1 {
		t.Errorf("the other bot's message: %s, %d sent", got.Status, len(e.emu.SentTo(info2.ID, 8000)))
	}
	if err := e.svc.HandleSendMany(ctx, task); err != nil {
		t.Fatalf("second run = %v, want nil", err)
	}
	if n := len(e.emu.SentTo(info2.ID, 8000)); n != 1 {
		t.Errorf("the other bot's chat got %d messages after the second run, want 1", n)
	}
	if got := e.message(ms[2].ID); got.Status != contacts.StatusSent || got.Attempts != 2 {
		t.Errorf("retried message: %s attempts %d, want sent after 2", got.Status, got.Attempts)
	}
	for i, m := range ms {
		n := len(e.emu.SentTo(e.info.ID, m.ChatID))
		if wantN := map[bool]int{true: 0, false: 1}[i == 1]; n != wantN {
			t.Errorf("chat %d got %d messages, want %d", m.ChatID, n, wantN)
		}
		for _, s := range e.emu.SentTo(e.info.ID, m.ChatID) {
			if s.Text != m.Text {
				t.Errorf("chat %d got %q, want its own text %q", m.ChatID, s.Text, m.Text)
			}
		}
	}
	if err := e.svc.HandleSendMany(ctx, asynq.NewTask(TypeSendMany, []byte("{"))); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("bad payload: %v, want SkipRetry", err)
	}
}
