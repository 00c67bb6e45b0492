package api

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/botfleet/botfleet/contacts"
)

// TestMessages_Addressing: POST /messages/ names the recipient by external_id or
// @username and the bot by bot_name; the message is queued to the right contact and bot.
func TestMessages_Addressing(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("A")
	tidB, keyB := te.newTenant("B")
	pay, _ := te.newBot(key, "Pay")
	alerts, _ := te.newBot(key, "Alerts")
	ctx := context.Background()
	ann, err := te.contacts.UpsertFromTelegram(ctx, te.db, tid, pay.BotAppID,
		contacts.Identity{ChatID: 701, UserID: 701, Username: "AnnTg", FirstName: "Ann"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	bo := te.newContact(tid, alerts.BotAppID, 702)
	mustStatus(t, te.do(http.MethodPatch, "/contacts/"+ann.ID.String()+"/", key, map[string]any{"external_id": "acct-7"}), http.StatusOK)
	botB, _ := te.newBot(keyB, "Pay")
	te.newContact(tidB, botB.BotAppID, 703)

	send := func(k string, body map[string]any) response {
		body["text"] = "Your code is ready"
		return te.do(http.MethodPost, "/messages/", k, body)
	}
	var m messageResponse
	for name, body := range map[string]map[string]any{
		"external_id + bot_name": {"bot_name": "Pay", "external_id": "acct-7"},
		"@username + bot_app_id": {"bot_app_id": pay.BotAppID, "username": "@annTG"},
		"username without @":     {"bot_name": "Pay", "username": "anntg"},
		"contact_id + bot_name":  {"bot_name": "Pay", "contact_id": ann.ID},
	} {
		r := send(key, body)
		mustStatus(t, r, http.StatusAccepted)
		r.decode(t, &m)
		if m.ContactID == nil || *m.ContactID != ann.ID || m.BotAppID != pay.BotAppID || m.ChatID != 701 {
			t.Errorf("%s: queued %s, want Ann (701) via Pay", name, r.Body)
		}
	}
	r := send(key, map[string]any{"bot_name": "Alerts", "contact_id": bo.ID})
	mustStatus(t, r, http.StatusAccepted)

	for name, c := range map[string]struct {
		key    string
		body   map[string]any
		status int
		code   string
	}{
		"unknown external_id":       {key, map[string]any{"bot_name": "Pay", "external_id": "nope"}, 404, "contact_not_found"},
		"another tenant's external": {keyB, map[string]any{"bot_name": "Pay", "external_id": "acct-7"}, 404, "contact_not_found"},
		"username of another bot":   {key, map[string]any{"bot_name": "Alerts", "username": "AnnTg"}, 404, "contact_not_found"},
		"unknown bot_name":          {key, map[string]any{"bot_name": "Nope", "contact_id": ann.ID}, 404, "bot_not_found"},
		"bot_name and bot_app_id":   {key, map[string]any{"bot_name": "Pay", "bot_app_id": pay.BotAppID, "contact_id": ann.ID}, 422, "invalid_field"},
		"two recipients":            {key, map[string]any{"bot_name": "Pay", "contact_id": ann.ID, "external_id": "acct-7"}, 422, "invalid_field"},
	} {
		r := send(c.key, c.body)
		if r.Code != c.status || r.errorCode(t) != c.code {
			t.Errorf("%s: %d %s, want %d %s", name, r.Code, r.Body, c.status, c.code)
		}
	}
	// Two live bots with one name: ambiguous.
	te.newBot(key, "Pay")
	if r := send(key, map[string]any{"bot_name": "Pay", "external_id": "acct-7"}); r.Code != http.StatusConflict || r.errorCode(t) != "bot_name_ambiguous" {
		t.Errorf("ambiguous bot_name: %d %s", r.Code, r.Body)
	}
}
