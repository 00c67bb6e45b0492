package telegram_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// ingest stores body as an update of b and returns its event.
func (e *botEnv) ingest(t *testing.T, b hookedBot, updateID int64, body string) telegram.WebhookEvent {
	t.Helper()
	if err := e.svc.Ingest(context.Background(), b.ID, b.secret, []byte(body)); err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	return e.event(t, b.ID, updateID)
}

// process runs the legacy telegram:update task of eventID.
func (e *botEnv) process(t *testing.T, eventID int64) error {
	t.Helper()
	payload, _ := json.Marshal(telegram.UpdatePayload{EventID: eventID})
	return e.svc.HandleUpdate(context.Background(), asynq.NewTask(telegram.TypeUpdate, payload))
}

// processAll runs the event processor until no event is left and returns how many it
// processed.
func (e *botEnv) processAll(t *testing.T) int {
	t.Helper()
	n, err := e.svc.ProcessPending(context.Background())
	if err != nil {
		t.Fatalf("ProcessPending: %v", err)
	}
	return n
}

// mustProcess runs the event processor and checks that event eventID is processed.
func (e *botEnv) mustProcess(t *testing.T, eventID int64) {
	t.Helper()
	e.processAll(t)
	var processed bool
	if err := e.db.NewRaw("SELECT processed_at IS NOT NULL FROM webhook_events WHERE id = ?", eventID).Scan(context.Background(), &processed); err != nil {
		t.Fatal(err)
	}
	if !processed {
		t.Fatalf("event %d not processed", eventID)
	}
}

// messages returns the messages of chatID for bot, oldest first.
func (e *botEnv) messages(t *testing.T, botID uuid.UUID, chatID int64) []contacts.Message {
	t.Helper()
	var ms []contacts.Message
	err := e.db.NewSelect().Model(&ms).Where("bot_id = ?", botID).Where("chat_id = ?", chatID).
		OrderExpr("created_at, direction").Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func (e *botEnv) contact(t *testing.T, botID uuid.UUID, chatID int64) contacts.Contact {
	t.Helper()
	c, err := contacts.New(e.db).GetByChat(context.Background(), botID, chatID)
	if err != nil {
		t.Fatalf("contact %d: %v", chatID, err)
	}
	return c
}

// sendTask returns the state of the task that will send message id: its own telegram:send
// task, or a pending telegram:send-many task of its bot that lists it ("" when none).
func (e *botEnv) sendTask(t *testing.T, id uuid.UUID) string {
	t.Helper()
	if info, err := e.insp.GetTaskInfo(telegram.QueueOutbound, telegram.TypeSend+":"+id.String()); err == nil {
		return info.State.String()
	}
	pending, err := e.insp.ListPendingTasks(telegram.QueueOutbound, asynq.PageSize(1000))
	if err != nil {
		return ""
	}
	for _, ti := range pending {
		if ti.Type != telegram.TypeSendMany {
			continue
		}
		var p telegram.SendManyPayload
		if json.Unmarshal(ti.Payload, &p) != nil {
			continue
		}
		for _, b := range p.Batches {
			if slices.Contains(b.MessageIDs, id) {
				return ti.State.String()
			}
		}
	}
	return ""
}

func messageUpdate(updateID, chatID int64, chatType string, from string, text string, entities string) string {
	return fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":{"id":%d,"type":%q},"from":%s,"text":%q,"entities":%s}}`,
		updateID, updateID, chatID, chatType, from, text, entities)
}

func cmdEntity(cmd string) string {
	return fmt.Sprintf(`[{"type":"bot_command","offset":0,"length":%d}]`, len(cmd))
}

func myChatMember(updateID, chatID int64, oldStatus, newStatus string) string {
	return fmt.Sprintf(`{"update_id":%d,"my_chat_member":{"chat":{"id":%d,"type":"private","first_name":"Ann"},"from":{"id":%d,"is_bot":false,"first_name":"Ann"},"date":1700000100,"old_chat_member":{"status":%q,"user":{"id":1,"is_bot":true,"first_name":"Bot"}},"new_chat_member":{"status":%q,"user":{"id":1,"is_bot":true,"first_name":"Bot"}}}}`,
		updateID, chatID, chatID, oldStatus, newStatus)
}

const ann = `{"id":42,"is_bot":false,"first_name":"Ann","last_name":"Lee","username":"annlee","language_code":"en"}`

func TestService_HandleUpdate_Commands(t *testing.T) {
	e := newBotEnv(t)
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")
	username := b.Username

	tests := []struct {
		name      string
		text      string
		entities  string
		wantReply string
		optedOut  bool
	}{
		{"start", "/start", cmdEntity("/start"), "Hi Ann! 👋 Welcome to Shop. Send /help to see what I can do.", false},
		{"start with deep link", "/start promo_42", cmdEntity("/start"), "Hi Ann! 👋 Welcome to Shop. Send /help to see what I can do.", false},
		{"help", "/help", cmdEntity("/help"), "Here is what I can do:\n/start - Start the bot\n/help - Show help\n/stop - Stop receiving messages", false},
		{"help addressed to us", "/help@" + username, cmdEntity("/help@" + username), "Here is what I can do:\n/start - Start the bot\n/help - Show help\n/stop - Stop receiving messages", false},
		{"help addressed to another bot", "/help@other_bot", cmdEntity("/help@other_bot"), "", false},
		{"stop", "/stop", cmdEntity("/stop"), telegram.StopReplyText, true},
		{"plain text while opted out", "hello there", "[]", "", true},
		{"unknown command", "/price", cmdEntity("/price"), "", true},
		{"slash without entity", "/start", "[]", "", true},
		{"start again resubscribes", "/start", cmdEntity("/start"), "Hi Ann! 👋 Welcome to Shop. Send /help to see what I can do.", false},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			updateID := int64(1000 + i)
			before := len(e.messages(t, b.ID, 42))
			ev := e.ingest(t, b, updateID, messageUpdate(updateID, 42, "private", ann, tc.text, tc.entities))
			e.mustProcess(t, ev.ID)

			c := e.contact(t, b.ID, 42)
			if c.TenantID != tn || c.TelegramUserID != 42 || c.FirstName != "Ann" || c.LastName != "Lee" ||
				c.TelegramUsername != "annlee" || c.LanguageCode != "en" || c.OptedOut != tc.optedOut || c.Blocked {
				t.Fatalf("contact = %+v, want opted_out=%v, not blocked", c, tc.optedOut)
			}
			ms := e.messages(t, b.ID, 42)[before:]
			wantN := 1
			if tc.wantReply != "" {
				wantN = 2
			}
			if len(ms) != wantN {
				t.Fatalf("%d new messages, want %d: %+v", len(ms), wantN, ms)
			}
			in := ms[0]
			if in.Direction != contacts.DirectionInbound || in.Text != tc.text || in.UpdateID == nil || *in.UpdateID != updateID ||
				in.ContactID == nil || *in.ContactID != c.ID || in.Status != contacts.StatusReceived {
				t.Fatalf("inbound = %+v", in)
			}
			if tc.wantReply != "" {
				out := ms[1]
				if out.Direction != contacts.DirectionOutbound || out.Kind != contacts.KindReply || out.Status != contacts.StatusQueued ||
					out.Text != tc.wantReply || out.ChatID != 42 || out.TenantID != tn || out.ContactID == nil || *out.ContactID != c.ID {
					t.Fatalf("reply = %+v\nwant text %q", out, tc.wantReply)
				}
				if st := e.sendTask(t, out.ID); st != "pending" {
					t.Fatalf("send task state %q, want pending", st)
				}
			}
			ev = e.event(t, b.ID, updateID)
			if ev.ProcessedAt.IsZero() || ev.ProcessError != "" {
				t.Fatalf("event = %+v", ev)
			}
		})
	}
}

func TestService_HandleUpdate_GroupCommand(t *testing.T) {
	e := newBotEnv(t)
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	ev := e.ingest(t, b, 7, messageUpdate(7, -1001234, "supergroup", ann, "/start@"+strings.ToUpper(b.Username)+" hi", cmdEntity("/start@"+b.Username)))
	e.mustProcess(t, ev.ID)
	ms := e.messages(t, b.ID, -1001234)
	if len(ms) != 2 || ms[1].Text != telegram.StartReplyText("Ann", "Shop") {
		t.Fatalf("messages = %+v", ms)
	}
	if c := e.contact(t, b.ID, -1001234); c.TelegramUserID != 42 {
		t.Fatalf("contact = %+v", c)
	}
}

func TestService_HandleUpdate_Idempotent(t *testing.T) {
	e := newBotEnv(t)
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	ev := e.ingest(t, b, 1, messageUpdate(1, 42, "private", ann, "/start", cmdEntity("/start")))
	for range 3 {
		e.mustProcess(t, ev.ID)
	}
	if ms := e.messages(t, b.ID, 42); len(ms) != 2 {
		t.Fatalf("%d messages after processing 3 times, want 2 (inbound + one reply)", len(ms))
	}
	// A redelivery after processing is acknowledged and changes nothing.
	if err := e.svc.Ingest(context.Background(), b.ID, b.secret, []byte(messageUpdate(1, 42, "private", ann, "/start", cmdEntity("/start")))); err != nil {
		t.Fatal(err)
	}
	e.mustProcess(t, ev.ID)
	if ms := e.messages(t, b.ID, 42); len(ms) != 2 {
		t.Fatalf("%d messages after a redelivery, want 2", len(ms))
	}
}

func TestService_HandleUpdate_MyChatMember(t *testing.T) {
	e := newBotEnv(t)
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	steps := []struct {
		old, new    string
		wantBlocked bool
	}{
		{"member", "kicked", true},
		{"kicked", "member", false},
		{"member", "kicked", true},
	}
	for i, st := range steps {
		ev := e.ingest(t, b, int64(i+1), myChatMember(int64(i+1), 42, st.old, st.new))
		e.mustProcess(t, ev.ID)
		c := e.contact(t, b.ID, 42)
		if c.Blocked != st.wantBlocked || (st.wantBlocked && c.BlockedAt.IsZero()) || c.FirstName != "Ann" {
			t.Fatalf("step %d (%s→%s): contact = %+v", i, st.old, st.new, c)
		}
		if ev := e.event(t, b.ID, int64(i+1)); ev.ProcessedAt.IsZero() || ev.ProcessError != "" {
			t.Fatalf("event = %+v", ev)
		}
	}
	if ms := e.messages(t, b.ID, 42); len(ms) != 0 {
		t.Fatalf("membership changes created messages: %+v", ms)
	}
}

// TestService_HandleUpdate_Emulated runs the whole inbound path with the emulator: a user
// sends /start, blocks and unblocks the bot; Telegram delivers to the webhook, the worker
// handler processes the stored events.
func TestService_HandleUpdate_Emulated(t *testing.T) {
	e := newBotEnv(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := e.hookedBot(t, e.tenant(t, "acme"), "Shop")
	user := tgemu.User{ID: 777, FirstName: "Zoë", Username: "zoe"}
	deliver := func(updateID int64, err error) telegram.WebhookEvent {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if err := e.emu.WaitIdle(ctx, b.info.ID); err != nil {
			t.Fatal(err)
		}
		ev := e.event(t, b.ID, updateID)
		e.mustProcess(t, ev.ID)
		return ev
	}
	deliver(e.emu.SendCommand(b.info.ID, user, "/start"))
	ms := e.messages(t, b.ID, 777)
	if len(ms) != 2 || ms[1].Text != "Hi Zoë! 👋 Welcome to Shop. Send /help to see what I can do." {
		t.Fatalf("messages = %+v", ms)
	}
	deliver(e.emu.Block(b.info.ID, user))
	if !e.contact(t, b.ID, 777).Blocked {
		t.Fatal("not blocked after the user blocked the bot")
	}
	deliver(e.emu.Unblock(b.info.ID, user))
	if e.contact(t, b.ID, 777).Blocked {
		t.Fatal("still blocked after the user restarted the bot")
	}
}

func TestService_HandleUpdate_Other(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")

	t.Run("unknown type processed without error", func(t *testing.T) {
		ev := e.ingest(t, b, 1, `{"update_id":1,"poll":{"id":"p","question":"?","options":[],"total_voter_count":0,"is_closed":false,"is_anonymous":true,"type":"regular","allows_multiple_answers":false}}`)
		e.mustProcess(t, ev.ID)
		ev = e.event(t, b.ID, 1)
		if ev.ProcessedAt.IsZero() || !strings.HasPrefix(ev.ProcessError, "skipped:") {
			t.Fatalf("event = %+v", ev)
		}
		ev = e.ingest(t, b, 2, `{"update_id":2,"brand_new_update":{"x":1}}`)
		e.mustProcess(t, ev.ID)
		if ev = e.event(t, b.ID, 2); ev.ProcessedAt.IsZero() {
			t.Fatalf("event = %+v", ev)
		}
	})

	t.Run("edited message upserts the contact", func(t *testing.T) {
		ev := e.ingest(t, b, 3, `{"update_id":3,"edited_message":{"message_id":1,"date":1700000000,"edit_date":1700000100,"chat":{"id":55,"type":"private"},"from":{"id":55,"is_bot":false,"first_name":"Ed"},"text":"fixed"}}`)
		e.mustProcess(t, ev.ID)
		if c := e.contact(t, b.ID, 55); c.FirstName != "Ed" {
			t.Fatalf("contact = %+v", c)
		}
		if ms := e.messages(t, b.ID, 55); len(ms) != 0 {
			t.Fatalf("edited message produced messages: %+v", ms)
		}
	})

	t.Run("callback query answered", func(t *testing.T) {
		ev := e.ingest(t, b, 4, `{"update_id":4,"callback_query":{"id":"cb-1","from":{"id":66,"is_bot":false,"first_name":"Cal"},"chat_instance":"ci","data":"buy","message":{"message_id":9,"date":1700000000,"chat":{"id":66,"type":"private"},"text":"pick"}}}`)
		e.mustProcess(t, ev.ID)
		if c := e.contact(t, b.ID, 66); c.FirstName != "Cal" {
			t.Fatalf("contact = %+v", c)
		}
		// Answered after the commit, in the background.
		waitFor(t, 5*time.Second, "answerCallbackQuery", func() bool { return len(e.emu.Calls(b.info.ID, "answerCallbackQuery")) > 0 })
		calls := e.emu.Calls(b.info.ID, "answerCallbackQuery")
		if len(calls) != 1 || calls[0].Params["callback_query_id"] != "cb-1" {
			t.Fatalf("answerCallbackQuery calls = %+v", calls)
		}
	})

	t.Run("bad payload", func(t *testing.T) {
		err := e.svc.HandleUpdate(ctx, asynq.NewTask(telegram.TypeUpdate, []byte("nope")))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("error = %v, want SkipRetry", err)
		}
	})

	t.Run("missing event", func(t *testing.T) {
		if err := e.process(t, 987654); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("legacy telegram:update task", func(t *testing.T) {
		ev := e.ingest(t, b, 10, messageUpdate(10, 77, "private", ann, "/help", cmdEntity("/help")))
		for range 2 { // at least once: the second delivery changes nothing
			if err := e.process(t, ev.ID); err != nil {
				t.Fatal(err)
			}
		}
		if ev = e.event(t, b.ID, 10); ev.ProcessedAt.IsZero() || ev.ProcessError != "" {
			t.Fatalf("event = %+v", ev)
		}
		ms := e.messages(t, b.ID, 77)
		if len(ms) != 2 || ms[1].Text != telegram.HelpReplyText() || e.sendTask(t, ms[1].ID) != "pending" {
			t.Fatalf("messages = %+v", ms)
		}
		if n := e.processAll(t); n != 0 {
			t.Fatalf("the processor found %d events after the task", n)
		}
	})

	t.Run("deleted bot", func(t *testing.T) {
		gone := e.hookedBot(t, tn, "Gone")
		ev := e.ingest(t, gone, 1, messageUpdate(1, 42, "private", ann, "/start", cmdEntity("/start")))
		if err := e.svc.DeleteBot(ctx, tn, gone.ID); err != nil {
			t.Fatal(err)
		}
		e.mustProcess(t, ev.ID)
		if ev = e.event(t, gone.ID, 1); ev.ProcessedAt.IsZero() || ev.ProcessError != "bot deleted" {
			t.Fatalf("event = %+v", ev)
		}
		if ms := e.messages(t, gone.ID, 42); len(ms) != 0 {
			t.Fatalf("messages for a deleted bot: %+v", ms)
		}
	})
}

func TestService_Sweep(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")

	// An old processed event (a /start, whose reply is queued), an old unprocessed one and a
	// fresh one.
	done := e.ingest(t, b, 2, messageUpdate(2, 42, "private", ann, "/start", cmdEntity("/start")))
	e.mustProcess(t, done.ID)
	old := e.ingest(t, b, 1, messageUpdate(1, 42, "private", ann, "hi", "[]"))
	fresh := e.ingest(t, b, 3, messageUpdate(3, 42, "private", ann, "hey", "[]"))
	// A reply queued long ago whose send task was lost.
	var reply contacts.Message
	for _, m := range e.messages(t, b.ID, 42) {
		if m.Direction == contacts.DirectionOutbound {
			reply = m
		}
	}
	if reply.ID == uuid.Nil {
		t.Fatal("no reply queued")
	}
	if _, err := e.insp.DeleteAllPendingTasks(telegram.QueueOutbound); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.NewRaw("UPDATE webhook_events SET received_at = now() - interval '5 minutes' WHERE id IN (?, ?)", old.ID, done.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.NewRaw("UPDATE messages SET updated_at = now() - interval '5 minutes' WHERE id = ?", reply.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}

	// Events are counted (a backlog), never enqueued: the processors claim them.
	events, msgs, err := e.svc.Sweep(ctx, time.Minute)
	if err != nil || events != 1 || msgs != 1 {
		t.Fatalf("Sweep = %d events, %d messages, %v; want 1, 1", events, msgs, err)
	}
	for _, id := range []int64{old.ID, done.ID, fresh.ID} {
		if st := e.updateTask(t, id); st != "" {
			t.Fatalf("event %d enqueued (%s)", id, st)
		}
	}
	if st := e.sendTask(t, reply.ID); st != "pending" {
		t.Fatalf("reply send task %q, want pending", st)
	}
	// Tasks that exist are not enqueued twice.
	_, msgs, err = e.svc.Sweep(ctx, time.Minute)
	if err != nil || msgs != 0 {
		t.Fatalf("second Sweep = %d messages, %v; want 0", msgs, err)
	}
	if err := e.svc.HandleSweep(ctx, telegram.NewSweepTask()); err != nil {
		t.Fatal(err)
	}
	// The processor takes the old and the fresh event alike.
	if n := e.processAll(t); n != 2 {
		t.Fatalf("processed %d, want 2", n)
	}
	if events, _, err := e.svc.Sweep(ctx, time.Minute); err != nil || events != 0 {
		t.Fatalf("backlog after processing = %d, %v", events, err)
	}
}
