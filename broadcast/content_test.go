package broadcast

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// person makes a Telegram user with these names /start the bot and stores the contact with
// the attributes attrs (JSON object, "" for none).
func (e *env) person(b testBot, first, last, username, attrs string) contacts.Contact {
	e.t.Helper()
	uid := 200_000 + e.userSeq.Add(1)
	if _, err := e.emu.SendCommand(b.emuID, tgemu.User{ID: uid, FirstName: "X", Username: username}, "/start"); err != nil {
		e.t.Fatal(err)
	}
	c, err := e.contacts.UpsertFromTelegram(e.ctx, e.db, b.TenantID, b.ID,
		contacts.Identity{ChatID: uid, UserID: uid, FirstName: first, LastName: last, Username: username}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if attrs != "" {
		c = e.tagged(c, nil, attrs)
	}
	return c
}

// details returns the details of an apperr 422 (failing the test for any other error).
func details(t *testing.T, err error) map[string]any {
	t.Helper()
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Kind != apperr.KindInvalid || ae.Code != "invalid_field" {
		t.Fatalf("want 422 invalid_field, got %v", err)
	}
	d, _ := ae.Details.(map[string]any)
	return d
}

func TestService_Content_PhotoKeyboard(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 2)
	botID := b.ID
	kb := &telegram.InlineKeyboardMarkup{InlineKeyboard: [][]telegram.InlineKeyboardButton{
		{{Text: "Shop", URL: "https://example.com/shop"}, {Text: "Later", CallbackData: "later:1"}},
		{{Text: "Open app", URL: "tg://resolve?domain=example"}},
	}}
	bc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{
		Name: "sale", Platform: "TELEGRAM", MessageText: "<b>Sale</b> today", ParseMode: "html",
		Recipients: ids(cs), BotID: &botID,
		Content: telegram.Content{Photo: "https://example.com/p.jpg", ReplyMarkup: kb, DisableNotification: true, ProtectContent: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := e.get(b, bc.ID)
	if got.Content == nil || got.Content.Photo != "https://example.com/p.jpg" || !got.Content.DisableNotification || !got.Content.ProtectContent ||
		got.Content.ReplyMarkup == nil || len(got.Content.ReplyMarkup.InlineKeyboard) != 2 {
		t.Fatalf("stored content = %+v", got.Content)
	}
	e.runToEnd(bc.ID, true, 10)
	sent := e.emu.Sent(b.emuID)
	if len(sent) != 2 {
		t.Fatalf("sent %d messages, want 2", len(sent))
	}
	for _, m := range sent {
		if m.Method != "sendPhoto" || m.Photo != "https://example.com/p.jpg" || m.Text != "<b>Sale</b> today" || m.ParseMode != "HTML" ||
			!m.DisableNotification || !m.ProtectContent || m.AllowPaidBroadcast {
			t.Errorf("sent %+v", m)
		}
		var markup telegram.InlineKeyboardMarkup
		if err := json.Unmarshal([]byte(m.ReplyMarkup), &markup); err != nil {
			t.Fatalf("reply_markup %q: %v", m.ReplyMarkup, err)
		}
		if len(markup.InlineKeyboard) != 2 || markup.InlineKeyboard[0][0].URL != "https://example.com/shop" ||
			markup.InlineKeyboard[0][1].CallbackData != "later:1" || markup.InlineKeyboard[1][0].URL != "tg://resolve?domain=example" {
			t.Errorf("reply_markup = %s", m.ReplyMarkup)
		}
	}
	if _, c := e.get(b, bc.ID); c.Sent != 2 {
		t.Fatalf("counts %+v", c)
	}

	// A document by file_id without a caption, link preview off on a text broadcast.
	doc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "doc", Platform: "TELEGRAM", Recipients: ids(cs[:1]), BotID: &botID,
		Content: telegram.Content{Document: "BQACAgIAAxkBAAIBY2Zk_file-id"}})
	if err != nil {
		t.Fatal(err)
	}
	txt, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "txt", Platform: "TELEGRAM", MessageText: "see https://example.com", Recipients: ids(cs[:1]), BotID: &botID,
		Content: telegram.Content{DisableLinkPreview: true}})
	if err != nil {
		t.Fatal(err)
	}
	e.runToEnd(doc.ID, false, 20)
	e.runToEnd(txt.ID, false, 20)
	sent = e.emu.Sent(b.emuID)[2:]
	if len(sent) != 2 || sent[0].Method != "sendDocument" || sent[0].Document != "BQACAgIAAxkBAAIBY2Zk_file-id" || sent[0].Text != "" {
		t.Fatalf("document sends %+v", sent)
	}
	if sent[1].Method != "sendMessage" || sent[1].LinkPreviewOptions != `{"is_disabled":true}` || sent[1].ReplyMarkup != "" {
		t.Fatalf("text send %+v", sent[1])
	}
}

func TestService_Content_Variables(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	botID := b.ID
	ann := e.person(b, "Ann", "Lee", "ann", `{"city":"Paris","vip":true,"points":42}`)
	nameless := e.person(b, "", "", "", "")
	html := e.person(b, "<b>Bob & co</b>", "", "", `{"city":"A<B"}`)
	md := e.person(b, "a_b.c!", "", "", "")

	create := func(text, mode string, cs ...contacts.Contact) Broadcast {
		t.Helper()
		bc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "v", Platform: "TELEGRAM", MessageText: text, ParseMode: mode, Recipients: ids(cs), BotID: &botID})
		if err != nil {
			t.Fatalf("Create %q: %v", text, err)
		}
		return bc
	}
	texts := func() map[int64]string {
		out := map[int64]string{}
		for _, m := range e.emu.Sent(b.emuID) {
			out[m.ChatID] = m.Text
		}
		return out
	}

	h := create("Hi <b>{first_name|there}</b> from {attributes.city|nowhere} ({attributes.points}, vip={attributes.vip}) {{literal}}", "HTML", ann, nameless, html)
	e.runToEnd(h.ID, true, 10)
	got := texts()
	want := map[int64]string{
		ann.TelegramChatID:      "Hi <b>Ann</b> from Paris (42, vip=true) {literal}",
		nameless.TelegramChatID: "Hi <b>there</b> from nowhere (, vip=) {literal}",
		html.TelegramChatID:     "Hi <b>&lt;b&gt;Bob &amp; co&lt;/b&gt;</b> from A&lt;B (, vip=) {literal}",
	}
	for chat, w := range want {
		if got[chat] != w {
			t.Errorf("chat %d got %q, want %q", chat, got[chat], w)
		}
	}

	m := create(`*{first_name|friend}* \{{x\}} @{username|anon}`, "MarkdownV2", md, ann)
	e.runToEnd(m.ID, false, 20)
	got = texts()
	if w := `*a\_b\.c\!* \{x\} @anon`; got[md.TelegramChatID] != w {
		t.Errorf("MarkdownV2 got %q, want %q", got[md.TelegramChatID], w)
	}
	if w := `*Ann* \{x\} @ann`; got[ann.TelegramChatID] != w {
		t.Errorf("MarkdownV2 got %q, want %q", got[ann.TelegramChatID], w)
	}

	// Without variables nothing is read per recipient and {{ still means '{'.
	p := create("Plain {{text}}", "", ann)
	e.runToEnd(p.ID, false, 20)
	if got := texts()[ann.TelegramChatID]; got != "Plain {text}" {
		t.Errorf("plain got %q", got)
	}
	// A broadcast created before content existed (content NULL) sends its text as it is.
	l := create("x", "", nameless)
	if _, err := e.db.NewRaw("UPDATE broadcasts SET content = NULL, message_text = 'Legacy {first_name} {{' WHERE id = ?", l.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.runToEnd(l.ID, false, 20)
	if got := texts()[nameless.TelegramChatID]; got != "Legacy {first_name} {{" {
		t.Errorf("legacy got %q", got)
	}
	if _, c := e.get(b, m.ID); c.Sent != 2 || c.Failed != 0 {
		t.Fatalf("counts %+v", c)
	}
}

func TestService_Content_TooLongAfterVariables(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	botID := b.ID
	short := e.person(b, "Ann", "", "", `{"bio":"short"}`)
	long := e.person(b, "Bob", "", "", `{"bio":"`+strings.Repeat("x", 1000)+`"}`)
	bc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "v", Platform: "TELEGRAM",
		MessageText: strings.Repeat("y", 100) + " {attributes.bio}", Recipients: ids([]contacts.Contact{short, long}), BotID: &botID,
		Content: telegram.Content{Photo: "https://example.com/p.jpg"}})
	if err != nil {
		t.Fatal(err)
	}
	e.runToEnd(bc.ID, true, 10)
	if _, c := e.get(b, bc.ID); c.Sent != 1 || c.Failed != 1 || c.Total != 2 {
		t.Fatalf("counts %+v", c)
	}
	r := e.recipientOf(bc.ID, long.TelegramChatID)
	if r.Status != RecipientFailed || !strings.Contains(r.Error, "caption is 1101 characters after variables; at most 1024") || r.Attempts != 0 {
		t.Fatalf("long recipient %+v", r)
	}
	if n := len(e.emu.Calls(b.emuID, "sendPhoto")); n != 1 {
		t.Fatalf("sendPhoto calls = %d, want 1 (none for the over-long caption)", n)
	}
	if sent := e.emu.SentTo(b.emuID, short.TelegramChatID); len(sent) != 1 {
		t.Fatalf("short recipient got %d messages", len(sent))
	}
}

func TestService_Content_Validation(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	c := e.contact(b)
	botID := b.ID
	row := func(n int) []telegram.InlineKeyboardButton {
		out := make([]telegram.InlineKeyboardButton, n)
		for i := range out {
			out[i] = telegram.InlineKeyboardButton{Text: "b" + strconv.Itoa(i), CallbackData: "d"}
		}
		return out
	}
	kb := func(rows ...[]telegram.InlineKeyboardButton) *telegram.InlineKeyboardMarkup {
		return &telegram.InlineKeyboardMarkup{InlineKeyboard: rows}
	}
	many := kb()
	for range 12 {
		many.InlineKeyboard = append(many.InlineKeyboard, row(8))
	}
	cases := []struct {
		name      string
		text      string
		mode      string
		content   telegram.Content
		field     string
		position  int // -1: not checked
		variable  string
		msgSubstr string
	}{
		{"unknown variable", "Hello {first_name}, your {frist_name}", "", telegram.Content{}, "message_text", 25, "frist_name", `unknown variable "frist_name"`},
		{"unclosed brace", "Hello {first_name", "", telegram.Content{}, "message_text", 6, "", "not closed"},
		{"bad attribute key", "Hi {attributes.a-b}", "", telegram.Content{}, "message_text", 3, "attributes.a-b", "unknown variable"},
		{"markdown after variable", "Hi {first_name}.", "MarkdownV2", telegram.Content{}, "message_text", 15, "", "reserved"},
		{"html in default", "Hi {first_name|<i>there}", "HTML", telegram.Content{}, "message_text", 3, "", "can't be parsed"},
		{"caption too long", strings.Repeat("a", 1025), "", telegram.Content{Photo: "https://example.com/a.png"}, "message_text", -1, "", "1024"},
		{"text too long", strings.Repeat("a", 4097), "", telegram.Content{}, "message_text", -1, "", "4096"},
		{"photo and document", "x", "", telegram.Content{Photo: "https://example.com/a.png", Document: "https://example.com/a.pdf"}, "document", -1, "", "at most one"},
		{"photo not a URL", "x", "", telegram.Content{Photo: "ftp://example.com/a.png"}, "photo", -1, "", "http(s) URL"},
		{"photo bad file_id", "x", "", telegram.Content{Photo: "not a file id"}, "photo", -1, "", "file_id"},
		{"9 buttons in a row", "x", "", telegram.Content{ReplyMarkup: kb(row(1), row(9))}, "reply_markup.inline_keyboard[1]", -1, "", "at most 8"},
		{"101 buttons", "x", "", telegram.Content{ReplyMarkup: func() *telegram.InlineKeyboardMarkup {
			k := *many
			k.InlineKeyboard = append(append([][]telegram.InlineKeyboardButton(nil), k.InlineKeyboard...), row(5))
			return &k
		}()}, "reply_markup.inline_keyboard", -1, "", "more than 100"},
		{"callback_data too long", "x", "", telegram.Content{ReplyMarkup: kb(row(1), []telegram.InlineKeyboardButton{{Text: "t", CallbackData: strings.Repeat("é", 33)}})}, "reply_markup.inline_keyboard[1][0].callback_data", -1, "", "1-64 bytes"},
		{"url and callback", "x", "", telegram.Content{ReplyMarkup: kb([]telegram.InlineKeyboardButton{{Text: "t", URL: "https://a.b", CallbackData: "d"}})}, "reply_markup.inline_keyboard[0][0]", -1, "", "exactly one"},
		{"neither url nor callback", "x", "", telegram.Content{ReplyMarkup: kb([]telegram.InlineKeyboardButton{{Text: "t"}})}, "reply_markup.inline_keyboard[0][0]", -1, "", "exactly one"},
		{"button url scheme", "x", "", telegram.Content{ReplyMarkup: kb([]telegram.InlineKeyboardButton{{Text: "t", URL: "javascript:alert(1)"}})}, "reply_markup.inline_keyboard[0][0].url", -1, "", "tg://"},
		{"empty button text", "x", "", telegram.Content{ReplyMarkup: kb([]telegram.InlineKeyboardButton{{Text: " ", URL: "https://a.b"}})}, "reply_markup.inline_keyboard[0][0].text", -1, "", "required"},
		{"empty row", "x", "", telegram.Content{ReplyMarkup: kb(row(1), nil)}, "reply_markup.inline_keyboard[1]", -1, "", "at least one"},
		{"empty text without media", "", "", telegram.Content{}, "message_text", -1, "", "required"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "v", Platform: "TELEGRAM", MessageText: tc.text, ParseMode: tc.mode,
				Recipients: ids([]contacts.Contact{c}), BotID: &botID, Content: tc.content})
			d := details(t, err)
			if d["field"] != tc.field {
				t.Errorf("field = %v, want %q (%v)", d["field"], tc.field, err)
			}
			if tc.position >= 0 && d["position"] != tc.position {
				t.Errorf("position = %v, want %d (%v)", d["position"], tc.position, err)
			}
			if tc.variable != "" && d["variable"] != tc.variable {
				t.Errorf("variable = %v, want %q", d["variable"], tc.variable)
			}
			if !strings.Contains(err.Error(), tc.msgSubstr) {
				t.Errorf("error %q does not contain %q", err.Error(), tc.msgSubstr)
			}
		})
	}
	// 100 buttons (8 per row) and a caption of exactly 1024 are fine.
	if _, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "v", Platform: "TELEGRAM", MessageText: strings.Repeat("a", 1024),
		Recipients: ids([]contacts.Contact{c}), BotID: &botID,
		Content: telegram.Content{Photo: "https://example.com/a.png", ReplyMarkup: func() *telegram.InlineKeyboardMarkup {
			k := *many
			k.InlineKeyboard = append(append([][]telegram.InlineKeyboardButton(nil), k.InlineKeyboard...), row(4))
			return &k
		}()}}); err != nil {
		t.Fatalf("100 buttons: %v", err)
	}
}
