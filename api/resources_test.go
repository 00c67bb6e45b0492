package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram"
)

func TestBots(t *testing.T) {
	te := newEnv(t)
	_, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")

	bot, info := te.newBot(keyA, "Support")
	secretPart := info.Token[strings.Index(info.Token, ":")+1:]
	noToken := func(t *testing.T, r response) {
		t.Helper()
		if bytes.Contains(r.Body, []byte(secretPart)) {
			t.Fatalf("a response contains the bot token: %s", r.Body)
		}
		var m map[string]any
		if json.Unmarshal(r.Body, &m) == nil {
			for _, k := range []string{"bot_token", "token", "webhook_secret", "secret_token"} {
				if _, ok := m[k]; ok {
					t.Fatalf("a response has %q: %s", k, r.Body)
				}
			}
		}
	}

	t.Run("201", func(t *testing.T) {
		if bot.BotAppID == uuid.Nil || bot.Name != "Support" || bot.TelegramBotID != info.ID || bot.Username != info.Username ||
			!strings.Contains(bot.WebhookURL, "/telegram/v1/webhooks/"+bot.BotAppID.String()+"/") {
			t.Fatalf("%+v", bot)
		}
	})
	t.Run("422", func(t *testing.T) {
		for _, b := range []map[string]any{{"name": "x"}, {"name": "x", "bot_token": "  "}, {"bot_token": info.Token, "daily_limit": -1}} {
			r := te.do(http.MethodPost, "/telegram/v1/bots/", keyA, b)
			mustStatus(t, r, http.StatusUnprocessableEntity)
			noToken(t, r)
		}
	})
	t.Run("list get put", func(t *testing.T) {
		r := te.do(http.MethodGet, "/telegram/v1/bots/", keyA, nil)
		mustStatus(t, r, http.StatusOK)
		noToken(t, r)
		var page listPage[botResponse]
		r.decode(t, &page)
		if len(page.Items) != 1 || page.Items[0].BotAppID != bot.BotAppID {
			t.Fatalf("%s", r.Body)
		}
		r = te.do(http.MethodGet, "/telegram/v1/bots/"+bot.BotAppID.String(), keyA, nil)
		mustStatus(t, r, http.StatusOK)
		noToken(t, r)
		r = te.do(http.MethodPut, "/telegram/v1/bots/"+bot.BotAppID.String()+"/", keyA, map[string]any{"daily_limit": 500})
		mustStatus(t, r, http.StatusOK)
		noToken(t, r)
		var got botResponse
		r.decode(t, &got)
		if got.DailyLimit != 500 || got.Name != "Support" {
			t.Fatalf("%+v", got)
		}
		r = te.do(http.MethodPut, "/telegram/v1/bots/"+bot.BotAppID.String()+"/", keyA, map[string]any{"name": ""})
		mustStatus(t, r, http.StatusUnprocessableEntity)
	})
	t.Run("404 other tenant", func(t *testing.T) {
		p := "/telegram/v1/bots/" + bot.BotAppID.String() + "/"
		mustStatus(t, te.do(http.MethodGet, p, keyB, nil), http.StatusNotFound)
		mustStatus(t, te.do(http.MethodPut, p, keyB, map[string]any{"name": "mine"}), http.StatusNotFound)
		mustStatus(t, te.do(http.MethodDelete, p, keyB, nil), http.StatusNotFound)
		r := te.do(http.MethodGet, "/telegram/v1/bots/", keyB, nil)
		var page listPage[botResponse]
		r.decode(t, &page)
		if len(page.Items) != 0 {
			t.Fatalf("tenant B sees %s", r.Body)
		}
		mustStatus(t, te.do(http.MethodGet, p, keyA, nil), http.StatusOK)
	})
	t.Run("409 registered twice", func(t *testing.T) {
		r := te.do(http.MethodPost, "/telegram/v1/bots/", keyA, map[string]any{"name": "again", "bot_token": info.Token})
		mustStatus(t, r, http.StatusConflict)
		noToken(t, r)
	})
	t.Run("204 delete", func(t *testing.T) {
		other, _ := te.newBot(keyA, "Other")
		p := "/telegram/v1/bots/" + other.BotAppID.String() + "/"
		r := te.do(http.MethodDelete, p, keyA, nil)
		mustStatus(t, r, http.StatusNoContent)
		mustStatus(t, te.do(http.MethodGet, p, keyA, nil), http.StatusNotFound)
	})
	te.assertNotLogged(info.Token, secretPart, keyA, keyB)
}

func TestWebhook(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("A")

	t.Run("413", func(t *testing.T) {
		big := `{"update_id":1,"message":{"text":"` + strings.Repeat("x", DefaultBodyLimit) + `"}}`
		p := "/telegram/v1/webhooks/" + uuid.NewString() + "/"
		r := te.do(http.MethodPost, p, "", big)
		if r.Code != http.StatusRequestEntityTooLarge || r.errorCode(t) != "payload_too_large" {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
		// Without Content-Length (chunked): the limit applies while reading.
		req := request(t, http.MethodPost, p, "", nil)
		req.Body = io.NopCloser(strings.NewReader(big))
		req.ContentLength = -1
		r = te.serve(req)
		if r.Code != http.StatusRequestEntityTooLarge || r.errorCode(t) != "payload_too_large" {
			t.Fatalf("chunked: %d %s", r.Code, r.Body)
		}
	})

	bot, info := te.newBot(key, "Hooked")
	secret := te.emu.WebhookInfo(info.ID).SecretToken
	if secret == "" {
		t.Fatal("the emulator has no webhook secret for the bot")
	}
	hook := func(botID, secret string, update string) response {
		req := request(t, http.MethodPost, "/telegram/v1/webhooks/"+botID, "", update)
		if secret != "" {
			req.Header.Set(telegram.SecretHeader, secret)
		}
		return te.serve(req)
	}
	update := `{"update_id": 1001, "message": {"message_id": 1, "date": 1700000000, "chat": {"id": 42, "type": "private", "first_name": "Ann"}, "from": {"id": 42, "is_bot": false, "first_name": "Ann"}, "text": "hi"}}`

	t.Run("401 wrong secret", func(t *testing.T) {
		for _, s := range []string{"", "wrong", secret + "x"} {
			r := hook(bot.BotAppID.String(), s, update)
			if r.Code != http.StatusUnauthorized {
				t.Fatalf("secret %q: %d %s", s, r.Code, r.Body)
			}
		}
	})
	t.Run("404 unknown bot", func(t *testing.T) {
		mustStatus(t, hook(uuid.NewString(), secret, update), http.StatusNotFound)
		mustStatus(t, hook("not-a-uuid", secret, update), http.StatusNotFound)
	})
	t.Run("400 data PostgreSQL refuses", func(t *testing.T) {
		// jsonb cannot hold \u0000: a retry would fail the same way, so 400, nothing stored.
		r := hook(bot.BotAppID.String(), secret, `{"update_id": 1002, "message": {"text": "\u0000"}}`)
		if r.Code != http.StatusBadRequest || r.errorCode(t) != "malformed_request" {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
	})
	t.Run("200 stored once", func(t *testing.T) {
		for i := 0; i < 2; i++ { // a redelivery is accepted and stored once
			r := hook(bot.BotAppID.String(), secret, update)
			mustStatus(t, r, http.StatusOK)
			if strings.TrimSpace(string(r.Body)) != `{"ok":true}` {
				t.Fatalf("%s", r.Body)
			}
		}
		r := te.do(http.MethodGet, "/telegram/v1/webhook-events/?bot_app_id="+bot.BotAppID.String(), key, nil)
		mustStatus(t, r, http.StatusOK)
		var page listPage[struct {
			UpdateID   int64          `json:"update_id"`
			UpdateType string         `json:"update_type"`
			BotAppID   uuid.UUID      `json:"bot_app_id"`
			Payload    map[string]any `json:"payload"`
		}]
		r.decode(t, &page)
		if len(page.Items) != 1 || page.Items[0].UpdateID != 1001 || page.Items[0].BotAppID != bot.BotAppID ||
			page.Items[0].UpdateType != "message" || page.Items[0].Payload["message"] == nil {
			t.Fatalf("%s", r.Body)
		}
		_, keyB := te.newTenant("B")
		r = te.do(http.MethodGet, "/telegram/v1/webhook-events/", keyB, nil)
		if !strings.Contains(string(r.Body), `"items":[]`) {
			t.Fatalf("tenant B sees events: %s", r.Body)
		}
	})
	te.assertNotLogged(secret, info.Token)
}

func TestContacts(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)

	r := te.do(http.MethodGet, "/contacts/"+c.ID.String()+"/", keyA, nil)
	mustStatus(t, r, http.StatusOK)
	var got contactResponse
	r.decode(t, &got)
	if got.ID != c.ID || got.BotAppID != bot.BotAppID || got.TelegramChatID != 4242 || got.FirstName != "Ann" || got.LastSeenAt == nil {
		t.Fatalf("%s", r.Body)
	}
	r = te.do(http.MethodGet, "/contacts/?bot_app_id="+bot.BotAppID.String()+"&limit=1", keyA, nil)
	var page listPage[contactResponse]
	r.decode(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != c.ID {
		t.Fatalf("%s", r.Body)
	}

	r = te.do(http.MethodGet, "/contacts/"+c.ID.String()+"/", keyB, nil)
	if r.Code != http.StatusNotFound || r.errorCode(t) != "contact_not_found" {
		t.Fatalf("other tenant: %d %s", r.Code, r.Body)
	}
	r = te.do(http.MethodGet, "/contacts/", keyB, nil)
	if !strings.Contains(string(r.Body), `"items":[]`) {
		t.Fatalf("tenant B sees contacts: %s", r.Body)
	}
}

func TestMessages(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)

	t.Run("422", func(t *testing.T) {
		cases := []map[string]any{
			{"bot_app_id": "x", "contact_id": c.ID, "text": "hi"},
			{"bot_app_id": bot.BotAppID, "contact_id": "x", "text": "hi"},
			{"bot_app_id": bot.BotAppID, "text": "hi"},
			{"bot_app_id": bot.BotAppID, "contact_id": c.ID},
			{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": strings.Repeat("x", 4097)},
			{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": "hi", "parse_mode": "html5"},
		}
		for _, b := range cases {
			r := te.do(http.MethodPost, "/messages/", keyA, b)
			mustStatus(t, r, http.StatusUnprocessableEntity)
			r.errorCode(t)
		}
	})

	// Seeded through the contacts service so that the read path does not depend on sending.
	seeded := &contacts.Message{TenantID: tidA, BotID: bot.BotAppID, ContactID: &c.ID, ChatID: c.TelegramChatID, Text: "seed"}
	if err := te.contacts.CreateOutbound(t.Context(), te.db, seeded); err != nil {
		t.Fatal(err)
	}
	t.Run("404 other tenant", func(t *testing.T) {
		r := te.do(http.MethodGet, "/messages/"+seeded.ID.String()+"/", keyB, nil)
		if r.Code != http.StatusNotFound || r.errorCode(t) != "message_not_found" {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
		r = te.do(http.MethodGet, "/messages/"+seeded.ID.String(), keyA, nil)
		mustStatus(t, r, http.StatusOK)
		var got messageResponse
		r.decode(t, &got)
		if got.ID != seeded.ID || got.Status != "queued" || got.ChatID != 4242 || got.ContactID == nil || *got.ContactID != c.ID {
			t.Fatalf("%s", r.Body)
		}
		// Tenant B cannot send through A's bot to A's contact.
		r = te.do(http.MethodPost, "/messages/", keyB, map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": "hi"})
		if r.Code != http.StatusNotFound && r.Code != http.StatusUnprocessableEntity {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
	})
	t.Run("202", func(t *testing.T) {
		r := te.do(http.MethodPost, "/messages/", keyA, map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c.ID, "text": "<b>hi</b>", "parse_mode": "HTML"})
		mustStatus(t, r, http.StatusAccepted)
		var got messageResponse
		r.decode(t, &got)
		if got.ID == uuid.Nil || got.Status != "queued" || got.Text != "<b>hi</b>" || got.ParseMode != "HTML" || got.BotAppID != bot.BotAppID {
			t.Fatalf("%s", r.Body)
		}
		mustStatus(t, te.do(http.MethodGet, "/messages/"+got.ID.String()+"/", keyA, nil), http.StatusOK)
		mustStatus(t, te.do(http.MethodGet, "/messages/"+got.ID.String()+"/", keyB, nil), http.StatusNotFound)

		// bot_app_id may be omitted when the tenant has exactly one bot.
		r = te.do(http.MethodPost, "/messages", keyA, map[string]any{"contact_id": c.ID, "text": "hello"})
		mustStatus(t, r, http.StatusAccepted)
		r.decode(t, &got)
		if got.BotAppID != bot.BotAppID {
			t.Fatalf("%s", r.Body)
		}
	})
}

func TestBroadcasts(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	tidB, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	botB, _ := te.newBot(keyB, "BotB")
	c1 := te.newContact(tidA, bot.BotAppID, 1001)
	c2 := te.newContact(tidA, bot.BotAppID, 1002)
	foreign := te.newContact(tidB, botB.BotAppID, 2001)

	body := func(recipients ...any) map[string]any {
		return map[string]any{"name": "Spring sale", "platform": "TELEGRAM", "message_text": "hello", "recipients": recipients, "bot_app_id": bot.BotAppID}
	}

	t.Run("422", func(t *testing.T) {
		r := te.do(http.MethodPost, "/broadcast/", keyA, body("nope", c1.ID))
		mustStatus(t, r, http.StatusUnprocessableEntity)
		if !strings.Contains(string(r.Body), `"contact_ids":["nope"]`) {
			t.Fatalf("%s", r.Body)
		}
		// An id that is not the tenant's contact (here another tenant's) names nothing: 404.
		r = te.do(http.MethodPost, "/broadcast/", keyA, body(c1.ID, foreign.ID))
		mustStatus(t, r, http.StatusNotFound)
		if !strings.Contains(string(r.Body), foreign.ID.String()) || !strings.Contains(string(r.Body), `"details"`) {
			t.Fatalf("unknown recipient not named: %s", r.Body)
		}
		mustStatus(t, te.do(http.MethodPost, "/broadcast/", keyA, body()), http.StatusUnprocessableEntity)
		b := body(c1.ID)
		b["name"] = ""
		mustStatus(t, te.do(http.MethodPost, "/broadcast/", keyA, b), http.StatusUnprocessableEntity)
	})

	r := te.do(http.MethodPost, "/broadcast", keyA, body(c1.ID, c2.ID))
	mustStatus(t, r, http.StatusAccepted)
	var created broadcastResponse
	r.decode(t, &created)
	if created.ID == uuid.Nil || created.Total != 2 || created.BotAppID != bot.BotAppID || created.Name != "Spring sale" {
		t.Fatalf("%s", r.Body)
	}
	p := "/broadcast/" + created.ID.String() + "/"

	t.Run("get list", func(t *testing.T) {
		r := te.do(http.MethodGet, p, keyA, nil)
		mustStatus(t, r, http.StatusOK)
		r = te.do(http.MethodGet, "/broadcast/?limit=10", keyA, nil)
		mustStatus(t, r, http.StatusOK)
		var page listPage[broadcastResponse]
		r.decode(t, &page)
		if len(page.Items) != 1 || page.Items[0].ID != created.ID {
			t.Fatalf("%s", r.Body)
		}
	})
	t.Run("404 other tenant", func(t *testing.T) {
		for _, rq := range []struct{ m, p string }{{http.MethodGet, p}, {http.MethodPost, p + "cancel/"}} {
			r := te.do(rq.m, rq.p, keyB, nil)
			if r.Code != http.StatusNotFound || r.errorCode(t) != "broadcast_not_found" {
				t.Fatalf("%s %s: %d %s", rq.m, rq.p, r.Code, r.Body)
			}
		}
		r := te.do(http.MethodGet, "/broadcast/", keyB, nil)
		if !strings.Contains(string(r.Body), `"items":[]`) {
			t.Fatalf("tenant B sees broadcasts: %s", r.Body)
		}
		// B cannot broadcast through A's bot.
		mustStatus(t, te.do(http.MethodPost, "/broadcast/", keyB, body(foreign.ID)), http.StatusNotFound)
	})
	t.Run("cancel", func(t *testing.T) {
		r := te.do(http.MethodPost, p+"cancel", keyA, nil)
		mustStatus(t, r, http.StatusOK)
		var got broadcastResponse
		r.decode(t, &got)
		if got.Status != "cancelled" {
			t.Fatalf("%s", r.Body)
		}
	})
	t.Run("large body", func(t *testing.T) {
		// 30 000 ids is over 1 MiB: accepted by the 8 MiB limit of this route (then 404: unknown ids).
		ids := make([]string, 30000)
		for i := range ids {
			ids[i] = uuid.NewString()
		}
		b := body()
		b["recipients"] = ids
		raw, _ := json.Marshal(b)
		if len(raw) <= DefaultBodyLimit {
			t.Fatalf("body only %d bytes", len(raw))
		}
		r := te.do(http.MethodPost, "/broadcast/", keyA, raw)
		if r.Code != http.StatusNotFound {
			t.Fatalf("%d %s", r.Code, fmt.Sprintf("%.300s", r.Body))
		}
		over := append([]byte(`{"recipients":["`), bytes.Repeat([]byte("x"), BroadcastBodyLimit)...)
		over = append(over, `"]}`...)
		r = te.do(http.MethodPost, "/broadcast/", keyA, over)
		mustStatus(t, r, http.StatusRequestEntityTooLarge)
	})
}
