package tgemu

import (
	"context"
	"encoding/json"
	"strings"
)

// editMessageReplyMarkup: core.telegram.org/bots/api#editmessagereplymarkup, for messages
// the bot sent (chat_id and message_id; inline_message_id is not supported). The recorded
// SentMessage's ReplyMarkup becomes the new markup ("" when reply_markup is absent or has
// no buttons: the keyboard is removed). Like Telegram: "message to edit not found" for an
// unknown message, "message is not modified" when the markup is the same.
func (b *bot) editMessageReplyMarkup(_ context.Context, p params) apiResult {
	chatID, bad := parseChatID(p)
	if bad != nil {
		return *bad
	}
	msgID, has, err := p.int64("message_id")
	if err != nil || !has || msgID <= 0 {
		return badRequest("message identifier is not specified")
	}
	var markup map[string]json.RawMessage
	if _, err := p.json("reply_markup", &markup); err != nil {
		return badRequest("can't parse reply keyboard markup JSON object")
	}
	newMarkup := ""
	if raw, ok := markup["inline_keyboard"]; ok && strings.TrimSpace(string(raw)) != "[]" && string(raw) != "null" {
		newMarkup = strings.TrimSpace(p.str("reply_markup"))
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i := len(b.sent) - 1; i >= 0; i-- {
		m := &b.sent[i]
		if m.ChatID != chatID || m.MessageID != msgID {
			continue
		}
		if sameJSON(m.ReplyMarkup, newMarkup) {
			return badRequest("message is not modified: specified new message content and reply markup are exactly the same as a current content and reply markup of the message")
		}
		m.ReplyMarkup = newMarkup
		c := b.chats[chatID]
		chat := jsChat{ID: chatID, Type: "private"}
		if c != nil {
			chat = privateChat(c.user)
			if c.group != "" {
				chat = jsChat{ID: chatID, Type: "group", Title: c.group}
			}
		}
		from := b.botUser()
		msg := jsMessage{MessageID: msgID, From: &from, Chat: chat, Date: m.At.Unix(), Text: plainText(m.Text, m.ParseMode)}
		if newMarkup != "" {
			msg.ReplyMarkup = json.RawMessage(newMarkup)
		}
		return ok(msg)
	}
	return badRequest("message to edit not found")
}

// sameJSON reports whether two JSON texts ("" for none) hold the same value.
func sameJSON(a, b string) bool {
	if a == "" || b == "" {
		return a == b
	}
	var va, vb any
	if json.Unmarshal([]byte(a), &va) != nil || json.Unmarshal([]byte(b), &vb) != nil {
		return a == b
	}
	ja, _ := json.Marshal(va)
	jb, _ := json.Marshal(vb)
	return string(ja) == string(jb)
}
