package tgemu

import (
	"strings"
	"testing"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// TestEditMessageReplyMarkupGotgbot: the keyboard of a sent message is replaced (and
// recorded), an unknown message and an unchanged keyboard are Telegram's 400s, and an empty
// keyboard removes it.
func TestEditMessageReplyMarkupGotgbot(t *testing.T) {
	s := NewTest(t, Options{PerChatInterval: -1})
	info := s.CreateBot("edit_bot", "Edit")
	b := newGotBot(t, s, info.Token)
	alice := User{ID: 1001, FirstName: "Alice"}
	if _, err := s.SendCommand(info.ID, alice, "/start"); err != nil {
		t.Fatal(err)
	}
	kb := func(text string) gotgbot.InlineKeyboardMarkup {
		return gotgbot.InlineKeyboardMarkup{InlineKeyboard: [][]gotgbot.InlineKeyboardButton{{{Text: text, CallbackData: "x"}}}}
	}
	msg, err := b.SendMessage(alice.ID, "settings", &gotgbot.SendMessageOpts{ReplyMarkup: kb("on")})
	if err != nil {
		t.Fatal(err)
	}
	edit := func(id int64, k gotgbot.InlineKeyboardMarkup) error {
		_, _, err := b.EditMessageReplyMarkup(&gotgbot.EditMessageReplyMarkupOpts{ChatId: alice.ID, MessageId: id, ReplyMarkup: k})
		return err
	}
	if err := edit(msg.MessageId, kb("off")); err != nil {
		t.Fatalf("edit: %v", err)
	}
	if got := s.SentTo(info.ID, alice.ID)[0].ReplyMarkup; !strings.Contains(got, `"off"`) {
		t.Fatalf("recorded markup = %s", got)
	}
	if te := asTelegramError(t, edit(msg.MessageId, kb("off"))); te.Code != 400 || !strings.Contains(te.Description, "message is not modified") {
		t.Fatalf("same markup: %+v", te)
	}
	if te := asTelegramError(t, edit(msg.MessageId+100, kb("x"))); te.Code != 400 || te.Description != "Bad Request: message to edit not found" {
		t.Fatalf("unknown message: %+v", te)
	}
	if err := edit(msg.MessageId, gotgbot.InlineKeyboardMarkup{InlineKeyboard: [][]gotgbot.InlineKeyboardButton{}}); err != nil {
		t.Fatalf("remove keyboard: %v", err)
	}
	if got := s.SentTo(info.ID, alice.ID)[0].ReplyMarkup; got != "" {
		t.Fatalf("markup after removal = %q", got)
	}
}
