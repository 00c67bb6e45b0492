package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

type topicPrefs struct {
	Items []topicPreferenceResponse `json:"items"`
}

// prefsOf reads GET /contacts/{id}/topics/ as name → subscribed.
func (te *testEnv) prefsOf(key string, contactID uuid.UUID) map[string]bool {
	te.t.Helper()
	r := te.do(http.MethodGet, "/contacts/"+contactID.String()+"/topics/", key, nil)
	mustStatus(te.t, r, http.StatusOK)
	var p topicPrefs
	r.decode(te.t, &p)
	out := map[string]bool{}
	for _, it := range p.Items {
		out[it.Name] = it.Subscribed
	}
	return out
}

// TestTopics_API: create, list, duplicate, bad names, delete; a contact's preferences by
// the API, unknown topics refused.
func TestTopics_API(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("Topics")
	bot, _ := te.newBot(key, "topics bot")
	c := te.newContact(tid, bot.BotAppID, 4242)

	for _, name := range []string{"alerts", "reports"} {
		mustStatus(t, te.do(http.MethodPost, "/topics/", key, map[string]any{"name": name, "description": "about " + name}), http.StatusCreated)
	}
	r := te.do(http.MethodPost, "/topics/", key, map[string]any{"name": "alerts"})
	mustStatus(t, r, http.StatusConflict)
	if code, _ := errDetails(t, r); code != "topic_exists" {
		t.Fatalf("duplicate: code %q", code)
	}
	for _, bad := range []string{"", "Alerts", "a b", strings.Repeat("x", 65), "émoji"} {
		r := te.do(http.MethodPost, "/topics/", key, map[string]any{"name": bad})
		mustStatus(t, r, http.StatusUnprocessableEntity)
		if code, d := errDetails(t, r); code != "invalid_field" || d["field"] != "name" {
			t.Fatalf("name %q: %s %v", bad, code, d)
		}
	}
	var list struct {
		Items []topicResponse `json:"items"`
	}
	te.do(http.MethodGet, "/topics/", key, nil).decode(t, &list)
	if len(list.Items) != 2 || list.Items[0].Name != "alerts" || list.Items[1].Description != "about reports" {
		t.Fatalf("list: %+v", list.Items)
	}

	if p := te.prefsOf(key, c.ID); len(p) != 2 || !p["alerts"] || !p["reports"] {
		t.Fatalf("default preferences: %v", p)
	}
	r = te.do(http.MethodPut, "/contacts/"+c.ID.String()+"/topics/", key, map[string]any{"alerts": false})
	mustStatus(t, r, http.StatusOK)
	if p := te.prefsOf(key, c.ID); p["alerts"] || !p["reports"] {
		t.Fatalf("after opting out of alerts: %v", p)
	}
	// Unknown topic: 422 naming it, nothing changes.
	r = te.do(http.MethodPut, "/contacts/"+c.ID.String()+"/topics/", key, map[string]any{"alerts": true, "nope": false})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, d := errDetails(t, r); code != "invalid_field" || d["field"] != "nope" {
		t.Fatalf("unknown topic: %s %v", code, d)
	}
	if p := te.prefsOf(key, c.ID); p["alerts"] {
		t.Fatalf("a refused PUT changed the preferences: %v", p)
	}
	mustStatus(t, te.do(http.MethodPut, "/contacts/"+c.ID.String()+"/topics/", key, map[string]any{"alerts": true, "reports": false}), http.StatusOK)
	if p := te.prefsOf(key, c.ID); !p["alerts"] || p["reports"] {
		t.Fatalf("after switching both: %v", p)
	}
	mustStatus(t, te.do(http.MethodGet, "/contacts/"+uuid.NewString()+"/topics/", key, nil), http.StatusNotFound)

	// Deleting a topic deletes the opt-outs of it.
	mustStatus(t, te.do(http.MethodDelete, "/topics/reports/", key, nil), http.StatusNoContent)
	mustStatus(t, te.do(http.MethodDelete, "/topics/reports/", key, nil), http.StatusNotFound)
	var n int
	if err := te.db.NewSelect().Table("contact_topic_unsubscriptions").ColumnExpr("count(*)").Scan(context.Background(), &n); err != nil || n != 0 {
		t.Fatalf("opt-outs left after delete: %d %v", n, err)
	}
	if p := te.prefsOf(key, c.ID); len(p) != 1 || !p["alerts"] {
		t.Fatalf("after delete: %v", p)
	}
}

// TestTopics_MessageSuppressed: POST /messages/ with a topic the contact opted out of
// answers 200 suppressed and sends nothing; subscribed contacts get it; unknown topics 422.
func TestTopics_MessageSuppressed(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("Topics msg")
	bot, _ := te.newBot(key, "msg bot")
	in := te.newContact(tid, bot.BotAppID, 5001)
	out := te.newContact(tid, bot.BotAppID, 5002)
	mustStatus(t, te.do(http.MethodPost, "/topics/", key, map[string]any{"name": "alerts"}), http.StatusCreated)
	mustStatus(t, te.do(http.MethodPut, "/contacts/"+out.ID.String()+"/topics/", key, map[string]any{"alerts": false}), http.StatusOK)

	r := te.do(http.MethodPost, "/messages/", key, map[string]any{"contact_id": out.ID, "text": "disk full", "topic": "alerts"})
	mustStatus(t, r, http.StatusOK)
	var sup unsubscribedResponse
	r.decode(t, &sup)
	if !sup.Suppressed || sup.Reason != "unsubscribed" {
		t.Fatalf("suppressed answer: %+v", sup)
	}
	var stored int
	if err := te.db.NewSelect().Table("messages").ColumnExpr("count(*)").Where("contact_id = ?", out.ID).Scan(context.Background(), &stored); err != nil || stored != 0 {
		t.Fatalf("a suppressed message was stored: %d %v", stored, err)
	}
	mustStatus(t, te.do(http.MethodPost, "/messages/", key, map[string]any{"contact_id": in.ID, "text": "disk full", "topic": "alerts"}), http.StatusAccepted)
	// Without a topic the opted-out contact still gets messages.
	mustStatus(t, te.do(http.MethodPost, "/messages/", key, map[string]any{"contact_id": out.ID, "text": "hello"}), http.StatusAccepted)

	r = te.do(http.MethodPost, "/messages/", key, map[string]any{"contact_id": in.ID, "text": "x", "topic": "marketing"})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, d := errDetails(t, r); code != "invalid_field" || d["field"] != "topic" {
		t.Fatalf("unknown topic: %s %v", code, d)
	}
}

// TestTopics_BroadcastSkipsUnsubscribed: a broadcast with a topic stores opted-out contacts
// as skipped "unsubscribed" (list and segment audiences), preview-audience counts them, an
// unknown topic is 422.
func TestTopics_BroadcastSkipsUnsubscribed(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	tid, key := te.newTenant("Topics bc")
	bot, _ := te.newBot(key, "bc bot")
	a := te.newContact(tid, bot.BotAppID, 6001)
	b := te.newContact(tid, bot.BotAppID, 6002)
	for _, name := range []string{"reports", "alerts"} {
		mustStatus(t, te.do(http.MethodPost, "/topics/", key, map[string]any{"name": name}), http.StatusCreated)
	}
	mustStatus(t, te.do(http.MethodPut, "/contacts/"+b.ID.String()+"/topics/", key, map[string]any{"reports": false}), http.StatusOK)

	status := func(bcID, contactID uuid.UUID) string {
		t.Helper()
		var r struct {
			Status string `bun:"status"`
			Error  string `bun:"error"`
		}
		if err := te.db.NewSelect().Table("broadcast_recipients").Column("status", "error").
			Where("broadcast_id = ?", bcID).Where("contact_id = ?", contactID).Scan(ctx, &r); err != nil {
			t.Fatal(err)
		}
		return r.Status + "/" + r.Error
	}
	create := func(body map[string]any) broadcastResponse {
		t.Helper()
		body["name"], body["platform"], body["message_text"], body["bot_app_id"], body["draft"] = "weekly", "TELEGRAM", "report", bot.BotAppID, true
		r := te.do(http.MethodPost, "/broadcast/", key, body)
		mustStatus(t, r, http.StatusAccepted)
		var bc broadcastResponse
		r.decode(t, &bc)
		return bc
	}
	bc := create(map[string]any{"recipients": []uuid.UUID{a.ID, b.ID}, "topic": "reports"})
	if bc.Topic == nil || *bc.Topic != "reports" || bc.Skipped != 1 {
		t.Fatalf("broadcast: topic %v skipped %d", bc.Topic, bc.Skipped)
	}
	if sa, sb := status(bc.ID, a.ID), status(bc.ID, b.ID); sa != "queued/" || sb != "skipped/unsubscribed" {
		t.Fatalf("recipients: a %s, b %s", sa, sb)
	}
	seg := create(map[string]any{"segment": map[string]any{}, "topic": "reports"})
	if sa, sb := status(seg.ID, a.ID), status(seg.ID, b.ID); sa != "queued/" || sb != "skipped/unsubscribed" {
		t.Fatalf("segment recipients: a %s, b %s", sa, sb)
	}
	// Another topic (b subscribed) and no topic: nobody skipped.
	for _, body := range []map[string]any{{"recipients": []uuid.UUID{a.ID, b.ID}, "topic": "alerts"}, {"recipients": []uuid.UUID{a.ID, b.ID}}} {
		other := create(body)
		if sb := status(other.ID, b.ID); sb != "queued/" {
			t.Fatalf("%v: b is %s", body, sb)
		}
	}
	// PUT /broadcast/{id}/ keeps the rule: switched to alerts, b is queued again.
	r := te.do(http.MethodPut, "/broadcast/"+bc.ID.String()+"/", key, map[string]any{"name": "weekly", "platform": "TELEGRAM",
		"message_text": "report", "bot_app_id": bot.BotAppID, "draft": true, "recipients": []uuid.UUID{a.ID, b.ID}, "topic": "alerts"})
	mustStatus(t, r, http.StatusOK)
	if sb := status(bc.ID, b.ID); sb != "queued/" {
		t.Fatalf("after PUT with topic alerts: b is %s", sb)
	}

	r = te.do(http.MethodPost, "/broadcast/preview-audience/", key, map[string]any{"bot_app_id": bot.BotAppID, "segment": map[string]any{}, "topic": "reports"})
	mustStatus(t, r, http.StatusOK)
	var pv previewAudienceResponse
	r.decode(t, &pv)
	if pv.Count != 2 || pv.Unsubscribed != 1 {
		t.Fatalf("preview: %+v", pv)
	}
	r = te.do(http.MethodPost, "/broadcast/", key, map[string]any{"name": "x", "platform": "TELEGRAM", "message_text": "x",
		"bot_app_id": bot.BotAppID, "recipients": []uuid.UUID{a.ID}, "topic": "nope"})
	mustStatus(t, r, http.StatusUnprocessableEntity)
	if code, d := errDetails(t, r); code != "invalid_field" || d["field"] != "topic" {
		t.Fatalf("unknown topic: %s %v", code, d)
	}
}

// TestTopics_SettingsKeyboard: /settings sends a keyboard with a button per topic; pressing
// one toggles the stored preference, answers the callback query and updates the keyboard.
func TestTopics_SettingsKeyboard(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("Topics tg")
	b := te.newTplBot(key, "settings bot")
	const user = 7100

	// No topics yet: a plain answer.
	te.deliverText(b, 1, user, "Ann", "/settings")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, user); m.Text != telegram.SettingsNoTopicsText || m.ReplyMarkup != "" {
		t.Fatalf("without topics: %q %q", m.Text, m.ReplyMarkup)
	}

	for _, name := range []string{"alerts", "reports"} {
		mustStatus(t, te.do(http.MethodPost, "/topics/", key, map[string]any{"name": name}), http.StatusCreated)
	}
	var cs listPage[contactResponse]
	te.do(http.MethodGet, "/contacts/", key, nil).decode(t, &cs)
	if len(cs.Items) != 1 {
		t.Fatalf("contacts: %d", len(cs.Items))
	}
	contactID := cs.Items[0].ID
	mustStatus(t, te.do(http.MethodPut, "/contacts/"+contactID.String()+"/topics/", key, map[string]any{"reports": false}), http.StatusOK)

	te.deliverText(b, 2, user, "Ann", "/settings")
	te.processAndSend(b.BotAppID)
	m := te.lastSent(b, user)
	if m.Text != telegram.SettingsReplyText {
		t.Fatalf("settings text: %q", m.Text)
	}
	kb := keyboardOf(t, m.ReplyMarkup)
	if len(kb) != 2 || kb[0].Text != "✅ alerts" || kb[1].Text != "❌ reports" || !strings.HasPrefix(kb[0].Data, telegram.TopicCallbackPrefix) || len(kb[0].Data) > 64 {
		t.Fatalf("keyboard: %+v", kb)
	}

	// Press "✅ alerts": unsubscribed from alerts, the query answered, the keyboard updated.
	press := func(updateID int64, data string) {
		t.Helper()
		req := request(t, http.MethodPost, "/telegram/v1/webhooks/"+b.BotAppID.String()+"/", "", map[string]any{
			"update_id": updateID,
			"callback_query": map[string]any{"id": "cq" + data[len(data)-4:], "chat_instance": "1", "data": data,
				"from":    map[string]any{"id": user, "is_bot": false, "first_name": "Ann"},
				"message": map[string]any{"message_id": m.MessageID, "date": time.Now().Unix(), "chat": map[string]any{"id": user, "type": "private"}, "text": m.Text}},
		})
		req.Header.Set(telegram.SecretHeader, b.secret)
		mustStatus(t, te.serve(req), http.StatusOK)
		if _, err := te.tg.ProcessPending(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	press(3, kb[0].Data)
	if p := te.prefsOf(key, contactID); p["alerts"] || p["reports"] {
		t.Fatalf("after pressing alerts: %v", p)
	}
	edits := te.waitCalls(b.info.ID, "editMessageReplyMarkup", 1)
	if got := keyboardOf(t, edits[0].Params["reply_markup"]); len(got) != 2 || got[0].Text != "❌ alerts" || got[1].Text != "❌ reports" {
		t.Fatalf("edited keyboard: %+v", got)
	}
	if kbNow := keyboardOf(t, te.lastSent(b, user).ReplyMarkup); kbNow[0].Text != "❌ alerts" {
		t.Fatalf("tgemu's message keyboard: %+v", kbNow)
	}
	answers := te.waitCalls(b.info.ID, "answerCallbackQuery", 1)
	if answers[0].Params["text"] != "❌ Unsubscribed from alerts" {
		t.Fatalf("answer: %v", answers[0].Params)
	}

	// Press "❌ reports": subscribed again.
	press(4, kb[1].Data)
	if p := te.prefsOf(key, contactID); !p["reports"] || p["alerts"] {
		t.Fatalf("after pressing reports: %v", p)
	}
	te.waitCalls(b.info.ID, "editMessageReplyMarkup", 2)

	// A button of a deleted topic changes nothing and is answered as such.
	mustStatus(t, te.do(http.MethodDelete, "/topics/alerts/", key, nil), http.StatusNoContent)
	press(5, kb[0].Data)
	answers = te.waitCalls(b.info.ID, "answerCallbackQuery", 3)
	if answers[2].Params["text"] != "This topic no longer exists." {
		t.Fatalf("answer for a deleted topic: %v", answers[2].Params)
	}
}

type button struct {
	Text string `json:"text"`
	Data string `json:"callback_data"`
}

// keyboardOf flattens a reply_markup JSON text into its buttons.
func keyboardOf(t *testing.T, raw string) []button {
	t.Helper()
	var k struct {
		InlineKeyboard [][]button `json:"inline_keyboard"`
	}
	if err := json.Unmarshal([]byte(raw), &k); err != nil {
		t.Fatalf("reply_markup %q: %v", raw, err)
	}
	var out []button
	for _, row := range k.InlineKeyboard {
		out = append(out, row...)
	}
	return out
}

// waitCalls waits (up to 5 s) until tgemu logged n successful calls of method by bot.
func (te *testEnv) waitCalls(botID int64, method string, n int) []tgemu.Call {
	te.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		var ok []tgemu.Call
		for _, c := range te.emu.Calls(botID, method) {
			if c.Status == http.StatusOK {
				ok = append(ok, c)
			}
		}
		if len(ok) >= n {
			return ok
		}
		if time.Now().After(deadline) {
			te.t.Fatalf("%s: %d successful calls, want %d (all: %+v)", method, len(ok), n, te.emu.Calls(botID, method))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
