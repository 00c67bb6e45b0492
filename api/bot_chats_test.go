package api

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestBotChats: my_chat_member updates in groups, supergroups and channels, delivered by
// tgemu to the webhook over HTTP and processed, are listed by GET .../chats/ with type,
// status and rights (joined, promoted, kicked; filters; a group migrated to a supergroup);
// POST /messages/ with chat_id (and message_thread_id for a forum) reaches tgemu through
// the send path; unknown chats, chats the bot cannot post to and other tenants' bots are
// refused.
func TestBotChats(t *testing.T) {
	te := newServedEnv(t)
	te.e.Use(exposeRoute)
	te.validate = true
	_, key := te.newTenant("groups")
	bot, info := te.newBot(key, "Groups Bot")
	base := "/telegram/v1/bots/" + bot.BotAppID.String() + "/chats/"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	owner := tgemu.User{ID: 5001, FirstName: "Olga"}
	group := tgemu.GroupChat{ID: -4001, Type: "group", Title: "Friends"}
	forum := tgemu.GroupChat{ID: -1004002, Type: "supergroup", Title: "Team", Username: "team_chat", IsForum: true}
	channel := tgemu.GroupChat{ID: -1004003, Type: "channel", Title: "News"}
	quiet := tgemu.GroupChat{ID: -1004004, Type: "channel", Title: "Quiet"}

	member := func(chat tgemu.GroupChat, status string, rights map[string]any) {
		t.Helper()
		if _, err := te.emu.BotChatMember(info.ID, chat, owner, status, rights); err != nil {
			t.Fatal(err)
		}
	}
	process := func() {
		t.Helper()
		if err := te.emu.WaitIdle(ctx, info.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := te.tg.ProcessPending(ctx); err != nil {
			t.Fatal(err)
		}
	}
	list := func(query string) map[int64]botChatResponse {
		t.Helper()
		r := te.do(http.MethodGet, base+query, key, nil)
		mustStatus(t, r, http.StatusOK)
		var p listPage[botChatResponse]
		r.decode(t, &p)
		out := map[int64]botChatResponse{}
		for _, c := range p.Items {
			out[c.ChatID] = c
		}
		return out
	}
	rights := func(c botChatResponse) map[string]any {
		var m map[string]any
		if err := json.Unmarshal(c.Rights, &m); err != nil {
			t.Fatalf("rights %s: %v", c.Rights, err)
		}
		return m
	}

	// Added to a group, a forum supergroup, a channel (administrator) and another channel
	// (member: cannot post).
	member(group, "member", nil)
	member(forum, "member", nil)
	member(channel, "administrator", map[string]any{"can_post_messages": true, "can_delete_messages": false})
	member(quiet, "member", nil)
	process()
	got := list("")
	if len(got) != 4 {
		t.Fatalf("listed %d chats: %+v", len(got), got)
	}
	if c := got[group.ID]; c.Type != "group" || c.Title != "Friends" || c.Status != "member" || len(rights(c)) != 0 || c.BotAppID != bot.BotAppID {
		t.Fatalf("group: %+v", c)
	}
	if c := got[forum.ID]; c.Type != "supergroup" || !c.IsForum || c.Username != "team_chat" || c.Status != "member" {
		t.Fatalf("forum: %+v", c)
	}
	if c := got[channel.ID]; c.Type != "channel" || c.Status != "administrator" || rights(c)["can_post_messages"] != true {
		t.Fatalf("channel: %+v %s", c, c.Rights)
	}
	var evErrs []string
	if err := te.db.NewSelect().Table("webhook_events").Column("process_error").Where("bot_id = ?", bot.BotAppID).Scan(ctx, &evErrs); err != nil {
		t.Fatal(err)
	}
	for _, e := range evErrs {
		if e != "" {
			t.Fatalf("event process_error %q", e)
		}
	}

	// Promoted in the forum: administrator with its rights.
	member(forum, "administrator", map[string]any{"can_manage_topics": true, "can_delete_messages": true, "can_pin_messages": true})
	process()
	c := list("")[forum.ID]
	if r := rights(c); c.Status != "administrator" || r["can_manage_topics"] != true || r["can_delete_messages"] != true || r["user"] != nil || r["status"] != nil {
		t.Fatalf("promoted: %+v %s", c, c.Rights)
	}

	// Filters.
	if got := list("?status=administrator"); len(got) != 2 || got[forum.ID].ChatID == 0 || got[channel.ID].ChatID == 0 {
		t.Fatalf("?status=administrator: %+v", got)
	}
	if got := list("?type=channel&status=member"); len(got) != 1 || got[quiet.ID].ChatID == 0 {
		t.Fatalf("?type=channel&status=member: %+v", got)
	}
	wantError(t, te.do(http.MethodGet, base+"?status=owner", key, nil), http.StatusUnprocessableEntity, "invalid_field", "status")
	wantError(t, te.do(http.MethodGet, base+"?type=private", key, nil), http.StatusUnprocessableEntity, "invalid_field", "type")
	r := te.do(http.MethodGet, base+"?limit=3", key, nil)
	mustStatus(t, r, http.StatusOK)
	var p listPage[botChatResponse]
	r.decode(t, &p)
	if len(p.Items) != 3 || p.NextCursor == "" {
		t.Fatalf("page 1: %s", r.Body)
	}
	r = te.do(http.MethodGet, base+"?limit=3&cursor="+p.NextCursor, key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &p)
	if len(p.Items) != 1 || p.NextCursor != "" {
		t.Fatalf("page 2: %s", r.Body)
	}

	// POST /messages/ to the forum's topic and to the group: through the send path to tgemu.
	send := func(body map[string]any) messageResponse {
		t.Helper()
		r := te.do(http.MethodPost, "/messages/", key, body)
		mustStatus(t, r, http.StatusAccepted)
		var m messageResponse
		r.decode(t, &m)
		task, err := telegram.NewSendTask(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := te.tg.HandleSend(ctx, task); err != nil {
			t.Fatalf("HandleSend: %v", err)
		}
		return m
	}
	m := send(map[string]any{"bot_app_id": bot.BotAppID, "chat_id": forum.ID, "message_thread_id": 7, "text": "Hi {first_name|team}"})
	if m.ChatID != forum.ID || m.ContactID != nil || m.MessageThreadID != 7 || m.Text != "Hi team" {
		t.Fatalf("created %+v", m)
	}
	calls := te.emu.Calls(info.ID, "sendMessage")
	if last := calls[len(calls)-1]; last.Params["chat_id"] != "-1004002" || last.Params["message_thread_id"] != "7" || last.Params["text"] != "Hi team" {
		t.Fatalf("sendMessage %+v", last.Params)
	}
	r = te.do(http.MethodGet, "/messages/"+m.ID.String()+"/", key, nil)
	mustStatus(t, r, http.StatusOK)
	var gotMsg messageResponse
	r.decode(t, &gotMsg)
	if gotMsg.Status != "sent" || gotMsg.MessageThreadID != 7 {
		t.Fatalf("GET %s", r.Body)
	}
	send(map[string]any{"bot_app_id": bot.BotAppID, "chat_id": group.ID, "text": "hello group"})
	send(map[string]any{"bot_app_id": bot.BotAppID, "chat_id": channel.ID, "text": "news"})
	if s := te.emu.SentTo(info.ID, group.ID); len(s) != 1 || s[0].Text != "hello group" {
		t.Fatalf("group got %+v", s)
	}
	if s := te.emu.SentTo(info.ID, channel.ID); len(s) != 1 {
		t.Fatalf("channel got %+v", s)
	}

	// Kicked from the group: listed as kicked, and no longer addressable.
	member(group, "kicked", nil)
	process()
	if c := list("")[group.ID]; c.Status != "kicked" {
		t.Fatalf("kicked: %+v", c)
	}
	if got := list("?status=kicked"); len(got) != 1 {
		t.Fatalf("?status=kicked: %+v", got)
	}

	before := te.emu.SentCount(info.ID)
	msg := func(chatID int64, extra ...any) map[string]any {
		b := map[string]any{"bot_app_id": bot.BotAppID, "chat_id": chatID, "text": "x"}
		for i := 0; i+1 < len(extra); i += 2 {
			b[extra[i].(string)] = extra[i+1]
		}
		return b
	}
	wantError(t, te.do(http.MethodPost, "/messages/", key, msg(group.ID)), http.StatusUnprocessableEntity, "chat_not_available", "chat_id")
	wantError(t, te.do(http.MethodPost, "/messages/", key, msg(quiet.ID)), http.StatusUnprocessableEntity, "chat_not_available", "chat_id")
	wantError(t, te.do(http.MethodPost, "/messages/", key, msg(-999)), http.StatusNotFound, "chat_not_found", "")
	wantError(t, te.do(http.MethodPost, "/messages/", key, msg(channel.ID, "message_thread_id", 3)), http.StatusUnprocessableEntity, "invalid_field", "message_thread_id")
	wantError(t, te.do(http.MethodPost, "/messages/", key, msg(forum.ID, "contact_id", bot.BotAppID)), http.StatusUnprocessableEntity, "invalid_field", "chat_id")
	wantError(t, te.do(http.MethodPost, "/messages/", key, map[string]any{"chat_id": forum.ID, "text": "x"}), http.StatusUnprocessableEntity, "invalid_field", "bot_app_id")
	wantError(t, te.do(http.MethodPost, "/messages/", key, map[string]any{"bot_app_id": bot.BotAppID, "text": "x", "message_thread_id": 3}), http.StatusUnprocessableEntity, "invalid_field", "message_thread_id")

	// Another tenant: A's bot is 404; its own bot is not in A's chats.
	_, keyB := te.newTenant("other")
	botB, _ := te.newBot(keyB, "Other Bot")
	wantError(t, te.do(http.MethodGet, base, keyB, nil), http.StatusNotFound, "bot_not_found", "")
	wantError(t, te.do(http.MethodPost, "/messages/", keyB, map[string]any{"bot_app_id": bot.BotAppID, "chat_id": forum.ID, "text": "x"}), http.StatusNotFound, "bot_not_found", "")
	wantError(t, te.do(http.MethodPost, "/messages/", keyB, map[string]any{"bot_app_id": botB.BotAppID, "chat_id": forum.ID, "text": "x"}), http.StatusNotFound, "chat_not_found", "")
	r = te.do(http.MethodGet, "/telegram/v1/bots/"+botB.BotAppID.String()+"/chats/", keyB, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &p)
	if len(p.Items) != 0 {
		t.Fatalf("B lists %s", r.Body)
	}
	if n := te.emu.SentCount(info.ID); n != before {
		t.Fatalf("refused messages sent %d", n-before)
	}

	// A late update older than the stored one (by its date) does not overwrite it.
	if _, err := te.emu.PushUpdate(info.ID, map[string]any{"my_chat_member": map[string]any{
		"chat":            map[string]any{"id": forum.ID, "type": "supergroup", "title": "Team", "is_forum": true},
		"from":            map[string]any{"id": owner.ID, "is_bot": false, "first_name": owner.FirstName},
		"date":            time.Now().Add(-time.Hour).Unix(),
		"old_chat_member": map[string]any{"user": map[string]any{"id": info.ID, "is_bot": true, "first_name": "Bot"}, "status": "left"},
		"new_chat_member": map[string]any{"user": map[string]any{"id": info.ID, "is_bot": true, "first_name": "Bot"}, "status": "member"},
	}}); err != nil {
		t.Fatal(err)
	}
	process()
	if c := list("")[forum.ID]; c.Status != "administrator" {
		t.Fatalf("a late older update overwrote the chat: %+v", c)
	}

	// A group migrated to a supergroup: its row moves to the new chat id.
	old := tgemu.GroupChat{ID: -4005, Type: "group", Title: "Club"}
	member(old, "member", nil)
	process()
	if _, err := te.emu.PushUpdate(info.ID, map[string]any{"message": map[string]any{
		"message_id": 1, "date": time.Now().Unix(), "migrate_to_chat_id": int64(-1004005),
		"chat": map[string]any{"id": old.ID, "type": "group", "title": "Club"},
		"from": map[string]any{"id": owner.ID, "is_bot": false, "first_name": owner.FirstName},
	}}); err != nil {
		t.Fatal(err)
	}
	process()
	got = list("")
	if c, ok := got[-1004005]; !ok || c.Type != "supergroup" || c.Title != "Club" || c.Status != "member" {
		t.Fatalf("migrated: %+v", got)
	}
	if _, ok := got[old.ID]; ok {
		t.Fatalf("old group still listed: %+v", got)
	}
}
