package telegram

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestService_SweepMessages checks that no outbound message stays stuck: the sweep pages
// through every stale queued message (more than one page), replaces a send task that asynq
// archived after its retries (which would otherwise block its TaskID forever), and takes
// back a message left "sending" by a dead worker only after SendLease; the send that
// follows counts a second attempt and records that the first may have been delivered.
func TestService_SweepMessages(t *testing.T) {
	e := newSendEnv(t, tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1}, nil)
	ctx := context.Background()
	ins := asynq.NewInspectorFromRedisClient(e.rdb)
	const n = sweepBatch + 3
	c := e.contact(e.info, e.bot, 4242)
	ids := make(map[string]bool, n)
	for i := range n {
		m := contacts.Message{TenantID: e.tenantID, BotID: e.bot.ID, ContactID: &c.ID, ChatID: c.TelegramChatID, Text: "hi " + string(rune('a'+i%26))}
		if err := e.svc.contacts.CreateOutbound(ctx, e.db, &m); err != nil {
			t.Fatal(err)
		}
		ids[m.ID.String()] = true
	}
	if _, err := e.db.NewRaw("UPDATE messages SET updated_at = now() - interval '1 hour'").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	// One message's task was archived (e.g. its retries ran out during a PostgreSQL outage).
	var archived string
	for id := range ids {
		archived = id
		break
	}
	task, err := NewSendTask(uuidMust(t, archived))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.queue.Enqueue(task); err != nil {
		t.Fatal(err)
	}
	if err := ins.ArchiveTask(QueueOutbound, TypeSend+":"+archived); err != nil {
		t.Fatal(err)
	}

	got, err := e.svc.sweepMessages(ctx, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("sweep enqueued %d send tasks, want %d (every stale message, past the first page)", got, n)
	}
	pending, err := ins.ListPendingTasks(QueueOutbound, asynq.PageSize(2*n))
	if err != nil {
		t.Fatal(err)
	}
	for _, ti := range pending {
		delete(ids, strings.TrimPrefix(ti.ID, TypeSend+":"))
	}
	if len(ids) != 0 {
		t.Fatalf("%d messages got no pending send task (archived one: %s)", len(ids), archived)
	}

	// A message left "sending" by a dead worker: not taken back before SendLease.
	m := e.queuedMessage(c, "interrupted")
	if _, err := e.db.NewRaw("UPDATE messages SET status = 'sending', attempts = 1, updated_at = now() - ? * interval '1 millisecond' WHERE id = ?",
		(e.svc.SendLease() - 5*time.Second).Milliseconds(), m.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); err != nil {
		t.Fatal(err)
	}
	if got := e.message(m.ID); got.Status != contacts.StatusSending || len(e.emu.SentTo(e.info.ID, c.TelegramChatID)) != 0 {
		t.Fatalf("within the lease: status %s, %d sent; want it left to its (maybe live) worker", got.Status, len(e.emu.SentTo(e.info.ID, c.TelegramChatID)))
	}
	if _, err := e.db.NewRaw("UPDATE messages SET updated_at = now() - ? * interval '1 millisecond' WHERE id = ?",
		(e.svc.SendLease() + time.Second).Milliseconds(), m.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); err != nil {
		t.Fatal(err)
	}
	got2 := e.message(m.ID)
	if got2.Status != contacts.StatusSent || got2.Attempts != 2 || got2.Error != contacts.ErrTextInterrupted {
		t.Fatalf("after the lease: status %s attempts %d error %q; want sent, 2 attempts, %q", got2.Status, got2.Attempts, got2.Error, contacts.ErrTextInterrupted)
	}
}

func uuidMust(t *testing.T, s string) uuid.UUID {
	t.Helper()
	id, err := uuid.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
