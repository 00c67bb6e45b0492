package api

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/botfleet/botfleet/telegram/tgemu"
)

// wantError checks an error answer's status, code and (when field != "") details.field.
func wantError(t *testing.T, r response, status int, code, field string) {
	t.Helper()
	mustStatus(t, r, status)
	if got := r.errorCode(t); got != code {
		t.Fatalf("code %q, want %q: %s", got, code, r.Body)
	}
	if field != "" {
		if got := errorField(t, r); got != field {
			t.Fatalf("details.field %q, want %q: %s", got, field, r.Body)
		}
	}
}

// TestBotTestSend: POST .../test/ sends through the normal send path and answers Telegram's
// verdict: 200 with the message_id (and message_thread_id passed on), 422 invalid_field for
// bad input, 422 telegram_refused for chat not found and blocked, 429 send_limited with
// Retry-After for Telegram's 429, 429 daily_limit_reached, 409 bot_not_active, 502 for a 5xx.
func TestBotTestSend(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("acme")
	bot, info := te.newBot(key, "Support")
	base := "/telegram/v1/bots/" + bot.BotAppID.String()
	ann := tgemu.User{ID: 4242, FirstName: "Ann"}
	if err := te.emu.AddUser(info.ID, ann); err != nil {
		t.Fatal(err)
	}

	r := te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "<b>hello</b>", "parse_mode": "HTML"})
	mustStatus(t, r, http.StatusOK)
	var res testSendResponse
	r.decode(t, &res)
	sent := te.emu.SentTo(info.ID, ann.ID)
	if !res.OK || res.ChatID != ann.ID || len(sent) != 1 || res.MessageID != sent[0].MessageID || sent[0].ParseMode != "HTML" {
		t.Fatalf("sent: %s, emulator %+v", r.Body, sent)
	}

	// A forum topic: message_thread_id reaches sendMessage.
	if err := te.emu.AddGroup(info.ID, -100777, "Team"); err != nil {
		t.Fatal(err)
	}
	r = te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": -100777, "text": "topic", "message_thread_id": 12})
	mustStatus(t, r, http.StatusOK)
	calls := te.emu.Calls(info.ID, "sendMessage")
	if last := calls[len(calls)-1]; last.Params["message_thread_id"] != "12" || last.Params["chat_id"] != "-100777" {
		t.Fatalf("thread id not passed: %+v", last.Params)
	}

	// Bad input: nothing sent.
	before := te.emu.SentCount(info.ID)
	wantError(t, te.do(http.MethodPost, base+"/test/", key, map[string]any{"text": "x"}), http.StatusUnprocessableEntity, "invalid_field", "chat_id")
	wantError(t, te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "text": " "}), http.StatusUnprocessableEntity, "invalid_field", "text")
	wantError(t, te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "x", "parse_mode": "BBCode"}), http.StatusUnprocessableEntity, "invalid_field", "parse_mode")
	wantError(t, te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "<b>x", "parse_mode": "HTML"}), http.StatusUnprocessableEntity, "invalid_field", "text")
	wantError(t, te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "x", "message_thread_id": -1}), http.StatusUnprocessableEntity, "invalid_field", "message_thread_id")
	wantError(t, te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "txt": "x"}), http.StatusBadRequest, "unknown_field", "txt")
	if n := te.emu.SentCount(info.ID); n != before {
		t.Fatalf("bad input sent %d messages", n-before)
	}

	// Telegram refuses: an unknown chat, a user who blocked the bot.
	r = te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": 999, "text": "hi"})
	wantError(t, r, http.StatusUnprocessableEntity, "telegram_refused", "chat_id")
	var env struct {
		Error struct {
			Details struct {
				ErrorCode   int    `json:"error_code"`
				Description string `json:"description"`
			} `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &env)
	if env.Error.Details.ErrorCode != 400 || env.Error.Details.Description == "" {
		t.Fatalf("refusal details: %s", r.Body)
	}
	bob := tgemu.User{ID: 5151, FirstName: "Bob"}
	if _, err := te.emu.Block(info.ID, bob); err != nil {
		t.Fatal(err)
	}
	r = te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": bob.ID, "text": "hi"})
	wantError(t, r, http.StatusUnprocessableEntity, "telegram_refused", "chat_id")
	r.decode(t, &env)
	if env.Error.Details.ErrorCode != 403 {
		t.Fatalf("blocked: %s", r.Body)
	}

	// A 5xx: 502.
	te.emu.AddFault(info.ID, tgemu.Fault{Kind: tgemu.FaultServerError, Times: 1})
	wantError(t, te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "hi"}), http.StatusBadGateway, "telegram_unavailable", "")

	// Telegram's 429 with a retry_after longer than the send path waits: 429 with Retry-After.
	te.emu.AddFault(info.ID, tgemu.Fault{Kind: tgemu.FaultTooManyRequests, RetryAfter: 60, Times: 1})
	r = te.do(http.MethodPost, base+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "hi"})
	wantError(t, r, http.StatusTooManyRequests, "send_limited", "")
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 50 || ra > 60 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}

	// The daily limit counts the test sends (a second bot, daily_limit 1).
	bot2, info2 := te.newBot(key, "Daily")
	if err := te.emu.AddUser(info2.ID, ann); err != nil {
		t.Fatal(err)
	}
	base2 := "/telegram/v1/bots/" + bot2.BotAppID.String()
	mustStatus(t, te.do(http.MethodPut, base2+"/", key, map[string]any{"daily_limit": 1}), http.StatusOK)
	mustStatus(t, te.do(http.MethodPost, base2+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "one"}), http.StatusOK)
	r = te.do(http.MethodPost, base2+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "two"})
	wantError(t, r, http.StatusTooManyRequests, "daily_limit_reached", "")
	if ra, _ := strconv.Atoi(r.Header.Get("Retry-After")); ra < 1 || ra > 86400 {
		t.Fatalf("daily Retry-After %q", r.Header.Get("Retry-After"))
	}

	// A disabled bot sends nothing: 409.
	mustStatus(t, te.do(http.MethodPut, base2+"/", key, map[string]any{"status": "disabled", "daily_limit": 0}), http.StatusOK)
	before = te.emu.SentCount(info2.ID)
	r = te.do(http.MethodPost, base2+"/test/", key, map[string]any{"chat_id": ann.ID, "text": "three"})
	wantError(t, r, http.StatusConflict, "bot_not_active", "")
	if r.Header.Get("Retry-After") == "" || te.emu.SentCount(info2.ID) != before {
		t.Fatalf("disabled bot: %v, sent %d", r.Header, te.emu.SentCount(info2.ID)-before)
	}
}

// TestBotLookupChat: POST .../lookup-chat/ answers getChat and getChatMemberCount for a
// private chat and a group; an unknown chat and an unknown @username are 404
// chat_not_found; bad input is 422 invalid_field.
func TestBotLookupChat(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("acme")
	bot, info := te.newBot(key, "Support")
	base := "/telegram/v1/bots/" + bot.BotAppID.String() + "/lookup-chat/"
	ann := tgemu.User{ID: 4242, FirstName: "Ann", Username: "ann_s"}
	if err := te.emu.AddUser(info.ID, ann); err != nil {
		t.Fatal(err)
	}
	if err := te.emu.AddGroup(info.ID, -100555, "Team chat"); err != nil {
		t.Fatal(err)
	}

	var ci chatInfoResponse
	r := te.do(http.MethodPost, base, key, map[string]any{"chat_id": ann.ID})
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &ci)
	if ci.ID != ann.ID || ci.Type != "private" || ci.FirstName != "Ann" || ci.Username != "ann_s" || ci.MemberCount == nil || *ci.MemberCount != 2 {
		t.Fatalf("private: %s", r.Body)
	}
	r = te.do(http.MethodPost, base, key, map[string]any{"chat_id": -100555})
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &ci)
	if ci.ID != -100555 || ci.Type != "group" || ci.Title != "Team chat" || ci.MemberCount == nil {
		t.Fatalf("group: %s", r.Body)
	}

	wantError(t, te.do(http.MethodPost, base, key, map[string]any{"chat_id": 777}), http.StatusNotFound, "chat_not_found", "")
	wantError(t, te.do(http.MethodPost, base, key, map[string]any{"username": "@nosuchchannel"}), http.StatusNotFound, "chat_not_found", "")
	wantError(t, te.do(http.MethodPost, base, key, map[string]any{}), http.StatusUnprocessableEntity, "invalid_field", "chat_id")
	wantError(t, te.do(http.MethodPost, base, key, map[string]any{"chat_id": 1, "username": "abcde"}), http.StatusUnprocessableEntity, "invalid_field", "chat_id")
	wantError(t, te.do(http.MethodPost, base, key, map[string]any{"username": "a b"}), http.StatusUnprocessableEntity, "invalid_field", "username")

	// Another Telegram refusal (a 403 on getChat): 422 telegram_refused.
	te.emu.AddFault(info.ID, tgemu.Fault{Method: "getChat", Kind: tgemu.FaultBlocked, Times: 1})
	wantError(t, te.do(http.MethodPost, base, key, map[string]any{"chat_id": ann.ID}), http.StatusUnprocessableEntity, "telegram_refused", "chat_id")
}
