package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/botfleet/botfleet/telegram/tgemu"
)

// errorField returns details.field of an error answer.
func errorField(t *testing.T, r response) string {
	t.Helper()
	var env struct {
		Error struct {
			Details struct {
				Field string `json:"field"`
			} `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &env)
	return env.Error.Details.Field
}

// TestBotHealth_API: GET .../health/ healthy, degraded by delivery errors, failing after a
// token revocation (still 200); drift repaired by POST .../sync/; the last health in GET
// .../{id}/; no token or secret in any answer.
func TestBotHealth_API(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("acme")
	bot, info := te.newBot(key, "Support")
	base := "/telegram/v1/bots/" + bot.BotAppID.String()
	secret := te.emu.WebhookInfo(info.ID).SecretToken

	var h healthResponse
	r := te.do(http.MethodGet, base+"/health/", key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &h)
	if h.Verdict != "healthy" || len(h.Reasons) != 0 || h.Identity == nil || h.Identity.ID != info.ID || !h.Webhook.URLMatches ||
		h.Commands.Count != 3 || h.Webhook.LastErrorDate != nil {
		t.Fatalf("healthy: %s", r.Body)
	}
	for _, s := range []string{info.Token, secret} {
		if strings.Contains(string(r.Body), s) {
			t.Fatalf("the answer shows a secret: %s", r.Body)
		}
	}
	var b botResponse
	te.do(http.MethodGet, base+"/", key, nil).decode(t, &b)
	if b.Health == nil || b.Health.Verdict != "healthy" {
		t.Fatalf("GET bot health: %+v", b.Health)
	}

	// The webhook (http://127.0.0.1:1/...) answers nothing: delivery errors.
	if _, err := te.emu.SendText(info.ID, tgemu.User{ID: 9, FirstName: "Eve"}, "hi"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for te.emu.WebhookInfo(info.ID).LastErrorDate == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	r = te.do(http.MethodGet, base+"/health", key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &h)
	if h.Verdict != "degraded" || len(h.Reasons) != 1 || h.Reasons[0].Code != "webhook_delivery_errors" || h.Webhook.LastErrorDate == nil ||
		h.Webhook.PendingUpdateCount != 1 {
		t.Fatalf("degraded: %s", r.Body)
	}

	// Drift: someone set another webhook by hand; sync registers ours again.
	if _, err := te.emu.SetWebhookByHand(info.ID, "https://elsewhere.example/hook"); err != nil {
		t.Fatal(err)
	}
	r = te.do(http.MethodGet, base+"/health/", key, nil)
	r.decode(t, &h)
	if h.Verdict != "failing" || h.Reasons[0].Code != "webhook_url_mismatch" || h.Webhook.URLMatches {
		t.Fatalf("drift: %s", r.Body)
	}
	r = te.do(http.MethodPost, base+"/sync/", key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &h)
	if !h.WebhookRepaired || !h.Webhook.URLMatches || te.emu.WebhookInfo(info.ID).URL != bot.WebhookURL {
		t.Fatalf("sync: %s", r.Body)
	}
	te.do(http.MethodGet, base+"/", key, nil).decode(t, &b)
	if b.Health == nil || b.Health.WebhookRepairedAt == nil || b.WebhookStatus != "active" {
		t.Fatalf("GET bot after sync: %+v", b)
	}

	// Token revoked in @BotFather: failing, still 200.
	if _, err := te.emu.RevokeBotToken(info.ID); err != nil {
		t.Fatal(err)
	}
	r = te.do(http.MethodGet, base+"/health/", key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &h)
	if h.Verdict != "failing" || h.Reasons[0].Code != "token_rejected" || h.Identity != nil || h.Webhook != nil {
		t.Fatalf("revoked: %s", r.Body)
	}

	// Unknown bot, no key.
	if r := te.do(http.MethodGet, "/telegram/v1/bots/6f1c2b7e-1111-4c4c-8888-000000000000/health/", key, nil); r.Code != http.StatusNotFound || r.errorCode(t) != "bot_not_found" {
		t.Fatalf("unknown bot: %d %s", r.Code, r.Body)
	}
	mustStatus(t, te.do(http.MethodPost, base+"/sync/", "", nil), http.StatusUnauthorized)
	te.assertNotLogged(key, info.Token, secret)
}

// TestBotCommands_API: GET/PUT .../commands/ with Telegram's rules and per-language lists.
func TestBotCommands_API(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("acme")
	bot, info := te.newBot(key, "Support")
	p := "/telegram/v1/bots/" + bot.BotAppID.String() + "/commands/"

	var l commandsResponse
	r := te.do(http.MethodGet, p, key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &l)
	if l.Custom || len(l.Commands) != 3 || l.Commands[0].Command != "start" || l.UpdatedAt != nil {
		t.Fatalf("default: %s", r.Body)
	}

	cmd := func(c, d string) map[string]string { return map[string]string{"command": c, "description": d} }
	for _, tc := range []struct {
		name   string
		path   string
		body   any
		status int
		code   string
		field  string
	}{
		{"uppercase command", p, map[string]any{"commands": []any{cmd("start", "Go"), cmd("start", "Again"), cmd("ok", "x"), cmd("Help", "Help")}}, 422, "invalid_field", "commands[1].command"},
		{"bad 4th command", p, map[string]any{"commands": []any{cmd("start", "Go"), cmd("a", "x"), cmd("b", "y"), cmd("no-dash", "z")}}, 422, "invalid_field", "commands[3].command"},
		{"long description", p, map[string]any{"commands": []any{cmd("start", strings.Repeat("d", 257))}}, 422, "invalid_field", "commands[0].description"},
		{"missing commands", p, map[string]any{"language_code": "de"}, 422, "invalid_field", "commands"},
		{"bad language", p, map[string]any{"commands": []any{}, "language_code": "german"}, 422, "invalid_field", "language_code"},
		{"query and body differ", p + "?language_code=fr", map[string]any{"commands": []any{}, "language_code": "de"}, 422, "invalid_field", "language_code"},
		{"unknown field", p, map[string]any{"commands": []any{}, "scope": "chat"}, 400, "unknown_field", "scope"},
		{"unknown field in a command", p, map[string]any{"commands": []any{map[string]string{"command": "a", "description": "b", "emoji": "x"}}}, 400, "unknown_field", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := te.do(http.MethodPut, tc.path, key, tc.body)
			if r.Code != tc.status || r.errorCode(t) != tc.code {
				t.Fatalf("%d %s", r.Code, r.Body)
			}
			if tc.field != "" && errorField(t, r) != tc.field {
				t.Fatalf("field: %s", r.Body)
			}
		})
	}
	if r := te.do(http.MethodGet, p+"?language_code=EN", key, nil); r.Code != 422 || errorField(t, r) != "language_code" {
		t.Fatalf("GET bad language: %d %s", r.Code, r.Body)
	}
	if n := len(te.emu.Commands(info.ID)); n != 3 {
		t.Fatalf("a rejected list reached Telegram: %d", n)
	}

	// Per language: the query parameter or the body field.
	de := []any{cmd("start", "Los geht's"), cmd("hilfe", "Hilfe anzeigen")}
	r = te.do(http.MethodPut, p+"?language_code=de", key, map[string]any{"commands": de})
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &l)
	if l.LanguageCode != "de" || !l.Custom || len(l.Commands) != 2 || l.UpdatedAt == nil {
		t.Fatalf("PUT de: %s", r.Body)
	}
	r = te.do(http.MethodPut, p, key, map[string]any{"commands": []any{cmd("start", "Start"), cmd("help", "Help"), cmd("stop", "Stop"), cmd("status", "Your status")}})
	mustStatus(t, r, http.StatusOK)
	if n := len(te.emu.Commands(info.ID)); n != 4 {
		t.Fatalf("default list at Telegram: %d", n)
	}
	r = te.do(http.MethodGet, p+"?language_code=de", key, nil)
	r.decode(t, &l)
	raw, _ := json.Marshal(l.Commands)
	if !strings.Contains(string(raw), "hilfe") || len(l.Commands) != 2 {
		t.Fatalf("GET de: %s", r.Body)
	}
	// The health sees the custom default list as in sync.
	var h healthResponse
	te.do(http.MethodGet, "/telegram/v1/bots/"+bot.BotAppID.String()+"/health/", key, nil).decode(t, &h)
	if h.Commands == nil || !h.Commands.InSync || h.Commands.Count != 4 || h.Verdict != "healthy" {
		t.Fatalf("health after PUT: %+v %+v", h.Commands, h.Reasons)
	}
}
