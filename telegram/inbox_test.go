package telegram_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestService_InboxMode sends messages through tgemu to the webhook of a bot in each inbox
// mode and checks the inbox flag the event processor stores on the inbound messages.
func TestService_InboxMode(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")
	user := tgemu.User{ID: 4242, FirstName: "Ann"}
	// say delivers text from user through Telegram's webhook, processes it and returns the
	// inbox flag of the stored inbound message.
	say := func(t *testing.T, text string) bool {
		t.Helper()
		before := len(e.messages(t, b.ID, user.ID))
		if _, err := e.emu.SendText(b.info.ID, user, text); err != nil {
			t.Fatal(err)
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		if err := e.emu.WaitIdle(wctx, b.info.ID); err != nil {
			t.Fatal(err)
		}
		e.processAll(t)
		ms := e.messages(t, b.ID, user.ID)
		for _, m := range ms[before:] {
			if m.Direction == contacts.DirectionInbound && m.Text == text {
				return m.Inbox
			}
		}
		t.Fatalf("no inbound message %q stored: %+v", text, ms[before:])
		return false
	}
	set := func(t *testing.T, mode string, kws ...string) telegram.Bot {
		t.Helper()
		u := telegram.UpdateBot{InboxMode: &mode, Editor: "ops"}
		if kws != nil {
			u.InboxKeywords = &kws
		}
		nb, err := e.svc.UpdateBot(ctx, tn, b.ID, u)
		if err != nil {
			t.Fatal(err)
		}
		return nb
	}

	t.Run("all (default)", func(t *testing.T) {
		if got := e.storedBot(t, b.ID); got.InboxMode != telegram.InboxAll || len(got.InboxKeywords) != 0 {
			t.Fatalf("new bot: mode %q keywords %v", got.InboxMode, got.InboxKeywords)
		}
		if !say(t, "hello there") {
			t.Fatal("mode all: not flagged")
		}
	})
	t.Run("keywords", func(t *testing.T) {
		nb := set(t, " Keywords ", "Refund", "  ÄRGER ", "refund", "退款")
		if nb.InboxMode != telegram.InboxKeywords || fmt.Sprint(nb.InboxKeywords) != "[refund ärger 退款]" || nb.UpdatedBy != "ops" {
			t.Fatalf("stored: %q %q %q", nb.InboxMode, nb.InboxKeywords, nb.UpdatedBy)
		}
		for text, want := range map[string]bool{
			"I want a REFUND now":      true,
			"refunds?":                 true, // substring, not only whole words
			"So viel Ärger!":           true, // Unicode lowercasing
			"我要退款":                     true, // no spaces between words
			"just saying hi":           false,
			"ref und":                  false,
			"/start":                   false, // a command without a keyword (answered)
			"the refu nd is not a kw.": false,
		} {
			if got := say(t, text); got != want {
				t.Errorf("keywords: %q flagged %v, want %v", text, got, want)
			}
		}
		// A caption is matched like a text; a message without either is not flagged.
		ev := e.ingest(t, b, 900001, `{"update_id":900001,"message":{"message_id":9001,"date":1700000000,"chat":{"id":4242,"type":"private"},"from":{"id":4242,"is_bot":false,"first_name":"Ann"},"photo":[{"file_id":"f","file_unique_id":"u","width":1,"height":1}],"caption":"Refund please"}}`)
		e.mustProcess(t, ev.ID)
		ev = e.ingest(t, b, 900002, `{"update_id":900002,"message":{"message_id":9002,"date":1700000001,"chat":{"id":4242,"type":"private"},"from":{"id":4242,"is_bot":false,"first_name":"Ann"},"sticker":{"file_id":"s","file_unique_id":"su","width":1,"height":1,"is_animated":false,"is_video":false,"type":"regular"}}}`)
		e.mustProcess(t, ev.ID)
		var flags []bool
		if err := e.db.NewRaw("SELECT inbox FROM messages WHERE bot_id = ? AND update_id IN (900001, 900002) ORDER BY update_id", b.ID).Scan(ctx, &flags); err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(flags) != "[true false]" {
			t.Fatalf("caption, sticker: inbox = %v, want [true false]", flags)
		}
	})
	t.Run("keywords, empty list flags nothing", func(t *testing.T) {
		set(t, telegram.InboxKeywords, []string{}...)
		if got := e.storedBot(t, b.ID); len(got.InboxKeywords) != 0 {
			t.Fatalf("keywords = %v", got.InboxKeywords)
		}
		if say(t, "refund") {
			t.Fatal("empty keyword list: flagged")
		}
	})
	t.Run("off", func(t *testing.T) {
		set(t, telegram.InboxOff, "refund")
		if say(t, "refund") || say(t, "anything") {
			t.Fatal("mode off: flagged")
		}
		// Outbound replies are never flagged.
		say(t, "/help")
		var n int
		if err := e.db.NewRaw("SELECT count(*) FROM messages WHERE bot_id = ? AND direction = 'outbound' AND inbox", b.ID).Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Fatalf("%d outbound messages flagged", n)
		}
	})
	t.Run("all again", func(t *testing.T) {
		set(t, telegram.InboxAll)
		if !say(t, "back to all") {
			t.Fatal("mode all: not flagged")
		}
	})
}

// TestService_InboxValidation checks the 422s of the inbox fields.
func TestService_InboxValidation(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b, _ := e.register(t, tn, "Shop")
	str := func(s string) *string { return &s }
	kws := func(k ...string) *[]string { return &k }
	long := make([]string, telegram.MaxInboxKeywords+1)
	for i := range long {
		long[i] = fmt.Sprintf("k%d", i)
	}
	for _, c := range []struct {
		u     telegram.UpdateBot
		field string
	}{
		{telegram.UpdateBot{InboxMode: str("some")}, "inbox_mode"},
		{telegram.UpdateBot{InboxMode: str("")}, "inbox_mode"},
		{telegram.UpdateBot{InboxKeywords: kws("a", "b", "c", " ")}, "inbox_keywords[3]"},
		{telegram.UpdateBot{InboxKeywords: kws(strings.Repeat("a", 65))}, "inbox_keywords[0]"},
		{telegram.UpdateBot{InboxKeywords: kws("ok", "x\ny")}, "inbox_keywords[1]"},
		{telegram.UpdateBot{InboxKeywords: kws("ok", "ä\x00")}, "inbox_keywords[1]"},
		{telegram.UpdateBot{InboxKeywords: &long}, "inbox_keywords"},
	} {
		_, err := e.svc.UpdateBot(ctx, tn, b.ID, c.u)
		if got := validate.FieldOf(err); got != c.field {
			t.Errorf("%+v: field %q (%v), want %q", c.u, got, err, c.field)
		}
	}
	ok := make([]string, telegram.MaxInboxKeywords)
	for i := range ok {
		ok[i] = fmt.Sprintf("%064d", i)
	}
	nb, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{InboxKeywords: &ok})
	if err != nil || len(nb.InboxKeywords) != telegram.MaxInboxKeywords {
		t.Fatalf("100 keywords of 64 characters: %v, %d", err, len(nb.InboxKeywords))
	}
}
