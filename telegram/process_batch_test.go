package telegram_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram"
)

// replies returns the reply texts queued for chatID of bot, oldest first.
func (e *botEnv) replies(t *testing.T, b hookedBot, chatID int64) []string {
	t.Helper()
	var out []string
	for _, m := range e.messages(t, b.ID, chatID) {
		if m.Direction == contacts.DirectionOutbound && m.Kind == contacts.KindReply {
			out = append(out, m.Text)
		}
	}
	return out
}

func (e *botEnv) unprocessed(t *testing.T) int {
	t.Helper()
	var n int
	if err := e.db.NewRaw("SELECT count(*) FROM webhook_events WHERE processed_at IS NULL").Scan(context.Background(), &n); err != nil {
		t.Fatal(err)
	}
	return n
}

func userJSON(id int64, first string) string {
	return fmt.Sprintf(`{"id":%d,"is_bot":false,"first_name":%q}`, id, first)
}

// TestService_ProcessEvents_Batch processes, in ONE batch, events that interact: several
// events of one chat (order matters), several chats and bots, a deleted bot, undecodable and
// unhandled updates.
func TestService_ProcessEvents_Batch(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b, b2, gone := e.hookedBot(t, tn, "Shop"), e.hookedBot(t, tn, "Cafe"), e.hookedBot(t, tn, "Gone")
	start, stop := cmdEntity("/start"), cmdEntity("/stop")

	// Delivered out of order (Telegram's webhook does not preserve it): update_id decides.
	e.ingest(t, b, 12, messageUpdate(12, 1, "private", userJSON(1, "Ann"), "/start", start))
	e.ingest(t, b, 11, messageUpdate(11, 1, "private", userJSON(1, "Ann"), "/stop", stop))
	// /start then /stop: opted out at the end.
	e.ingest(t, b, 13, messageUpdate(13, 2, "private", userJSON(2, "Bob"), "/start", start))
	e.ingest(t, b, 14, messageUpdate(14, 2, "private", userJSON(2, "Bob"), "/stop", stop))
	// Blocked, unblocked, blocked again.
	e.ingest(t, b, 15, myChatMember(15, 3, "member", "kicked"))
	e.ingest(t, b, 16, myChatMember(16, 3, "kicked", "member"))
	e.ingest(t, b, 17, myChatMember(17, 3, "member", "kicked"))
	// The latest identity wins; an edit without a sender keeps it.
	e.ingest(t, b, 18, messageUpdate(18, 4, "private", userJSON(4, "Old"), "hi", "[]"))
	e.ingest(t, b, 19, messageUpdate(19, 4, "private", `{"id":4,"is_bot":false,"first_name":"New","username":"newname"}`, "again", "[]"))
	e.ingest(t, b, 20, `{"update_id":20,"edited_message":{"message_id":19,"date":1700000200,"chat":{"id":4,"type":"private"},"text":"again!"}}`)
	// The same chat id for another bot is another contact.
	e.ingest(t, b2, 11, messageUpdate(11, 1, "private", userJSON(1, "Ann"), "/start", start))
	// Callback query, unknown type, undecodable payload, deleted bot.
	e.ingest(t, b, 21, `{"update_id":21,"callback_query":{"id":"cb-9","from":{"id":5,"is_bot":false,"first_name":"Cal"},"chat_instance":"ci","data":"x"}}`)
	e.ingest(t, b, 22, `{"update_id":22,"poll_answer":{"poll_id":"p","option_ids":[0]}}`)
	e.ingest(t, b, 23, `{"update_id":23,"message":{"message_id":"not a number","chat":{"id":6,"type":"private"}}}`)
	e.ingest(t, gone, 1, messageUpdate(1, 1, "private", userJSON(1, "Ann"), "/start", start))
	if err := e.svc.DeleteBot(ctx, tn, gone.ID); err != nil {
		t.Fatal(err)
	}

	if n := e.processAll(t); n != 15 {
		t.Fatalf("processed %d events, want 15", n)
	}
	if n := e.unprocessed(t); n != 0 {
		t.Fatalf("%d events left unprocessed", n)
	}

	if c := e.contact(t, b.ID, 1); c.Blocked || !c.BlockedAt.IsZero() || c.OptedOut || !c.OptedOutAt.IsZero() {
		t.Errorf("/stop then /start: contact = %+v, want subscribed", c)
	}
	if got := strings.Join(e.replies(t, b, 1), " | "); got != telegram.StopReplyText+" | "+telegram.StartReplyText("Ann", "Shop") {
		t.Errorf("chat 1 replies = %q", got)
	}
	if c := e.contact(t, b.ID, 2); !c.OptedOut || c.OptedOutAt.IsZero() || c.Blocked {
		t.Errorf("/start then /stop: contact = %+v, want opted out (not blocked)", c)
	}
	if c := e.contact(t, b.ID, 3); !c.Blocked || c.BlockedAt.IsZero() || c.OptedOut {
		t.Errorf("kicked, member, kicked: contact = %+v, want blocked", c)
	}
	if c := e.contact(t, b.ID, 4); c.FirstName != "New" || c.TelegramUsername != "newname" || !c.LastSeenAt.Equal(time.Unix(1700000200, 0)) {
		t.Errorf("identity: contact = %+v", c)
	}
	ms := e.messages(t, b.ID, 4)
	if len(ms) != 2 || ms[0].Text != "hi" || ms[1].Text != "again" || !ms[0].CreatedAt.Before(ms[1].CreatedAt) {
		t.Errorf("chat 4 messages = %+v", ms)
	}
	if c := e.contact(t, b2.ID, 1); c.BotID != b2.ID || c.Blocked {
		t.Errorf("second bot's contact = %+v", c)
	}
	if got := e.replies(t, b2, 1); len(got) != 1 || got[0] != telegram.StartReplyText("Ann", "Cafe") {
		t.Errorf("second bot's replies = %q", got)
	}
	if c := e.contact(t, b.ID, 5); c.FirstName != "Cal" {
		t.Errorf("callback contact = %+v", c)
	}
	for _, tc := range []struct {
		bot      hookedBot
		updateID int64
		prefix   string
	}{
		{b, 22, "skipped: update type poll_answer"},
		{b, 23, "skipped: cannot decode update"},
		{gone, 1, "bot deleted"},
	} {
		if ev := e.event(t, tc.bot.ID, tc.updateID); !strings.HasPrefix(ev.ProcessError, tc.prefix) {
			t.Errorf("event %d: process_error %q, want %q...", tc.updateID, ev.ProcessError, tc.prefix)
		}
	}
	if ms := e.messages(t, gone.ID, 1); len(ms) != 0 {
		t.Errorf("deleted bot got messages: %+v", ms)
	}
	// Every reply has its send task.
	var replies []contacts.Message
	if err := e.db.NewSelect().Model(&replies).Where("kind = ?", contacts.KindReply).Scan(ctx); err != nil {
		t.Fatal(err)
	}
	if len(replies) != 5 {
		t.Fatalf("%d replies, want 5", len(replies))
	}
	for _, m := range replies {
		if st := e.sendTask(t, m.ID); st != "pending" {
			t.Errorf("reply %s: send task %q", m.Text, st)
		}
	}
	waitFor(t, 5*time.Second, "callback answered", func() bool { return len(e.emu.Calls(b.info.ID, "answerCallbackQuery")) == 1 })
}

// TestService_ProcessEvents_Poison: an event whose processing fails (here a trigger refuses
// its message) makes its batch fail; the batch is then processed one event at a time, the
// bad one is marked failed and the others are processed normally.
func TestService_ProcessEvents_Poison(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	for _, q := range []string{
		`CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		 BEGIN IF NEW.text = 'poison' THEN RAISE EXCEPTION 'poisoned message'; END IF; RETURN NEW; END $$`,
		`CREATE TRIGGER refuse_poison BEFORE INSERT ON messages FOR EACH ROW EXECUTE FUNCTION refuse_poison()`,
	} {
		if _, err := e.db.ExecContext(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	for i := int64(1); i <= 20; i++ {
		text := fmt.Sprintf("msg %d", i)
		if i == 7 {
			text = "poison"
		}
		e.ingest(t, b, i, messageUpdate(i, 100+i, "private", userJSON(100+i, "U"), text, "[]"))
	}
	if n := e.processAll(t); n != 20 {
		t.Fatalf("processed %d, want 20", n)
	}
	for i := int64(1); i <= 20; i++ {
		ev := e.event(t, b.ID, i)
		ms := e.messages(t, b.ID, 100+i)
		if i == 7 {
			if ev.ProcessedAt.IsZero() || !strings.Contains(ev.ProcessError, "failed: ") || !strings.Contains(ev.ProcessError, "poisoned message") || len(ms) != 0 {
				t.Fatalf("poison event = %+v, messages %d", ev, len(ms))
			}
			continue
		}
		if ev.ProcessedAt.IsZero() || ev.ProcessError != "" || len(ms) != 1 {
			t.Fatalf("event %d = %+v, messages %d", i, ev, len(ms))
		}
	}
}

// TestService_ProcessEvents_Crash kills a processor's connection while it is in the middle
// of a batch (blocked on a contact row the test holds): nothing of the batch remains, and
// another processor then processes every event exactly once.
func TestService_ProcessEvents_Crash(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	e.mustProcess(t, e.ingest(t, b, 1, messageUpdate(1, 42, "private", ann, "hello", "[]")).ID)

	// Hold chat 42's contact row so that the next batch blocks on it.
	hold, err := e.db.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Rollback() //nolint:errcheck
	if _, err := hold.ExecContext(ctx, "SELECT 1 FROM contacts WHERE bot_id = ? AND telegram_chat_id = 42 FOR UPDATE", b.ID); err != nil {
		t.Fatal(err)
	}
	for i := int64(2); i <= 31; i++ {
		chat := int64(40 + i%5) // chat 42 among others
		e.ingest(t, b, i, messageUpdate(i, chat, "private", userJSON(chat, "U"), "/start", cmdEntity("/start")))
	}

	// A processor ("worker 1"): another Service, as in another process.
	w1 := e.newService(t, e.db, e.queue)
	ctx1, stop1 := context.WithCancel(ctx)
	done1 := make(chan struct{})
	go func() { defer close(done1); _ = w1.ProcessEvents(ctx1) }()
	var pid int
	waitFor(t, 10*time.Second, "worker 1 blocked mid-batch", func() bool {
		err := e.db.NewRaw(`SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'
			AND query LIKE 'WITH p AS (INSERT INTO contacts%' LIMIT 1`).Scan(ctx, &pid)
		return err == nil && pid != 0
	})
	if n := e.unprocessed(t); n != 30 {
		t.Fatalf("%d unprocessed while the batch runs, want 30", n)
	}
	// Worker 1 dies: stop it from retrying, then kill its connection (its transaction dies).
	stop1()
	// pg_terminate_backend(pid, timeout) waits until the backend is gone (its locks released).
	if _, err := e.db.ExecContext(ctx, "SELECT pg_terminate_backend(?, 5000)", pid); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done1:
	case <-time.After(10 * time.Second):
		t.Fatal("worker 1 did not stop")
	}
	if err := hold.Rollback(); err != nil {
		t.Fatal(err)
	}
	if n := e.unprocessed(t); n != 30 {
		t.Fatalf("%d unprocessed after the crash, want 30 (the batch must vanish with its transaction)", n)
	}
	var replies int
	if err := e.db.NewRaw("SELECT count(*) FROM messages WHERE kind = 'reply'").Scan(ctx, &replies); err != nil || replies != 0 {
		t.Fatalf("%d replies after the crash, %v", replies, err)
	}

	// Worker 2 takes over.
	if n := e.processAll(t); n != 30 {
		t.Fatalf("worker 2 processed %d, want 30", n)
	}
	for chat := int64(40); chat <= 44; chat++ {
		if got, want := len(e.replies(t, b, chat)), 6; got != want {
			t.Errorf("chat %d: %d replies, want %d (one per /start)", chat, got, want)
		}
	}
	var dup int
	if err := e.db.NewRaw(`SELECT count(*) FROM (SELECT update_id FROM messages WHERE direction = 'inbound' AND bot_id = ?
		GROUP BY update_id HAVING count(*) > 1) d`, b.ID).Scan(ctx, &dup); err != nil || dup != 0 {
		t.Fatalf("%d updates recorded twice, %v", dup, err)
	}
}

// TestService_ProcessEvents_Concurrent runs four processors while chats send alternating
// /start and /stop: every event is processed once, and each chat ends in the state of its
// last command, whichever processor took which event.
func TestService_ProcessEvents_Concurrent(t *testing.T) {
	e := newBotEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = e.svc.RunEventProcessors(ctx, 4)
	}()

	const chats, rounds = 30, 6
	var wg sync.WaitGroup
	for c := int64(1); c <= chats; c++ {
		wg.Go(func() {
			for r := int64(0); r < rounds; r++ {
				cmd := "/start"
				if r%2 == 1 {
					cmd = "/stop"
				}
				id := c*100 + r
				if err := e.svc.Ingest(context.Background(), b.ID, b.secret, []byte(messageUpdate(id, c, "private", userJSON(c, "U"), cmd, cmdEntity(cmd)))); err != nil {
					t.Error(err)
				}
				time.Sleep(time.Duration(c%3) * time.Millisecond)
			}
		})
	}
	wg.Wait()
	waitFor(t, 30*time.Second, "all events processed", func() bool { return e.unprocessed(t) == 0 })
	cancel()
	<-done

	for c := int64(1); c <= chats; c++ {
		if got := e.contact(t, b.ID, c); !got.OptedOut { // last command: /stop
			t.Errorf("chat %d ends subscribed after /start,/stop,...,/stop", c)
		}
		if got := len(e.replies(t, b, c)); got != rounds {
			t.Errorf("chat %d: %d replies, want %d", c, got, rounds)
		}
	}
}
