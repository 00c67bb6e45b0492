package broadcast

import (
	"testing"

	"github.com/google/uuid"
)

// TestService_Skipped checks that contacts that blocked the bot (or opted out with /stop,
// which sets the same flag) are recorded as skipped with reason SkipBlocked, counted as
// skipped and never pending, and never get a sendMessage, for each way recipient rows are
// written: a list (with duplicates collapsed), a segment, and a large audience written by
// the worker (materialize); a broadcast whose recipients are all skipped completes.
func TestService_Skipped(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	ok := e.contact(b)
	blk := e.contactsOf(b, 3)
	for _, c := range blk {
		e.tagged(c, []string{"gone"}, `{}`)
		if _, err := e.contacts.SetBlocked(e.ctx, e.db, b.ID, c.TelegramChatID, true); err != nil {
			t.Fatal(err)
		}
	}
	botID := b.ID

	// check runs broadcast id to its end and asserts its counts and the skipped rows.
	check := func(t *testing.T, id uuid.UUID, created, want Counts) {
		t.Helper()
		if created != (Counts{Total: want.Total, Pending: want.Total - want.Skipped, Skipped: want.Skipped}) &&
			created != (Counts{Total: want.Total, Pending: want.Total}) { // large: not yet written
			t.Errorf("counts at Create = %+v", created)
		}
		e.runToEnd(id, false, 10)
		got, counts := e.get(b, id)
		if got.Status != StatusCompleted || counts != want {
			t.Fatalf("after the run: %s counts %+v, want completed %+v", got.Status, counts, want)
		}
		for _, c := range blk {
			r := e.recipientOf(id, c.TelegramChatID)
			if r.Status != RecipientSkipped || r.Error != SkipBlocked || r.Attempts != 0 || r.TelegramMessageID != nil {
				t.Errorf("blocked recipient = %s %q attempts %d", r.Status, r.Error, r.Attempts)
			}
		}
		rows, _, err := e.svc.Recipients(e.ctx, tn, id, RecipientFilter{Status: "SKIPPED"})
		if err != nil || len(rows) != want.Skipped {
			t.Errorf("?status=skipped: %d rows (%v), want %d", len(rows), err, want.Skipped)
		}
	}

	t.Run("list with duplicates", func(t *testing.T) {
		bc, created, err := e.svc.Create(e.ctx, tn, NewBroadcast{
			Name: "list", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID,
			Recipients: []uuid.UUID{blk[0].ID, ok.ID, blk[1].ID, blk[0].ID, ok.ID, blk[2].ID, blk[1].ID},
		})
		if err != nil {
			t.Fatal(err)
		}
		if bc.Total != 4 || len(e.recipients(bc.ID)) != 4 {
			t.Fatalf("total %d rows %d, want 4 (duplicates collapsed)", bc.Total, len(e.recipients(bc.ID)))
		}
		check(t, bc.ID, created, Counts{Total: 4, Sent: 1, Skipped: 3})
		if n := e.sendCalls(b, ok.TelegramChatID); n != 1 {
			t.Errorf("sendMessage to the subscribed contact = %d, want 1", n)
		}
	})

	t.Run("list all skipped", func(t *testing.T) {
		bc, created, err := e.svc.Create(e.ctx, tn, NewBroadcast{
			Name: "all blocked", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Recipients: ids(blk),
		})
		if err != nil {
			t.Fatal(err)
		}
		check(t, bc.ID, created, Counts{Total: 3, Skipped: 3})
	})

	t.Run("segment all skipped", func(t *testing.T) {
		seg := Segment{TagsAny: []string{"gone"}}
		bc, created, err := e.svc.Create(e.ctx, tn, NewBroadcast{
			Name: "segment", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Segment: &seg,
		})
		if err != nil {
			t.Fatal(err)
		}
		check(t, bc.ID, created, Counts{Total: 3, Skipped: 3})
	})

	t.Run("large audience", func(t *testing.T) {
		e.svc.syncRecipients = 2
		defer func() { e.svc.syncRecipients = SyncRecipients }()
		bc, created, err := e.svc.Create(e.ctx, tn, NewBroadcast{
			Name: "large", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID,
			Recipients: append(ids(blk), blk[2].ID, ok.ID),
		})
		if err != nil {
			t.Fatal(err)
		}
		if bc.Materialized || created != (Counts{Total: 4, Pending: 4}) {
			t.Fatalf("at Create: materialized %v counts %+v, want the audience pending", bc.Materialized, created)
		}
		check(t, bc.ID, created, Counts{Total: 4, Sent: 1, Skipped: 3})
	})

	t.Run("large all skipped", func(t *testing.T) {
		e.svc.syncRecipients = 2
		defer func() { e.svc.syncRecipients = SyncRecipients }()
		bc, created, err := e.svc.Create(e.ctx, tn, NewBroadcast{
			Name: "large blocked", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Recipients: ids(blk),
		})
		if err != nil {
			t.Fatal(err)
		}
		check(t, bc.ID, created, Counts{Total: 3, Skipped: 3})
	})

	for _, c := range blk {
		if n := e.sendCalls(b, c.TelegramChatID); n != 0 {
			t.Errorf("sendMessage to blocked chat %d: %d calls, want none", c.TelegramChatID, n)
		}
	}
}
