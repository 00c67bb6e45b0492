package api

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

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
	if env.Error.Details.ErrorCode != 400 || env.Error.Details.Description != "Bad Request: chat not found" {
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

// TestBotUsage: GET .../usage/ counts sent, failed, deferred and inbound per UTC day from
// messages and broadcast recipients of this bot only (another bot's rows are not counted),
// fills empty days with zeros, defaults to the last 7 days and checks the range.
func TestBotUsage(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("acme")
	bot, _ := te.newBot(key, "Support")
	other, _ := te.newBot(key, "Other")
	ctx := context.Background()
	ct := te.newContact(tid, bot.BotAppID, 4242)
	day := func(d string, hm string) time.Time {
		tm, err := time.Parse(time.RFC3339, d+"T"+hm+":00Z")
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := te.db.ExecContext(ctx, q, args...); err != nil {
			t.Fatal(err)
		}
	}
	msg := func(botID uuid.UUID, direction, status string, created time.Time, sent *time.Time) {
		exec(`INSERT INTO messages (tenant_id, bot_id, chat_id, direction, status, created_at, sent_at) VALUES (?, ?, 4242, ?, ?, ?, ?)`,
			tid, botID, direction, status, created, sent)
	}
	for _, b := range []uuid.UUID{bot.BotAppID, other.BotAppID} {
		s1 := day("2026-11-03", "23:59")
		msg(b, "outbound", "sent", s1.Add(-time.Minute), &s1) // 3 Nov
		s2 := day("2026-11-04", "00:00")
		msg(b, "outbound", "sent", s1, &s2) // 4 Nov (sent after midnight)
		msg(b, "outbound", "failed", day("2026-11-04", "10:00"), nil)
		msg(b, "outbound", "queued", day("2026-11-04", "10:00"), nil) // not counted
		msg(b, "inbound", "received", day("2026-11-05", "08:00"), nil)
		msg(b, "inbound", "received", day("2026-11-05", "09:00"), nil)
		msg(b, "outbound", "sent", day("2026-11-20", "09:00"), ptr(day("2026-11-20", "09:00"))) // outside the range
	}
	var bcID uuid.UUID
	if err := te.db.QueryRowContext(ctx, `INSERT INTO broadcasts (tenant_id, bot_id, name, message_text, created_at) VALUES (?, ?, 'b', 'hi', ?) RETURNING id`,
		tid, bot.BotAppID, day("2026-11-01", "00:00")).Scan(&bcID); err != nil {
		t.Fatal(err)
	}
	contactsFor := []uuid.UUID{ct.ID, te.newContact(tid, bot.BotAppID, 4243).ID, te.newContact(tid, bot.BotAppID, 4244).ID, te.newContact(tid, bot.BotAppID, 4245).ID}
	rec := func(i int, status string, sent *time.Time, updated time.Time) {
		exec(`INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id, status, sent_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)`,
			bcID, contactsFor[i], 4242+i, status, sent, updated)
	}
	rec(0, "sent", ptr(day("2026-11-03", "12:00")), day("2026-11-03", "12:00"))
	rec(1, "failed", nil, day("2026-11-05", "12:00"))
	rec(2, "deferred", nil, day("2026-11-05", "13:00"))
	rec(3, "queued", nil, day("2026-11-05", "13:00")) // not counted

	base := "/telegram/v1/bots/" + bot.BotAppID.String() + "/usage/"
	r := te.do(http.MethodGet, base+"?from=2026-11-02&to=2026-11-06", key, nil)
	mustStatus(t, r, http.StatusOK)
	var u usageResponse
	r.decode(t, &u)
	want := []usageDayResponse{
		{Date: "2026-11-02"},
		{Date: "2026-11-03", Sent: 2},
		{Date: "2026-11-04", Sent: 1, Failed: 1},
		{Date: "2026-11-05", Failed: 1, Deferred: 1, Inbound: 2},
		{Date: "2026-11-06"},
	}
	if u.From != "2026-11-02" || u.To != "2026-11-06" || len(u.Days) != len(want) || u.Totals != (usageDayTotals{Sent: 3, Failed: 2, Deferred: 1, Inbound: 2}) {
		t.Fatalf("usage: %s", r.Body)
	}
	for i := range want {
		if u.Days[i] != want[i] {
			t.Fatalf("day %d: %+v, want %+v", i, u.Days[i], want[i])
		}
	}

	// Default: the last 7 days up to today.
	r = te.do(http.MethodGet, base, key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &u)
	today := time.Now().UTC().Format(time.DateOnly)
	if len(u.Days) != 7 || u.To != today {
		t.Fatalf("default range: %s", r.Body)
	}

	wantError(t, te.do(http.MethodGet, base+"?from=2026-11-06&to=2026-11-02", key, nil), http.StatusUnprocessableEntity, "invalid_field", "from")
	wantError(t, te.do(http.MethodGet, base+"?from=2026-01-01&to=2026-12-31", key, nil), http.StatusUnprocessableEntity, "invalid_field", "to")
	wantError(t, te.do(http.MethodGet, base+"?from=2026-13-01", key, nil), http.StatusUnprocessableEntity, "invalid_field", "from")
	wantError(t, te.do(http.MethodGet, base+"?to=yesterday", key, nil), http.StatusUnprocessableEntity, "invalid_field", "to")
	mustStatus(t, te.do(http.MethodGet, base+"?from=2026-08-02&to=2026-11-01", key, nil), http.StatusOK) // 92 days
}

func ptr[T any](v T) *T { return &v }

// TestWebhookEventFilters: GET /telegram/v1/webhook-events/ filtered by update_type, status
// (with process_error and status shown) and created_after/created_before; the cursor pages
// through the filtered listing; bad values are 422 naming the parameter.
func TestWebhookEventFilters(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("acme")
	bot, _ := te.newBot(key, "Support")
	ctx := context.Background()
	t0 := time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC)
	type ev struct {
		typ, procErr string
		processed    bool
	}
	evs := []ev{ // update_id i+1, received t0 + i minutes
		{"message", "", true},
		{"callback_query", "", true},
		{"message", "failed: boom", true},
		{"my_chat_member", "skipped: my_chat_member in a channel chat is not handled", true},
		{"message", "", false},
		{"message", "", true},
		{"message", "", true},
		{"message", "", true},
	}
	for i, e := range evs {
		var processed *time.Time
		if e.processed {
			processed = ptr(t0.Add(time.Duration(i)*time.Minute + time.Second))
		}
		if _, err := te.db.ExecContext(ctx, `INSERT INTO webhook_events (tenant_id, bot_id, update_id, update_type, payload, received_at, processed_at, process_error)
			VALUES (?, ?, ?, ?, '{}', ?, ?, ?)`, tid, bot.BotAppID, i+1, e.typ, t0.Add(time.Duration(i)*time.Minute), processed, e.procErr); err != nil {
			t.Fatal(err)
		}
	}
	list := func(query string) []webhookEventResponse {
		t.Helper()
		var all []webhookEventResponse
		cursor := ""
		for range 10 {
			q := "/telegram/v1/webhook-events/?limit=2&" + query
			if cursor != "" {
				q += "&cursor=" + cursor
			}
			r := te.do(http.MethodGet, q, key, nil)
			mustStatus(t, r, http.StatusOK)
			var pg listPage[webhookEventResponse]
			r.decode(t, &pg)
			all = append(all, pg.Items...)
			if cursor = pg.NextCursor; cursor == "" {
				return all
			}
		}
		t.Fatalf("%s: too many pages", query)
		return nil
	}
	ids := func(es []webhookEventResponse) []int64 {
		out := make([]int64, len(es))
		for i, e := range es {
			out[i] = e.UpdateID
		}
		return out
	}
	check := func(query string, want ...int64) []webhookEventResponse {
		t.Helper()
		got := list(query)
		if g := ids(got); !slices.Equal(g, want) {
			t.Fatalf("%s: update ids %v, want %v", query, g, want)
		}
		return got
	}
	check("update_type=message", 8, 7, 6, 5, 3, 1)
	check("update_type=message&status=processed", 8, 7, 6, 1)
	got := check("status=failed", 3)
	if got[0].Status != "failed" || got[0].ProcessError != "failed: boom" {
		t.Fatalf("failed event: %+v", got[0])
	}
	got = check("status=skipped", 4)
	if got[0].Status != "skipped" || got[0].UpdateType != "my_chat_member" {
		t.Fatalf("skipped event: %+v", got[0])
	}
	if got = check("status=pending", 5); got[0].Status != "pending" || got[0].ProcessedAt != nil {
		t.Fatalf("pending event: %+v", got[0])
	}
	after, before := t0.Add(90*time.Second).Format(time.RFC3339), t0.Add(6*time.Minute).Format(time.RFC3339)
	check("created_after="+after+"&created_before="+before, 6, 5, 4, 3)
	check("update_type=message&created_after="+after, 8, 7, 6, 5, 3)
	check("update_type=chat_join_request")

	bad := "/telegram/v1/webhook-events/?"
	wantError(t, te.do(http.MethodGet, bad+"update_type=msg", key, nil), http.StatusUnprocessableEntity, "invalid_field", "update_type")
	wantError(t, te.do(http.MethodGet, bad+"status=done", key, nil), http.StatusUnprocessableEntity, "invalid_field", "status")
	wantError(t, te.do(http.MethodGet, bad+"created_after=yesterday", key, nil), http.StatusUnprocessableEntity, "invalid_field", "created_after")
	wantError(t, te.do(http.MethodGet, bad+"created_before=2026-11-10", key, nil), http.StatusUnprocessableEntity, "invalid_field", "created_before")
	wantError(t, te.do(http.MethodGet, bad+"created_after="+before+"&created_before="+after, key, nil), http.StatusUnprocessableEntity, "invalid_field", "created_after")
}
