package tgemu

import (
	"context"
	"strconv"
	"strings"
)

// Chat lookups (core.telegram.org/bots/api#getchat, #getchatmember, #getchatmembercount)
// over the emulator's known chats: the private chats of simulated users who talked to the
// bot (SendText, AddUser, Block). Any other chat_id (an unknown id, "@username") is
// "Bad Request: chat not found", as Telegram answers for a chat the bot is not in.

// jsChatFullInfo is the part of ChatFullInfo (core.telegram.org/bots/api#chatfullinfo) a
// private chat has in the emulator. accent_color_id and max_reaction_count are required
// fields of the type.
type jsChatFullInfo struct {
	jsChat
	AccentColorID    int `json:"accent_color_id"`
	MaxReactionCount int `json:"max_reaction_count"`
}

// knownChat returns the private chat chat_id names, or Telegram's error.
func (b *bot) knownChat(p params) (*chatState, *apiResult) {
	id, bad := parseChatID(p)
	if bad != nil {
		return nil, bad
	}
	c := b.chats[id]
	if c == nil {
		r := badRequest("chat not found")
		return nil, &r
	}
	return c, nil
}

// getChat: core.telegram.org/bots/api#getchat. A private chat answers its ChatFullInfo
// (id, type "private", the user's names); it works even when the user blocked the bot. A
// group added with AddGroup answers type "group" and its title.
func (b *bot) getChat(_ context.Context, p params) apiResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	c, bad := b.knownChat(p)
	if bad != nil {
		return *bad
	}
	if c.group != "" { // AddGroup
		return ok(jsChatFullInfo{jsChat: jsChat{ID: c.id(p), Type: "group", Title: c.group}})
	}
	return ok(jsChatFullInfo{jsChat: privateChat(c.user)})
}

// getChatMember: core.telegram.org/bots/api#getchatmember. In a private chat the members are
// the user (status "member") and the bot ("member", or "kicked" after the user blocked it);
// any other user_id is "Bad Request: user not found".
func (b *bot) getChatMember(_ context.Context, p params) apiResult {
	uid, err := strconv.ParseInt(strings.TrimSpace(p.str("user_id")), 10, 64)
	if err != nil || uid == 0 {
		return badRequest("user not found")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c, bad := b.knownChat(p)
	if bad != nil {
		return *bad
	}
	switch uid {
	case c.user.ID:
		return ok(jsChatMember{User: userJSON(c.user), Status: "member"})
	case b.info.ID:
		if c.blocked {
			zero := int64(0)
			return ok(jsChatMember{User: b.botUser(), Status: "kicked", UntilDate: &zero})
		}
		return ok(jsChatMember{User: b.botUser(), Status: "member"})
	}
	return badRequest("user not found")
}

// getChatMemberCount: core.telegram.org/bots/api#getchatmembercount. A private chat has two
// members, the user and the bot.
func (b *bot) getChatMemberCount(_ context.Context, p params) apiResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, bad := b.knownChat(p); bad != nil {
		return *bad
	}
	return ok(2)
}

// id is the chat's id as chat_id named it (a known chat; parseChatID already passed).
func (c *chatState) id(p params) int64 {
	id, _ := parseChatID(p)
	return id
}
