package tgemu

import (
	"strings"
	"testing"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// TestSendPhotoDocumentGotgbot sends a photo by URL and a document by file_id through
// gotgbot (multipart): the answers carry photo sizes / a document and the caption, the sent
// log records the method and every option, the per-chat limit counts them like sendMessage,
// and a missing photo or a caption over 1024 characters is a 400.
func TestSendPhotoDocumentGotgbot(t *testing.T) {
	s := NewTest(t, Options{})
	info := s.CreateBot("media_bot", "Media")
	b := newGotBot(t, s, info.Token)
	u := User{ID: 4242, FirstName: "Mo"}
	if err := s.AddUser(info.ID, u); err != nil {
		t.Fatal(err)
	}
	kb := gotgbot.InlineKeyboardMarkup{InlineKeyboard: [][]gotgbot.InlineKeyboardButton{{{Text: "Go", Url: "https://example.com"}, {Text: "Cb", CallbackData: "x"}}}}
	m, err := b.SendPhoto(u.ID, gotgbot.InputFileByURL("https://example.com/cat.jpg"), &gotgbot.SendPhotoOpts{
		Caption: "<b>Cat</b> &amp; dog", ParseMode: "HTML", DisableNotification: true, ProtectContent: true, AllowPaidBroadcast: true, ReplyMarkup: kb,
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Photo) != 2 || m.Photo[1].FileId == "" || m.Caption != "Cat & dog" || m.ReplyMarkup == nil || len(m.ReplyMarkup.InlineKeyboard[0]) != 2 {
		t.Fatalf("photo message %+v", m)
	}
	// Same chat within a second: the per-chat limit applies to media too.
	_, err = b.SendDocument(u.ID, gotgbot.InputFileByID("BQACAgIAAxkBAAIBY2Zk_file-id"), nil)
	if te := asTelegramError(t, err); te.Code != 429 {
		t.Fatalf("want 429, got %+v", te)
	}
	if v := s.Violations(info.ID); v.PerChat != 1 {
		t.Fatalf("violations %+v", v)
	}

	s2 := NewTest(t, Options{PerChatInterval: -1})
	info2 := s2.CreateBot("media_bot2", "Media")
	b2 := newGotBot(t, s2, info2.Token)
	if err := s2.AddUser(info2.ID, u); err != nil {
		t.Fatal(err)
	}
	d, err := b2.SendDocument(u.ID, gotgbot.InputFileByID("BQACAgIAAxkBAAIBY2Zk_file-id"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d.Document == nil || d.Document.FileId != "BQACAgIAAxkBAAIBY2Zk_file-id" || d.Caption != "" {
		t.Fatalf("document message %+v", d)
	}
	if _, err := b2.SendPhoto(u.ID, gotgbot.InputFileByURL("https://example.com/a.jpg"), &gotgbot.SendPhotoOpts{Caption: strings.Repeat("a", 1025)}); asTelegramError(t, err).Description != "Bad Request: message caption is too long" {
		t.Fatalf("long caption: %v", err)
	}
	if _, err := b2.SendPhoto(u.ID, gotgbot.InputFileByURL(""), nil); asTelegramError(t, err).Description != "Bad Request: there is no photo in the request" {
		t.Fatalf("no photo: %v", err)
	}

	sent := s.Sent(info.ID)
	if len(sent) != 1 {
		t.Fatalf("sent %d", len(sent))
	}
	p := sent[0]
	if p.Method != "sendPhoto" || p.Photo != "https://example.com/cat.jpg" || p.Text != "<b>Cat</b> &amp; dog" || p.ParseMode != "HTML" ||
		!p.DisableNotification || !p.ProtectContent || !p.AllowPaidBroadcast || !strings.Contains(p.ReplyMarkup, `"callback_data":"x"`) {
		t.Fatalf("sent photo %+v", p)
	}
	if d := s2.Sent(info2.ID)[0]; d.Method != "sendDocument" || d.Document != "BQACAgIAAxkBAAIBY2Zk_file-id" || d.DisableNotification || d.ReplyMarkup != "" {
		t.Fatalf("sent document %+v", d)
	}
}
