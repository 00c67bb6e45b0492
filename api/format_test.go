package api

import (
	"net/http"
	"strings"
	"testing"
)

// TestCreate_formattedText422 sends texts Telegram could not parse in their parse_mode to
// POST /messages/ and POST /broadcast/: each is a 422 invalid_field naming the text field
// and the position (in characters) of the problem, and nothing is queued. The same texts
// escaped are accepted.
func TestCreate_formattedText422(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("Acme")
	bot, _ := te.newBot(key, "Bot")
	contact := te.newContact(tid, bot.BotAppID, 777)
	tests := []struct {
		name, path, field, mode, bad, good string
		position                           float64
		reason                             string
	}{
		{"message MarkdownV2 dot", "/messages/", "text", "MarkdownV2", "Sale: 50% off. Hurry", `Sale: 50% off\. Hurry`, 13, "Character '.' is reserved"},
		{"broadcast MarkdownV2 dot", "/broadcast/", "message_text", "markdownv2", "Version 1.0 is out", `Version 1\.0 is out`, 9, "Character '.' is reserved"},
		{"message HTML unclosed tag", "/messages/", "text", "HTML", "Hi <b>there", "Hi <b>there</b>", 3, `Can't find end tag corresponding to start tag "b"`},
		{"broadcast HTML bare lt", "/broadcast/", "message_text", "html", "1 < 2 & 3", "1 &lt; 2 &amp; 3", 2, `Unsupported start tag ""`},
		{"broadcast Markdown unclosed", "/broadcast/", "message_text", "Markdown", "snake_case", `snake\_case`, 5, "Can't find end of the entity"},
	}
	body := func(path, text, mode string) map[string]any {
		if path == "/messages/" {
			return map[string]any{"bot_app_id": bot.BotAppID, "contact_id": contact.ID, "text": text, "parse_mode": mode}
		}
		return map[string]any{"bot_app_id": bot.BotAppID, "name": "n", "platform": "TELEGRAM", "message_text": text, "parse_mode": mode, "recipients": []any{contact.ID}}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := te.do(http.MethodPost, tt.path, key, body(tt.path, tt.bad, tt.mode))
			if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
				t.Fatalf("status %d: %s; want 422 invalid_field", r.Code, r.Body)
			}
			var env struct {
				Error struct {
					Message string         `json:"message"`
					Details map[string]any `json:"details"`
				} `json:"error"`
			}
			r.decode(t, &env)
			if env.Error.Details["field"] != tt.field || env.Error.Details["position"] != tt.position {
				t.Errorf("details %v; want field %q position %v", env.Error.Details, tt.field, tt.position)
			}
			if !strings.Contains(env.Error.Message, tt.reason) {
				t.Errorf("message %q does not contain %q", env.Error.Message, tt.reason)
			}
			if r := te.do(http.MethodPost, tt.path, key, body(tt.path, tt.good, tt.mode)); r.Code != http.StatusAccepted {
				t.Fatalf("escaped text: status %d: %s; want 202", r.Code, r.Body)
			}
		})
	}
}
