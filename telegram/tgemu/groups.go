package tgemu

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"
)

// GroupChat is a group, supergroup or channel for BotChatMember
// (core.telegram.org/bots/api#chat). ID must be negative; Type is "group" (the default),
// "supergroup" or "channel"; IsForum marks a supergroup with topics.
type GroupChat struct {
	ID       int64  `json:"id"`
	Type     string `json:"type"`
	Title    string `json:"title"`
	Username string `json:"username,omitempty"`
	IsForum  bool   `json:"is_forum,omitempty"`
}

// jsGroupChat is a Chat of type group, supergroup or channel.
type jsGroupChat struct {
	ID       int64  `json:"id"`
	Type     string `json:"type"`
	Title    string `json:"title,omitempty"`
	Username string `json:"username,omitempty"`
	IsForum  bool   `json:"is_forum,omitempty"`
}

// botMemberStatuses are the statuses BotChatMember accepts (core.telegram.org/bots/api#chatmember).
var botMemberStatuses = []string{"administrator", "member", "restricted", "left", "kicked"}

// BotChatMember simulates a change of the bot's own membership in a group, supergroup or
// channel: a my_chat_member update (core.telegram.org/bots/api#chatmemberupdated) from the
// user from, whose old_chat_member is the bot's previous status in the chat ("left" the
// first time) and new_chat_member the bot with status and, for "administrator" or
// "restricted", the rights (e.g. {"can_post_messages": true, "can_manage_topics": true})
// merged into it. The chat becomes known to the emulator (like AddGroup), so sendMessage to
// it succeeds while the bot is in it; after "left" or "kicked" sendMessage answers 403.
// Examples: the bot added to a group (status "member"), promoted ("administrator" with
// rights), removed ("kicked").
func (s *Server) BotChatMember(botID int64, chat GroupChat, from User, status string, rights map[string]any) (int64, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return 0, err
	}
	if chat.ID >= 0 {
		return 0, fmt.Errorf("tgemu: group chat id must be negative, got %d", chat.ID)
	}
	if chat.Type == "" {
		chat.Type = "group"
	}
	if !slices.Contains([]string{"group", "supergroup", "channel"}, chat.Type) {
		return 0, fmt.Errorf("tgemu: chat type must be group, supergroup or channel, got %q", chat.Type)
	}
	if chat.Title == "" {
		chat.Title = "Group"
	}
	if !slices.Contains(botMemberStatuses, status) {
		return 0, fmt.Errorf("tgemu: status must be one of %v, got %q", botMemberStatuses, status)
	}
	if from, err = normalizeUser(from); err != nil {
		return 0, err
	}
	return b.enqueue("my_chat_member", func(id int64) (json.RawMessage, error) {
		c := b.chats[chat.ID]
		if c == nil {
			c = &chatState{}
			b.chats[chat.ID] = c
		}
		c.group = chat.Title
		old := c.botStatus
		if old == "" {
			old = "left"
		}
		c.botStatus = status
		c.blocked = status == "left" || status == "kicked"
		member := func(st string, extra map[string]any) map[string]any {
			m := map[string]any{"user": b.botUser(), "status": st}
			if st == "kicked" || st == "restricted" {
				m["until_date"] = 0
			}
			if st == "restricted" {
				m["is_member"] = true
			}
			for k, v := range extra {
				m[k] = v
			}
			return m
		}
		var newExtra map[string]any
		if status == "administrator" || status == "restricted" {
			newExtra = rights
		}
		return json.Marshal(map[string]any{
			"update_id": id,
			"my_chat_member": map[string]any{
				"chat":            jsGroupChat(chat),
				"from":            userJSON(from),
				"date":            time.Now().Unix(),
				"old_chat_member": member(old, nil),
				"new_chat_member": member(status, newExtra),
			},
		})
	}, 0)
}

// ctlBotChatMember is POST /control/bots/{bot_id}/chat-member: BotChatMember.
func (s *Server) ctlBotChatMember(w http.ResponseWriter, r *http.Request, b *bot) {
	var req struct {
		Chat   GroupChat      `json:"chat"`
		From   User           `json:"from"`
		Status string         `json:"status"`
		Rights map[string]any `json:"rights"`
	}
	if err := decodeBody(r, &req); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, err := s.BotChatMember(b.info.ID, req.Chat, req.From, req.Status, req.Rights)
	if err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, updateIDResp{id})
}
