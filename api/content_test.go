package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestMessages_Content sends POST /messages/ with a document, a caption with a variable,
// disable_notification, protect_content and a keyboard: the answer and GET /messages/{id}/
// show the options, and tgemu receives sendDocument with all of them and the caption
// rendered for the contact.
func TestMessages_Content(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("Acme")
	bot, info := te.newBot(key, "Bot")
	if err := te.emu.AddUser(info.ID, tgemu.User{ID: 777, FirstName: "Ann"}); err != nil {
		t.Fatal(err)
	}
	contact := te.newContact(tid, bot.BotAppID, 777) // first_name "Ann"
	body := map[string]any{
		"contact_id": contact.ID, "text": "Your <b>invoice</b>, {first_name|friend} {{#1}}", "parse_mode": "html",
		"document": "https://example.com/files/invoice.pdf", "disable_notification": true, "protect_content": true,
		"reply_markup": map[string]any{"inline_keyboard": []any{[]any{map[string]any{"text": "Pay", "url": "https://example.com/pay"}}}},
	}
	r := te.do(http.MethodPost, "/messages/", key, body)
	mustStatus(t, r, http.StatusAccepted)
	var m messageResponse
	r.decode(t, &m)
	if m.Text != "Your <b>invoice</b>, Ann {#1}" || m.ParseMode != "HTML" || m.Document != "https://example.com/files/invoice.pdf" ||
		!m.DisableNotification || !m.ProtectContent || m.ReplyMarkup == nil || m.ReplyMarkup.InlineKeyboard[0][0].URL != "https://example.com/pay" {
		t.Fatalf("created %s", r.Body)
	}
	task, err := telegram.NewSendTask(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := te.tg.HandleSend(context.Background(), task); err != nil {
		t.Fatalf("HandleSend: %v", err)
	}
	sent := te.emu.SentTo(info.ID, 777)
	if len(sent) != 1 {
		t.Fatalf("sent %d messages", len(sent))
	}
	s := sent[0]
	if s.Method != "sendDocument" || s.Document != "https://example.com/files/invoice.pdf" || s.Text != "Your <b>invoice</b>, Ann {#1}" ||
		s.ParseMode != "HTML" || !s.DisableNotification || !s.ProtectContent || !strings.Contains(s.ReplyMarkup, `"url":"https://example.com/pay"`) {
		t.Fatalf("tgemu got %+v", s)
	}
	r = te.do(http.MethodGet, "/messages/"+m.ID.String()+"/", key, nil)
	mustStatus(t, r, http.StatusOK)
	var got messageResponse
	r.decode(t, &got)
	if got.Status != "sent" || got.Document != m.Document || !got.DisableNotification || !got.ProtectContent || got.ReplyMarkup == nil {
		t.Fatalf("GET %s", r.Body)
	}

	// A plain message answers no content fields but the two flags (false).
	r = te.do(http.MethodPost, "/messages/", key, map[string]any{"contact_id": contact.ID, "text": "hi", "link_preview_options": map[string]any{"is_disabled": true}})
	mustStatus(t, r, http.StatusAccepted)
	var raw map[string]any
	r.decode(t, &raw)
	if _, has := raw["photo"]; has || raw["link_preview_options"] == nil {
		t.Fatalf("plain message answer %s", r.Body)
	}

	// The same rules as broadcasts: an unknown variable, a caption too long.
	for _, tc := range []struct {
		body  map[string]any
		field string
	}{
		{map[string]any{"contact_id": contact.ID, "text": "Hi {firstname}"}, "text"},
		{map[string]any{"contact_id": contact.ID, "text": strings.Repeat("a", 1025), "photo": "https://example.com/a.jpg"}, "text"},
		{map[string]any{"contact_id": contact.ID, "text": "x", "reply_markup": map[string]any{"inline_keyboard": []any{[]any{map[string]any{"text": "t", "callback_data": strings.Repeat("d", 65)}}}}}, "reply_markup.inline_keyboard[0][0].callback_data"},
	} {
		r := te.do(http.MethodPost, "/messages/", key, tc.body)
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
			t.Fatalf("status %d: %s", r.Code, r.Body)
		}
		var env struct {
			Error struct {
				Details map[string]any `json:"details"`
			} `json:"error"`
		}
		r.decode(t, &env)
		if env.Error.Details["field"] != tc.field {
			t.Errorf("field %v, want %s", env.Error.Details["field"], tc.field)
		}
	}
}

// TestBroadcast_ContentHTTP creates a broadcast with a photo, a keyboard and a variable
// through the API: GET /broadcast/{id}/ returns every option; an unknown variable and a
// 9-button row are 422 naming the field (and the position).
func TestBroadcast_ContentHTTP(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("Acme")
	bot, _ := te.newBot(key, "Bot")
	contact := te.newContact(tid, bot.BotAppID, 777)
	kb := map[string]any{"inline_keyboard": []any{[]any{
		map[string]any{"text": "Shop", "url": "https://example.com"}, map[string]any{"text": "No", "callback_data": "no"},
	}}}
	body := map[string]any{
		"name": "sale", "platform": "TELEGRAM", "message_text": "Hi {first_name|there}", "recipients": []any{contact.ID},
		"photo": "AgACAgIAAxkBAAIBY2ZkPhotoFileId", "reply_markup": kb, "protect_content": true,
		"link_preview_options": map[string]any{"is_disabled": true},
	}
	r := te.do(http.MethodPost, "/broadcast/", key, body)
	mustStatus(t, r, http.StatusAccepted)
	var created broadcastResponse
	r.decode(t, &created)
	r = te.do(http.MethodGet, "/broadcast/"+created.ID.String()+"/", key, nil)
	mustStatus(t, r, http.StatusOK)
	var got broadcastResponse
	r.decode(t, &got)
	var kbStruct telegram.InlineKeyboardMarkup
	raw, _ := json.Marshal(kb)
	if err := json.Unmarshal(raw, &kbStruct); err != nil {
		t.Fatal(err)
	}
	wantKB, _ := json.Marshal(kbStruct)
	gotKB, _ := json.Marshal(got.ReplyMarkup)
	if got.Photo != "AgACAgIAAxkBAAIBY2ZkPhotoFileId" || !got.ProtectContent || got.DisableNotification || string(gotKB) != string(wantKB) ||
		got.LinkPreviewOptions == nil || !got.LinkPreviewOptions.IsDisabled || got.MessageText != "Hi {first_name|there}" {
		t.Fatalf("GET %s", r.Body)
	}

	for _, tc := range []struct {
		patch    map[string]any
		field    string
		position float64
	}{
		{map[string]any{"message_text": "Hi {first_name}, {plan}"}, "message_text", 17},
		{map[string]any{"reply_markup": map[string]any{"inline_keyboard": []any{[]any{
			map[string]any{"text": "1", "url": "https://a.b"}, map[string]any{"text": "2", "url": "https://a.b"}, map[string]any{"text": "3", "url": "https://a.b"},
			map[string]any{"text": "4", "url": "https://a.b"}, map[string]any{"text": "5", "url": "https://a.b"}, map[string]any{"text": "6", "url": "https://a.b"},
			map[string]any{"text": "7", "url": "https://a.b"}, map[string]any{"text": "8", "url": "https://a.b"}, map[string]any{"text": "9", "url": "https://a.b"},
		}}}}, "reply_markup.inline_keyboard[0]", -1},
	} {
		b := map[string]any{}
		for k, v := range body {
			b[k] = v
		}
		for k, v := range tc.patch {
			b[k] = v
		}
		r := te.do(http.MethodPost, "/broadcast/", key, b)
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
			t.Fatalf("status %d: %s", r.Code, r.Body)
		}
		var env struct {
			Error struct {
				Details map[string]any `json:"details"`
			} `json:"error"`
		}
		r.decode(t, &env)
		if env.Error.Details["field"] != tc.field || (tc.position >= 0 && env.Error.Details["position"] != tc.position) {
			t.Errorf("details %v, want field %s position %v", env.Error.Details, tc.field, tc.position)
		}
	}
}
