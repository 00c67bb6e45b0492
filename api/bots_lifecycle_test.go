package api

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestBotLifecycle covers token rotation, status and validation through the HTTP API (the
// failure paths of rotation are in telegram's TestService_RotateToken).
func TestBotLifecycle(t *testing.T) {
	te := newEnv(t)
	_, keyA := te.newTenant("A")
	bot, info := te.newBot(keyA, "Support")
	p := "/telegram/v1/bots/" + bot.BotAppID.String() + "/"
	wantCode := func(t *testing.T, r response, status int, code, field string) {
		t.Helper()
		mustStatus(t, r, status)
		if got := r.errorCode(t); got != code {
			t.Fatalf("code = %q, want %q: %s", got, code, r.Body)
		}
		if field != "" {
			var env struct {
				Error struct {
					Details map[string]any `json:"details"`
				} `json:"error"`
			}
			r.decode(t, &env)
			if env.Error.Details["field"] != field {
				t.Fatalf("details.field = %v, want %q: %s", env.Error.Details["field"], field, r.Body)
			}
		}
	}
	var tokens []string

	t.Run("GET shows status, webhook_error, token_rotated_at", func(t *testing.T) {
		var m map[string]any
		te.do(http.MethodGet, p, keyA, nil).decode(t, &m)
		if m["status"] != "active" || m["webhook_error"] != "" || m["token_rotated_at"] != nil {
			t.Fatalf("%v", m)
		}
	})
	t.Run("400 unknown field", func(t *testing.T) {
		wantCode(t, te.do(http.MethodPut, p, keyA, map[string]any{"bot_tokn": info.Token}), http.StatusBadRequest, "unknown_field", "bot_tokn")
		wantCode(t, te.do(http.MethodPost, "/telegram/v1/validate-token", keyA, map[string]any{"token": info.Token}), http.StatusBadRequest, "unknown_field", "token")
		wantCode(t, te.do(http.MethodPost, "/telegram/v1/bots/", keyA, map[string]any{"name": "x", "bot_token": info.Token, "status": "active"}), http.StatusBadRequest, "unknown_field", "status")
	})
	t.Run("200 rotate", func(t *testing.T) {
		newToken, err := te.emu.AddToken(info.ID)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, newToken)
		r := te.do(http.MethodPut, p, keyA, map[string]any{"bot_token": newToken, "name": "Support 2"})
		mustStatus(t, r, http.StatusOK)
		if strings.Contains(string(r.Body), newToken[strings.Index(newToken, ":")+1:]) {
			t.Fatalf("the response has the token: %s", r.Body)
		}
		var got botResponse
		r.decode(t, &got)
		if got.TokenRotatedAt == nil || got.Name != "Support 2" || got.Status != "active" || got.WebhookStatus != "active" {
			t.Fatalf("%+v", got)
		}
		// The old token is revoked: the bot still works through the new one.
		if err := te.emu.RevokeToken(info.Token); err != nil {
			t.Fatal(err)
		}
		var v botValidationResponse
		r = te.do(http.MethodPost, p+"validate", keyA, nil)
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &v)
		if !v.Valid || v.Identity == nil || v.Identity.TelegramBotID != info.ID || v.Identity.Username != info.Username {
			t.Fatalf("%s", r.Body)
		}
	})
	t.Run("422 rotate", func(t *testing.T) {
		other := te.emu.CreateBot("", "Other")
		wantCode(t, te.do(http.MethodPut, p, keyA, map[string]any{"bot_token": other.Token}), http.StatusUnprocessableEntity, "token_bot_mismatch", "bot_token")
		wantCode(t, te.do(http.MethodPut, p, keyA, map[string]any{"bot_token": "999999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}), http.StatusUnprocessableEntity, "invalid_bot_token", "bot_token")
		wantCode(t, te.do(http.MethodPut, p, keyA, map[string]any{"bot_token": "nope"}), http.StatusUnprocessableEntity, "invalid_field", "bot_token")
	})
	t.Run("status", func(t *testing.T) {
		wantCode(t, te.do(http.MethodPut, p, keyA, map[string]any{"status": "invalid_token"}), http.StatusUnprocessableEntity, "invalid_field", "status")
		wantCode(t, te.do(http.MethodPut, p, keyA, map[string]any{"status": "paused"}), http.StatusUnprocessableEntity, "invalid_field", "status")
		var got botResponse
		r := te.do(http.MethodPut, p, keyA, map[string]any{"status": "disabled"})
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &got)
		if got.Status != "disabled" {
			t.Fatalf("%+v", got)
		}
		r = te.do(http.MethodPut, p, keyA, map[string]any{"status": "active"})
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &got)
		if got.Status != "active" {
			t.Fatalf("%+v", got)
		}
	})
	t.Run("validate marks invalid_token", func(t *testing.T) {
		if _, err := te.emu.ReplaceToken(info.ID); err != nil { // @BotFather /revoke
			t.Fatal(err)
		}
		var v botValidationResponse
		r := te.do(http.MethodPost, p+"validate/", keyA, nil)
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &v)
		if v.Valid || v.Identity != nil || v.Bot.Status != "invalid_token" || !strings.Contains(v.Error, "401") {
			t.Fatalf("%s", r.Body)
		}
		wantCode(t, te.do(http.MethodPut, p, keyA, map[string]any{"status": "active"}), http.StatusConflict, "bot_token_invalid", "")
	})
	t.Run("validate-token", func(t *testing.T) {
		probe := te.emu.CreateBot("probe_bot", "Probe")
		tokens = append(tokens, probe.Token)
		var id botIdentityResponse
		r := te.do(http.MethodPost, "/telegram/v1/validate-token/", keyA, map[string]any{"bot_token": probe.Token})
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &id)
		if id.TelegramBotID != probe.ID || id.Username != "probe_bot" || !id.CanJoinGroups {
			t.Fatalf("%s", r.Body)
		}
		wantCode(t, te.do(http.MethodPost, "/telegram/v1/validate-token/", keyA, map[string]any{"bot_token": "999999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}), http.StatusUnprocessableEntity, "invalid_bot_token", "bot_token")
		wantCode(t, te.do(http.MethodPost, "/telegram/v1/validate-token/", keyA, map[string]any{}), http.StatusUnprocessableEntity, "invalid_field", "bot_token")
		if n := len(te.emu.Calls(probe.ID, "setWebhook")); n != 0 {
			t.Fatal("validate-token registered a webhook")
		}
		var page listPage[json.RawMessage]
		te.do(http.MethodGet, "/telegram/v1/bots/", keyA, nil).decode(t, &page)
		if len(page.Items) != 1 {
			t.Fatalf("validate-token stored a bot: %d bots", len(page.Items))
		}
	})
	t.Run("webhook_error", func(t *testing.T) {
		broken := te.emu.CreateBot("", "Broken")
		tokens = append(tokens, broken.Token)
		te.emu.AddFault(broken.ID, tgemu.Fault{Method: "setWebhook", Kind: tgemu.FaultServerError, Times: 1})
		r := te.do(http.MethodPost, "/telegram/v1/bots/", keyA, map[string]any{"name": "Broken", "bot_token": broken.Token})
		mustStatus(t, r, http.StatusCreated)
		var got botResponse
		r.decode(t, &got)
		te.do(http.MethodGet, "/telegram/v1/bots/"+got.BotAppID.String()+"/", keyA, nil).decode(t, &got)
		if got.WebhookStatus != "failed" || got.WebhookError != "setWebhook: Telegram answered 500: Internal Server Error" {
			t.Fatalf("%+v", got)
		}
	})
	te.assertNotLogged(append(tokens, info.Token, keyA)...)
}
