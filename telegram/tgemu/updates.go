package tgemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode/utf16"
)

var errServerClosed = errors.New("tgemu: server closed")

// updateTypes are the Update fields known to Bot API 9.x (gotgbot
// v2.0.0-rc.36 gen_types.go Update), i.e. the valid allowed_updates values.
var updateTypes = []string{
	"message", "edited_message", "channel_post", "edited_channel_post",
	"business_connection", "business_message", "edited_business_message",
	"deleted_business_messages", "guest_message", "message_reaction", "message_reaction_count",
	"inline_query", "chosen_inline_result", "callback_query", "shipping_query",
	"pre_checkout_query", "purchased_paid_media", "poll", "poll_answer",
	"my_chat_member", "chat_member", "chat_join_request", "chat_boost",
	"removed_chat_boost", "managed_bot", "subscription",
}

// notByDefault are the types only delivered when listed explicitly: "by
// default, you will receive all update types except chat_member,
// message_reaction, and message_reaction_count"
// (core.telegram.org/bots/api#setwebhook).
var notByDefault = []string{"chat_member", "message_reaction", "message_reaction_count"}

// normalizeAllowed turns an allowed_updates list into the stored form the
// way the Bot API server does: names are lower-cased, unknown names ignored,
// and a list with no known name (including []) means the default set (nil).
func normalizeAllowed(list []string) []string {
	var out []string
	for _, n := range list {
		n = strings.ToLower(strings.TrimSpace(n))
		if slices.Contains(updateTypes, n) && !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

// allowedLocked reports whether an update of kind passes b.allowed.
func (b *bot) allowedLocked(kind string) bool {
	if b.allowed == nil {
		return !slices.Contains(notByDefault, kind)
	}
	return slices.Contains(b.allowed, kind)
}

// enqueue assigns an update_id (unless id > 0), stores the update and queues
// it for delivery unless allowed_updates excludes its type (Telegram filters
// when an update is created, so such an update never becomes pending; its
// update_id is still consumed).
func (b *bot) enqueue(kind string, build func(id int64) (json.RawMessage, error), id int64) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if id <= 0 {
		id = b.nextUpdateID
	}
	raw, err := build(id)
	if err != nil {
		return 0, err
	}
	if id >= b.nextUpdateID {
		b.nextUpdateID = id + 1
	}
	u := &update{id: id, kind: kind, raw: raw}
	b.history[id] = u
	if b.allowedLocked(kind) {
		b.queue = append(b.queue, u)
		b.notifyLocked()
	}
	return id, nil
}

// Telegram Update JSON shapes (core.telegram.org/bots/api#update).
type (
	jsUser struct {
		ID                      int64  `json:"id"`
		IsBot                   bool   `json:"is_bot"`
		FirstName               string `json:"first_name"`
		LastName                string `json:"last_name,omitempty"`
		Username                string `json:"username,omitempty"`
		LanguageCode            string `json:"language_code,omitempty"`
		CanJoinGroups           *bool  `json:"can_join_groups,omitempty"`
		CanReadAllGroupMessages *bool  `json:"can_read_all_group_messages,omitempty"`
		SupportsInlineQueries   *bool  `json:"supports_inline_queries,omitempty"`
	}
	jsChat struct {
		ID        int64  `json:"id"`
		Type      string `json:"type"`
		FirstName string `json:"first_name,omitempty"`
		LastName  string `json:"last_name,omitempty"`
		Username  string `json:"username,omitempty"`
		Title     string `json:"title,omitempty"`
	}
	jsEntity struct {
		Type   string `json:"type"`
		Offset int    `json:"offset"`
		Length int    `json:"length"`
	}
	jsMessage struct {
		MessageID   int64           `json:"message_id"`
		From        *jsUser         `json:"from,omitempty"`
		Chat        jsChat          `json:"chat"`
		Date        int64           `json:"date"`
		Text        string          `json:"text,omitempty"`
		Entities    []jsEntity      `json:"entities,omitempty"`
		ReplyMarkup json.RawMessage `json:"reply_markup,omitempty"`
	}
	jsChatMember struct {
		User      jsUser `json:"user"`
		Status    string `json:"status"`
		UntilDate *int64 `json:"until_date,omitempty"`
	}
	jsChatMemberUpdated struct {
		Chat          jsChat       `json:"chat"`
		From          jsUser       `json:"from"`
		Date          int64        `json:"date"`
		OldChatMember jsChatMember `json:"old_chat_member"`
		NewChatMember jsChatMember `json:"new_chat_member"`
	}
	jsUpdate struct {
		UpdateID     int64                `json:"update_id"`
		Message      *jsMessage           `json:"message,omitempty"`
		MyChatMember *jsChatMemberUpdated `json:"my_chat_member,omitempty"`
	}
)

func userJSON(u User) jsUser {
	return jsUser{ID: u.ID, FirstName: u.FirstName, LastName: u.LastName, Username: u.Username, LanguageCode: u.LanguageCode}
}

func privateChat(u User) jsChat {
	return jsChat{ID: u.ID, Type: "private", FirstName: u.FirstName, LastName: u.LastName, Username: u.Username}
}

func (b *bot) botUser() jsUser {
	return jsUser{ID: b.info.ID, IsBot: true, FirstName: b.info.FirstName, Username: b.info.Username}
}

func normalizeUser(u User) (User, error) {
	if u.ID <= 0 {
		return u, fmt.Errorf("tgemu: user id must be positive, got %d", u.ID)
	}
	if u.FirstName == "" {
		u.FirstName = "User"
	}
	return u, nil
}

// chatLocked returns (creating) the private chat with u and refreshes the
// user's profile. Caller holds b.mu.
func (b *bot) chatLocked(u User) *chatState {
	c := b.chats[u.ID]
	if c == nil {
		c = &chatState{}
		b.chats[u.ID] = c
	}
	c.user = u
	return c
}

// utf16Len is the length of s in UTF-16 code units, the unit of entity
// offsets (core.telegram.org/bots/api#messageentity).
func utf16Len(s string) int { return len(utf16.Encode([]rune(s))) }

// commandEntities marks a leading "/command" or "/command@bot" as a
// bot_command entity.
func commandEntities(text string) []jsEntity {
	if len(text) < 2 || text[0] != '/' {
		return nil
	}
	cmd := text
	if i := strings.IndexAny(text, " \t\n"); i >= 0 {
		cmd = text[:i]
	}
	if len(cmd) < 2 {
		return nil
	}
	return []jsEntity{{Type: "bot_command", Offset: 0, Length: utf16Len(cmd)}}
}

// SendText simulates user u sending text to the bot in their private chat
// and returns the update_id of the resulting message update. A text starting
// with "/" carries a bot_command entity. After this the bot may sendMessage
// to chat u.ID.
func (s *Server) SendText(botID int64, u User, text string) (int64, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return 0, err
	}
	if u, err = normalizeUser(u); err != nil {
		return 0, err
	}
	if text == "" {
		return 0, errors.New("tgemu: empty text")
	}
	return b.enqueue("message", func(id int64) (json.RawMessage, error) {
		c := b.chatLocked(u)
		c.lastMsgID++
		from := userJSON(u)
		return json.Marshal(jsUpdate{UpdateID: id, Message: &jsMessage{
			MessageID: c.lastMsgID, From: &from, Chat: privateChat(u),
			Date: time.Now().Unix(), Text: text, Entities: commandEntities(text),
		}})
	}, 0)
}

// AddUser opens the private chat between the bot and user u without creating an update, as
// if u had started the bot before the emulator ran: afterwards sendMessage to chat u.ID
// succeeds, and nothing is delivered to the webhook. It is for tests and benchmarks that post
// updates straight to a webhook or seed contacts in bulk. Adding a known user again only
// refreshes the profile.
func (s *Server) AddUser(botID int64, u User) error {
	b, err := s.botOrErr(botID)
	if err != nil {
		return err
	}
	if u, err = normalizeUser(u); err != nil {
		return err
	}
	b.mu.Lock()
	b.chatLocked(u)
	b.mu.Unlock()
	return nil
}

// AddGroup adds the bot to group chatID (negative, as Telegram's group ids
// are) titled title, without an update: afterwards sendMessage to chatID
// succeeds, paced by Options.GroupChatLimit. Adding it again renames it.
func (s *Server) AddGroup(botID, chatID int64, title string) error {
	b, err := s.botOrErr(botID)
	if err != nil {
		return err
	}
	if chatID >= 0 {
		return fmt.Errorf("tgemu: group chat id must be negative, got %d", chatID)
	}
	if title == "" {
		title = "Group"
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.chats[chatID]
	if c == nil {
		c = &chatState{}
		b.chats[chatID] = c
	}
	c.group = title
	return nil
}

// SendCommand is SendText with a command such as "/start" (a missing leading
// slash is added).
func (s *Server) SendCommand(botID int64, u User, command string) (int64, error) {
	if !strings.HasPrefix(command, "/") {
		command = "/" + command
	}
	return s.SendText(botID, u, command)
}

// Block simulates u blocking the bot: a my_chat_member update (old status
// "member", new status "kicked", until_date 0) and, until Unblock, every
// sendMessage to u answers 403 "Forbidden: bot was blocked by the user".
func (s *Server) Block(botID int64, u User) (int64, error) {
	return s.setBlocked(botID, u, true)
}

// Unblock simulates u restarting the bot after a block: a my_chat_member
// update (old "kicked", new "member").
func (s *Server) Unblock(botID int64, u User) (int64, error) {
	return s.setBlocked(botID, u, false)
}

func (s *Server) setBlocked(botID int64, u User, blocked bool) (int64, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return 0, err
	}
	if u, err = normalizeUser(u); err != nil {
		return 0, err
	}
	zero := int64(0)
	oldM := jsChatMember{User: b.botUser(), Status: "member"}
	newM := jsChatMember{User: b.botUser(), Status: "kicked", UntilDate: &zero}
	if !blocked {
		oldM, newM = jsChatMember{User: b.botUser(), Status: "kicked", UntilDate: &zero}, jsChatMember{User: b.botUser(), Status: "member"}
	}
	return b.enqueue("my_chat_member", func(id int64) (json.RawMessage, error) {
		c := b.chatLocked(u)
		c.blocked = blocked
		return json.Marshal(jsUpdate{UpdateID: id, MyChatMember: &jsChatMemberUpdated{
			Chat: privateChat(u), From: userJSON(u), Date: time.Now().Unix(),
			OldChatMember: oldM, NewChatMember: newM,
		}})
	}, 0)
}

// updateKind returns the Update field present besides update_id.
func updateKind(m map[string]any) string {
	for _, t := range updateTypes {
		if _, ok := m[t]; ok {
			return t
		}
	}
	for k := range m {
		if k != "update_id" {
			return k
		}
	}
	return ""
}

// toInt64 converts a decoded JSON number of any representation.
func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int:
		return int64(n), true
	case int64:
		return n, true
	case int32:
		return int64(n), true
	case float64:
		return int64(n), n == float64(int64(n))
	case json.Number:
		i, err := n.Int64()
		return i, err == nil
	}
	return 0, false
}

// PushUpdate queues an arbitrary Update object (e.g. a callback_query) as is.
// It assigns the next update_id when update_id is absent or not positive;
// a given update_id is kept and later ids continue after it. The update must
// contain one field besides update_id. Simulated chats are not affected.
func (s *Server) PushUpdate(botID int64, upd map[string]any) (int64, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return 0, err
	}
	kind := updateKind(upd)
	if kind == "" {
		return 0, errors.New("tgemu: update has no field besides update_id")
	}
	var given int64
	if v, ok := upd["update_id"]; ok {
		id, ok := toInt64(v)
		if !ok {
			return 0, errors.New("tgemu: update_id is not an integer")
		}
		given = id
	}
	return b.enqueue(kind, func(id int64) (json.RawMessage, error) {
		m := make(map[string]any, len(upd))
		for k, v := range upd {
			m[k] = v
		}
		m["update_id"] = id
		raw, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("tgemu: marshal update: %w", err)
		}
		return raw, nil
	}, given)
}

// Redeliver queues an update created earlier again, with the same update_id
// and body, as Telegram does after a failed or timed-out delivery.
func (s *Server) Redeliver(botID, updateID int64) error {
	b, err := s.botOrErr(botID)
	if err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	u := b.history[updateID]
	if u == nil {
		return fmt.Errorf("tgemu: bot %d has no update %d", botID, updateID)
	}
	cp := *u
	b.queue = append(b.queue, &cp)
	b.notifyLocked()
	return nil
}

// WaitIdle blocks until the bot has no pending updates (queued or in
// flight). Without a webhook updates stay pending until getUpdates confirms
// them, so WaitIdle then waits for that (or ctx).
func (s *Server) WaitIdle(ctx context.Context, botID int64) error {
	b, err := s.botOrErr(botID)
	if err != nil {
		return err
	}
	return b.waitFor(ctx, func() bool { return len(b.queue) == 0 })
}

// removeLocked drops u (by identity) from the queue.
func (b *bot) removeLocked(u *update) {
	if i := slices.Index(b.queue, u); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
	}
}

// deliverLoop posts the bot's pending updates to its webhook one at a time,
// in order, retrying failures with exponential backoff (Telegram: "in case of
// an unsuccessful request, we will give up after a reasonable amount of
// attempts"; the emulator never gives up). It runs until ctx is done.
func (b *bot) deliverLoop(ctx context.Context) {
	defer b.s.wg.Done()
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		b.mu.Lock()
		var (
			item        *update
			url, secret string
			gen         int64
			wait        time.Duration
		)
		if b.hookURL != "" {
			// allowed_updates may have changed since the update was queued.
			for len(b.queue) > 0 && !b.allowedLocked(b.queue[0].kind) {
				b.queue = b.queue[1:]
				b.notifyLocked()
			}
			if len(b.queue) > 0 {
				if d := time.Until(b.nextAttempt); d > 0 {
					wait = d
				} else {
					item, url, secret, gen = b.queue[0], b.hookURL, b.hookSecret, b.hookGen
				}
			}
		}
		ch := b.changed
		b.mu.Unlock()

		if item == nil {
			var tc <-chan time.Time
			if wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				tc = timer.C
			}
			select {
			case <-ctx.Done():
				return
			case <-ch:
			case <-tc:
			}
			if timer != nil {
				timer.Stop()
			}
			continue
		}

		errMsg := b.s.post(ctx, url, secret, item.raw)
		if ctx.Err() != nil {
			return
		}
		b.mu.Lock()
		if errMsg == "" {
			b.removeLocked(item)
			b.backoff = 0
			b.nextAttempt = time.Time{}
			b.s.log.Debug("tgemu: webhook delivered", "bot_id", b.info.ID, "update_id", item.id)
		} else if gen == b.hookGen { // ignore failures of a replaced webhook
			b.lastErrDate = time.Now().Unix()
			b.lastErrMsg = errMsg
			if b.backoff == 0 {
				b.backoff = b.s.opts.RetryBackoff
			} else {
				b.backoff = min(2*b.backoff, b.s.opts.MaxRetryBackoff)
			}
			b.nextAttempt = time.Now().Add(b.backoff)
			b.s.log.Info("tgemu: webhook delivery failed", "bot_id", b.info.ID, "update_id", item.id,
				"error", errMsg, "retry_in", b.backoff)
		}
		b.notifyLocked()
		b.mu.Unlock()
	}
}

// post delivers one update and returns "" on a 2xx answer, otherwise a
// getWebhookInfo last_error_message in Telegram's wording.
func (s *Server) post(ctx context.Context, url, secret string, body []byte) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "Wrong HTTP URL specified"
	}
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return describeNetErr(err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Sprintf("Wrong response from the webhook: %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	}
	return ""
}

// describeNetErr maps a transport error to Telegram's last_error_message.
func describeNetErr(err error) string {
	var dnsErr *net.DNSError
	var netErr net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "Connection refused"
	case errors.As(err, &dnsErr):
		return "Failed to resolve host: Name or service not known"
	case errors.As(err, &netErr) && netErr.Timeout():
		return "Read timeout expired"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		return "Connection reset by peer"
	default:
		return "Connection error"
	}
}
