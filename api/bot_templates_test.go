package api

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// tplBot is a registered bot with what a test needs to deliver updates to it.
type tplBot struct {
	botResponse
	info   tgemu.BotInfo
	secret string
}

func (te *testEnv) newTplBot(key, name string) tplBot {
	te.t.Helper()
	b, info := te.newBot(key, name)
	return tplBot{botResponse: b, info: info, secret: te.emu.WebhookInfo(info.ID).SecretToken}
}

// deliverText posts a private message update from user (chat = user id) to b's webhook; a
// text starting with "/" carries a bot_command entity for its first word.
func (te *testEnv) deliverText(b tplBot, updateID, userID int64, firstName, text string) {
	te.t.Helper()
	if err := te.emu.AddUser(b.info.ID, tgemu.User{ID: userID, FirstName: firstName}); err != nil {
		te.t.Fatal(err)
	}
	msg := map[string]any{"message_id": updateID, "date": time.Now().Unix(), "text": text,
		"chat": map[string]any{"id": userID, "type": "private", "first_name": firstName},
		"from": map[string]any{"id": userID, "is_bot": false, "first_name": firstName}}
	if strings.HasPrefix(text, "/") {
		cmd, _, _ := strings.Cut(text, " ")
		msg["entities"] = []map[string]any{{"type": "bot_command", "offset": 0, "length": len(cmd)}}
	}
	req := request(te.t, http.MethodPost, "/telegram/v1/webhooks/"+b.BotAppID.String()+"/", "", map[string]any{"update_id": updateID, "message": msg})
	req.Header.Set(telegram.SecretHeader, b.secret)
	mustStatus(te.t, te.serve(req), http.StatusOK)
}

// processAndSend processes the stored updates and sends the queued replies of bot (what the
// worker's event processor and telegram:send-many task do).
func (te *testEnv) processAndSend(botID uuid.UUID) {
	te.t.Helper()
	ctx := context.Background()
	if _, err := te.tg.ProcessPending(ctx); err != nil {
		te.t.Fatal(err)
	}
	var ids []uuid.UUID
	if err := te.db.NewSelect().Table("messages").Column("id").Where("bot_id = ?", botID).
		Where("kind = ?", contacts.KindReply).Where("status = ?", contacts.StatusQueued).Scan(ctx, &ids); err != nil {
		te.t.Fatal(err)
	}
	if len(ids) == 0 {
		return
	}
	task, err := telegram.NewSendManyTask(telegram.SendManyBatch{BotID: botID, MessageIDs: ids})
	if err != nil {
		te.t.Fatal(err)
	}
	if err := te.tg.HandleSendMany(ctx, task); err != nil {
		te.t.Fatal(err)
	}
}

// lastSent returns the last message tgemu received for chat of b ("" for none).
func (te *testEnv) lastSent(b tplBot, chat int64) tgemu.SentMessage {
	te.t.Helper()
	ms := te.emu.SentTo(b.info.ID, chat)
	if len(ms) == 0 {
		return tgemu.SentMessage{}
	}
	return ms[len(ms)-1]
}

// errDetails decodes an error envelope's code and details.
func errDetails(t *testing.T, r response) (string, map[string]any) {
	t.Helper()
	var env struct {
		Error struct {
			Code    string         `json:"code"`
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &env)
	return env.Error.Code, env.Error.Details
}

func tplPath(b tplBot, key string, rest ...string) string {
	p := "/telegram/v1/bots/" + b.BotAppID.String() + "/templates/"
	if key != "" {
		p += key + "/"
	}
	for _, r := range rest {
		p += r + "/"
	}
	return p
}

// TestTemplates_Replies: the worker answers /start, a tenant-defined /status and unknown
// commands with the bot's templates, rendered per contact with escaping, and falls back to
// the built-in defaults; every edit reaches the worker's cache at once.
func TestTemplates_Replies(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("acme")
	b := te.newTplBot(key, "Shop")

	// The list shows the seven built-ins with their defaults.
	var list listPage[templateResponse]
	r := te.do(http.MethodGet, tplPath(b, ""), key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &list)
	if len(list.Items) != 7 || list.Items[6].Key != "link_status" || list.Items[0].Key != "welcome" || !list.Items[0].Default || list.Items[0].Command != "start" ||
		!strings.Contains(list.Items[0].Text, "{first_name|there}") || list.Items[3].Key != "unknown_command" || list.Items[3].Text != "" {
		t.Fatalf("list: %s", r.Body)
	}

	// Defaults before any edit (the built-in texts).
	te.deliverText(b, 1, 501, "Ann", "/start")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 501); m.Text != telegram.StartReplyText("Ann", "Shop") {
		t.Fatalf("default welcome: %+v", m)
	}

	// An unknown variable is refused at save time.
	r = te.do(http.MethodPut, tplPath(b, "welcome"), key, map[string]any{"text": "Hi {frist_name}!"})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, d := errDetails(t, r); code != "invalid_field" || d["field"] != "text" || d["variable"] != "frist_name" {
		t.Fatalf("unknown variable: %s", r.Body)
	}
	// So is an undeclared one, and a tenant key without a command.
	r = te.do(http.MethodPut, tplPath(b, "welcome"), key, map[string]any{"text": "Mail {support_email}"})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	r = te.do(http.MethodPut, tplPath(b, "status"), key, map[string]any{"text": "ok"})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, d := errDetails(t, r); code != "invalid_field" || d["field"] != "command" {
		t.Fatalf("no command: %s", r.Body)
	}

	// Edit welcome (HTML, a declared variable) and create /status.
	r = te.do(http.MethodPut, tplPath(b, "welcome"), key, map[string]any{
		"text": "Hello <b>{first_name}</b> from {bot_name}! Mail {support_email}.", "parse_mode": "html",
		"variables": map[string]string{"support_email": "help@shop.example"}})
	mustStatus(t, r, http.StatusOK)
	var tr templateResponse
	r.decode(t, &tr)
	if tr.Version != 1 || tr.Default || tr.ParseMode != "HTML" || tr.Editor != "default" || tr.Variables["support_email"] != "help@shop.example" {
		t.Fatalf("put welcome: %s", r.Body)
	}
	r = te.do(http.MethodPut, tplPath(b, "status"), key, map[string]any{"text": "All systems go, {first_name|friend}.", "command": "/status"})
	mustStatus(t, r, http.StatusCreated)
	r = te.do(http.MethodPut, tplPath(b, "state"), key, map[string]any{"text": "dup", "command": "status"})
	mustStatus(t, r, http.StatusConflict)
	if code, _ := errDetails(t, r); code != "command_taken" {
		t.Fatalf("command taken: %s", r.Body)
	}

	// The worker uses them: first_name escaped for HTML, the declared variable, bot_name.
	te.deliverText(b, 2, 502, "A<nn & Co", "/start")
	te.deliverText(b, 3, 503, "Bo", "/status")
	te.deliverText(b, 4, 503, "Bo", "/price")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 502); m.Text != "Hello <b>A&lt;nn &amp; Co</b> from Shop! Mail help@shop.example." || m.ParseMode != "HTML" {
		t.Fatalf("welcome reply: %+v", m)
	}
	ms := te.emu.SentTo(b.info.ID, 503)
	if len(ms) != 1 || ms[0].Text != "All systems go, Bo." {
		t.Fatalf("/status then /price (no unknown_command reply by default): %+v", ms)
	}

	// unknown_command and deleting /status: both reach the worker at once.
	r = te.do(http.MethodPut, tplPath(b, "unknown_command"), key, map[string]any{"text": "Sorry {first_name}, I don't know that command."})
	mustStatus(t, r, http.StatusOK)
	mustStatus(t, te.do(http.MethodDelete, tplPath(b, "status"), key, nil), http.StatusNoContent)
	mustStatus(t, te.do(http.MethodGet, tplPath(b, "status"), key, nil), http.StatusNotFound)
	r = te.do(http.MethodDelete, tplPath(b, "welcome"), key, nil)
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, _ := errDetails(t, r); code != "builtin_template" {
		t.Fatalf("delete built-in: %s", r.Body)
	}
	te.deliverText(b, 5, 503, "Bo", "/price")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 503); m.Text != "Sorry Bo, I don't know that command." {
		t.Fatalf("unknown command: %+v", m)
	}
	// Without the tenant's /status, the built-in /status (account linking) answers.
	te.deliverText(b, 6, 503, "Bo", "/status")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 503); m.Text != "Linked account: not linked" {
		t.Fatalf("deleted /status: %+v", m)
	}
}

// TestTemplates_History: every edit is a version with its editor and change type; rollback
// copies a version, reset restores the built-in default.
func TestTemplates_History(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("acme")
	b := te.newTplBot(key, "Shop")
	writer := te.newKey(key, "copywriter", "write")
	reader := te.newKey(key, "dashboard", "read")

	wantScope(t, "read key PUT", te.do(http.MethodPut, tplPath(b, "welcome"), reader.Key, map[string]any{"text": "x"}), "write")
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "welcome"), key, map[string]any{"text": "v1 {first_name}"}), http.StatusOK)
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "welcome"), writer.Key, map[string]any{"text": "v2 *{first_name}*", "parse_mode": "MarkdownV2"}), http.StatusOK)

	r := te.do(http.MethodPost, tplPath(b, "welcome", "rollback"), writer.Key, map[string]any{"version": 1})
	mustStatus(t, r, http.StatusOK)
	var tr templateResponse
	r.decode(t, &tr)
	if tr.Version != 3 || tr.Text != "v1 {first_name}" || tr.ParseMode != "" || tr.Editor != "copywriter" {
		t.Fatalf("rollback: %s", r.Body)
	}
	r = te.do(http.MethodPost, tplPath(b, "welcome", "rollback"), writer.Key, map[string]any{"version": 9})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, d := errDetails(t, r); code != "invalid_field" || d["field"] != "version" {
		t.Fatalf("rollback to a missing version: %s", r.Body)
	}

	r = te.do(http.MethodPost, tplPath(b, "welcome", "reset"), key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &tr)
	def, _ := telegram.DefaultTemplateText("welcome")
	if tr.Version != 4 || tr.Text != def {
		t.Fatalf("reset: %s", r.Body)
	}

	var hist listPage[templateVersionResponse]
	r = te.do(http.MethodGet, tplPath(b, "welcome", "history"), reader.Key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &hist)
	got := []string{}
	for _, v := range hist.Items {
		got = append(got, fmt.Sprintf("%d %s %s %s", v.Version, v.ChangeType, v.Editor, v.ParseMode))
	}
	want := []string{"4 reset default ", "3 rollback copywriter ", "2 update copywriter MarkdownV2", "1 update default "}
	if strings.Join(got, "|") != strings.Join(want, "|") || hist.Items[2].Text != "v2 *{first_name}*" || hist.Items[0].CreatedAt.IsZero() {
		t.Fatalf("history:\n%v\nwant\n%v", got, want)
	}

	// The reset welcome answers like the built-in default.
	te.deliverText(b, 1, 601, "Cy", "/start")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 601); m.Text != telegram.StartReplyText("Cy", "Shop") {
		t.Fatalf("after reset: %+v", m)
	}

	// Tenant-defined keys have no default; a missing key is 404.
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "status"), key, map[string]any{"text": "ok", "command": "status"}), http.StatusCreated)
	r = te.do(http.MethodPost, tplPath(b, "status", "reset"), key, nil)
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, _ := errDetails(t, r); code != "template_has_no_default" {
		t.Fatalf("reset tenant key: %s", r.Body)
	}
	mustStatus(t, te.do(http.MethodPost, tplPath(b, "nosuch", "reset"), key, nil), http.StatusNotFound)
	mustStatus(t, te.do(http.MethodGet, tplPath(b, "nosuch", "history"), key, nil), http.StatusNotFound)
	mustStatus(t, te.do(http.MethodGet, tplPath(b, "Bad-Key"), key, nil), http.StatusNotFound)
	// Built-in history before any edit: empty.
	r = te.do(http.MethodGet, tplPath(b, "stop", "history"), key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &hist)
	if len(hist.Items) != 0 {
		t.Fatalf("stop history: %s", r.Body)
	}
}

// TestTemplates_Lock: a lock held by one key makes edits by another 409 naming the holder
// and the expiry; the holder extends it; it expires after 10 minutes (injected clock).
func TestTemplates_Lock(t *testing.T) {
	te := newEnv(t)
	_, admin := te.newTenant("acme")
	b := te.newTplBot(admin, "Shop")
	writer := te.newKey(admin, "copywriter", "write")
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	te.tg.SetTemplateClock(func() time.Time { return now })

	var lock templateLockResponse
	r := te.do(http.MethodPost, tplPath(b, "welcome", "lock"), writer.Key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &lock)
	if lock.Holder != "copywriter" || !lock.AcquiredAt.Equal(now) || !lock.ExpiresAt.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("lock: %s", r.Body)
	}

	// Another key's edits: 409 template_locked naming the holder and the expiry.
	edits := []struct{ method, path string }{
		{http.MethodPut, tplPath(b, "welcome")}, {http.MethodPost, tplPath(b, "welcome", "reset")},
		{http.MethodPost, tplPath(b, "welcome", "rollback")}, {http.MethodPost, tplPath(b, "welcome", "lock")},
	}
	for _, ed := range edits {
		var body any
		switch {
		case ed.method == http.MethodPut:
			body = map[string]any{"text": "mine"}
		case strings.HasSuffix(ed.path, "rollback/"):
			body = map[string]any{"version": 1}
		}
		r = te.do(ed.method, ed.path, admin, body)
		mustStatus(t, r, http.StatusConflict)
		code, d := errDetails(t, r)
		if code != "template_locked" || d["holder"] != "copywriter" || d["expires_at"] != "2026-12-02T12:10:00Z" {
			t.Fatalf("%s %s: %s", ed.method, ed.path, r.Body)
		}
	}
	r = te.do(http.MethodGet, tplPath(b, "welcome"), admin, nil)
	var tr templateResponse
	r.decode(t, &tr)
	if tr.Lock == nil || tr.Lock.Holder != "copywriter" || !tr.Default {
		t.Fatalf("get shows the lock, nothing saved: %s", r.Body)
	}

	// The holder edits and extends; acquired_at stays.
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "welcome"), writer.Key, map[string]any{"text": "by the holder"}), http.StatusOK)
	now = now.Add(5 * time.Minute)
	r = te.do(http.MethodPost, tplPath(b, "welcome", "lock"), writer.Key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &lock)
	if !lock.AcquiredAt.Equal(now.Add(-5*time.Minute)) || !lock.ExpiresAt.Equal(now.Add(10*time.Minute)) {
		t.Fatalf("extended lock: %s", r.Body)
	}

	// Expiry: 10 minutes after the extension the lock is gone and others may edit.
	now = now.Add(9*time.Minute + 59*time.Second)
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "welcome"), admin, map[string]any{"text": "too early"}), http.StatusConflict)
	now = now.Add(time.Second)
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "welcome"), admin, map[string]any{"text": "after expiry"}), http.StatusOK)

	// Release: a non-holder without admin gets 409; an admin key may release anyone's.
	mustStatus(t, te.do(http.MethodPost, tplPath(b, "help", "lock"), admin, nil), http.StatusOK)
	r = te.do(http.MethodDelete, tplPath(b, "help", "lock"), writer.Key, nil)
	mustStatus(t, r, http.StatusConflict)
	mustStatus(t, te.do(http.MethodDelete, tplPath(b, "help", "lock"), admin, nil), http.StatusNoContent)
	mustStatus(t, te.do(http.MethodPost, tplPath(b, "help", "lock"), writer.Key, nil), http.StatusOK)
	mustStatus(t, te.do(http.MethodDelete, tplPath(b, "help", "lock"), admin, nil), http.StatusNoContent)
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "help"), admin, map[string]any{"text": "help text"}), http.StatusOK)
	mustStatus(t, te.do(http.MethodPost, tplPath(b, "nosuch", "lock"), admin, nil), http.StatusNotFound)
}

// TestTemplates_TestSend: a test send arrives in tgemu with sample values; the 11th within a
// minute of one key is 429 with Retry-After; Telegram's refusal is 422 test_send_failed.
func TestTemplates_TestSend(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("acme")
	b := te.newTplBot(key, "Shop")
	other := te.newKey(key, "second", "write")
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "welcome"), key, map[string]any{
		"text": "Hi <i>{first_name}</i> of {bot_name}, plan {attributes.plan}, mail {support_email}", "parse_mode": "HTML",
		"variables": map[string]string{"support_email": "help@shop.example"}}), http.StatusOK)

	r := te.do(http.MethodPost, tplPath(b, "welcome", "test"), key, map[string]any{})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	r = te.do(http.MethodPost, tplPath(b, "unknown_command", "test"), key, map[string]any{"chat_id": 9000})
	mustStatus(t, r, http.StatusUnprocessableEntity) // empty by default: nothing to send

	for i := range 10 {
		chat := int64(9001 + i)
		if err := te.emu.AddUser(b.info.ID, tgemu.User{ID: chat, FirstName: "Tester"}); err != nil {
			t.Fatal(err)
		}
		r = te.do(http.MethodPost, tplPath(b, "welcome", "test"), key, map[string]any{"chat_id": chat})
		mustStatus(t, r, http.StatusOK)
		var res templateTestResponse
		r.decode(t, &res)
		m := te.lastSent(b, chat)
		want := "Hi <i>Sample</i> of Shop, plan sample, mail help@shop.example"
		if res.Status != "sent" || res.MessageID == 0 || res.MessageID != m.MessageID || m.Text != want || m.ParseMode != "HTML" || res.Text != want {
			t.Fatalf("test send %d: %s; tgemu %+v", i, r.Body, m)
		}
	}
	r = te.do(http.MethodPost, tplPath(b, "welcome", "test"), key, map[string]any{"chat_id": 9100})
	mustStatus(t, r, http.StatusTooManyRequests)
	if code, _ := errDetails(t, r); code != "rate_limited" {
		t.Fatalf("11th: %s", r.Body)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 || ra > 60 {
		t.Fatalf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if len(te.emu.SentTo(b.info.ID, 9100)) != 0 {
		t.Fatal("the 11th test send reached Telegram")
	}

	// Another key has its own budget; Telegram's refusal (a chat the bot cannot write to) is
	// a 422 with Telegram's description.
	r = te.do(http.MethodPost, tplPath(b, "welcome", "test"), other.Key, map[string]any{"chat_id": 9200})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	code, d := errDetails(t, r)
	if code != "test_send_failed" || d["field"] != "chat_id" || d["status"] != "failed" || !strings.Contains(fmt.Sprint(d["description"]), "chat not found") {
		t.Fatalf("refused: %s", r.Body)
	}
	r = te.do(http.MethodPost, tplPath(b, "welcome", "test"), other.Key, map[string]any{"chat_id": 9001})
	mustStatus(t, r, http.StatusOK)
}
