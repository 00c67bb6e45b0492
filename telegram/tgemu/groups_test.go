package tgemu

import (
	"encoding/json"
	"testing"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// TestBotChatMember: the my_chat_member updates of BotChatMember decode with gotgbot (the
// bot's previous status as old_chat_member, rights merged into an administrator), bad input
// is refused, and sendMessage to the chat works while the bot is in it, 403 after it is
// kicked.
func TestBotChatMember(t *testing.T) {
	s := NewTest(t, Options{})
	info := s.CreateBot("groupsbot", "Groups")
	owner := User{ID: 7, FirstName: "Olga"}
	chat := GroupChat{ID: -1001, Type: "supergroup", Title: "Team", IsForum: true}
	decode := func(id int64) *gotgbot.ChatMemberUpdated {
		t.Helper()
		b := s.bot(info.ID)
		b.mu.Lock()
		raw := b.history[id].raw
		b.mu.Unlock()
		var u gotgbot.Update
		if err := json.Unmarshal(raw, &u); err != nil || u.MyChatMember == nil {
			t.Fatalf("decode %s: %v", raw, err)
		}
		return u.MyChatMember
	}

	id, err := s.BotChatMember(info.ID, chat, owner, "member", nil)
	if err != nil {
		t.Fatal(err)
	}
	cm := decode(id)
	if cm.Chat.Id != chat.ID || cm.Chat.Type != "supergroup" || !cm.Chat.IsForum || cm.OldChatMember.GetStatus() != "left" ||
		cm.NewChatMember.GetStatus() != "member" || cm.NewChatMember.GetUser().Id != info.ID || cm.From.Id != owner.ID {
		t.Fatalf("joined: %+v", cm)
	}
	id, err = s.BotChatMember(info.ID, chat, owner, "administrator", map[string]any{"can_manage_topics": true})
	if err != nil {
		t.Fatal(err)
	}
	cm = decode(id)
	admin, ok := cm.NewChatMember.(gotgbot.ChatMemberAdministrator)
	if !ok || !admin.CanManageTopics || cm.OldChatMember.GetStatus() != "member" {
		t.Fatalf("promoted: %+v", cm)
	}
	if res := s.bot(info.ID).sendMessage(t.Context(), params{vals: map[string]string{"chat_id": "-1001", "text": "hi"}}); res.status != 200 {
		t.Fatalf("sendMessage as administrator: %+v", res)
	}
	if _, err := s.BotChatMember(info.ID, chat, owner, "kicked", nil); err != nil {
		t.Fatal(err)
	}
	if res := s.bot(info.ID).sendMessage(t.Context(), params{vals: map[string]string{"chat_id": "-1001", "text": "hi"}}); res.status == 200 {
		t.Fatalf("sendMessage after kicked: %+v", res)
	}

	for _, bad := range []struct {
		chat   GroupChat
		status string
	}{
		{GroupChat{ID: 5}, "member"},
		{GroupChat{ID: -5, Type: "private"}, "member"},
		{GroupChat{ID: -5}, "owner"},
	} {
		if _, err := s.BotChatMember(info.ID, bad.chat, owner, bad.status, nil); err == nil {
			t.Fatalf("%+v %q accepted", bad.chat, bad.status)
		}
	}
}
