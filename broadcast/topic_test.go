package broadcast

import (
	"testing"

	"github.com/google/uuid"
)

// TestService_TopicUnsubscribed: a broadcast with a topic records the contacts that opted
// out of it as skipped SkipUnsubscribed and never sends to them, also when its recipients
// are written by the worker (a large audience: materialize); blocked wins over unsubscribed.
func TestService_TopicUnsubscribed(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	ok, out, blk := e.contact(b), e.contact(b), e.contact(b)
	if _, err := e.contacts.SetBlocked(e.ctx, e.db, b.ID, blk.TelegramChatID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := e.contacts.CreateTopic(e.ctx, tn, "alerts", ""); err != nil {
		t.Fatal(err)
	}
	for _, c := range []uuid.UUID{out.ID, blk.ID} {
		if _, err := e.contacts.SetContactTopics(e.ctx, tn, c, map[string]bool{"alerts": false}); err != nil {
			t.Fatal(err)
		}
	}
	e.svc.syncRecipients = 2
	defer func() { e.svc.syncRecipients = SyncRecipients }()
	botID := b.ID
	bc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{
		Name: "large", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Topic: "alerts",
		Recipients: []uuid.UUID{ok.ID, out.ID, blk.ID},
	})
	if err != nil {
		t.Fatal(err)
	}
	if bc.Materialized {
		t.Fatal("want a large (worker-written) audience")
	}
	e.runToEnd(bc.ID, false, 10)
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts != (Counts{Total: 3, Sent: 1, Skipped: 2}) {
		t.Fatalf("after the run: %s %+v", got.Status, counts)
	}
	if r := e.recipientOf(bc.ID, out.TelegramChatID); r.Status != RecipientSkipped || r.Error != SkipUnsubscribed {
		t.Errorf("unsubscribed recipient = %s %q", r.Status, r.Error)
	}
	if r := e.recipientOf(bc.ID, blk.TelegramChatID); r.Status != RecipientSkipped || r.Error != SkipBlocked {
		t.Errorf("blocked and unsubscribed recipient = %s %q", r.Status, r.Error)
	}
	if n := e.sendCalls(b, out.TelegramChatID); n != 0 {
		t.Errorf("sendMessage to the unsubscribed contact: %d", n)
	}
	if n := e.sendCalls(b, ok.TelegramChatID); n != 1 {
		t.Errorf("sendMessage to the subscribed contact: %d, want 1", n)
	}
}
