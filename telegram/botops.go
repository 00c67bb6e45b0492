package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
)

// Errors of the test send and the chat lookup (api: POST /telegram/v1/bots/{id}/test/,
// POST /telegram/v1/bots/{id}/lookup-chat/).
var (
	// ErrTelegramRefused (422): Telegram answered the call with an error (e.g. 400 "Bad
	// Request: chat not found" for a send, 403 "Forbidden: bot was blocked by the user").
	// details: field (the chat named), error_code (Telegram's) and description.
	ErrTelegramRefused = apperr.Invalid("telegram_refused", "Telegram refused the request")
	// ErrChatNotFound (404): getChat answered "Bad Request: chat not found": the chat does not
	// exist or the bot is not a member of it (a user who never started the bot).
	ErrChatNotFound = apperr.NotFound("chat_not_found", "chat not found (the bot is not in this chat, or it does not exist)")
)

// TestMessage is one message a tenant sends through a bot right now to check it
// (Service.TestSend).
type TestMessage struct {
	// ChatID is the target chat: a user id, or a negative group, supergroup or channel id.
	ChatID int64
	// Text is 1-4096 characters after entity parsing, checked like every message (CheckMessage).
	Text string
	// ParseMode is "", "HTML", "MarkdownV2" or "Markdown".
	ParseMode string
	// MessageThreadID is a forum topic of a supergroup; 0 for none.
	MessageThreadID int64
}

// TestSend checks m like any message (CheckMessage: 422 invalid_field with details.field
// "text" or "parse_mode"; chat_id must be non-zero) and sends it at once with Send, so every
// limit applies: the bot's daily_limit (the send counts), the per-chat, per-bot and global
// rates, the bot's 429 pause, and a bot that is not active sends nothing. Nothing is stored
// in messages (a 403 marks the contact blocked as with every send). The Outcome tells what
// happened; it is returned whatever its Status. Errors: ErrBotNotFound (404),
// apperr.ErrUnavailable (503), validation errors (422).
func (s *Service) TestSend(ctx context.Context, tenantID, botID uuid.UUID, m TestMessage) (Outcome, error) {
	if m.ChatID == 0 {
		return Outcome{}, validate.Field("chat_id", "chat_id is required (a user id or a negative group id)")
	}
	if m.MessageThreadID < 0 {
		return Outcome{}, validate.Field("message_thread_id", "message_thread_id must be a positive topic id")
	}
	tpl, err := CheckMessage("text", m.Text, m.ParseMode, Content{})
	if err != nil {
		return Outcome{}, err
	}
	b, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return Outcome{}, err
	}
	msg, problem := tpl.RenderFor(nil)
	if problem != "" {
		return Outcome{}, validate.Field("text", "text: %s", problem)
	}
	msg.MessageThreadID = m.MessageThreadID
	return s.Send(ctx, b, m.ChatID, msg), nil
}

// ChatInfo is what getChat and getChatMemberCount tell about a chat
// (core.telegram.org/bots/api#chatfullinfo, #getchatmembercount).
type ChatInfo struct {
	ID        int64
	Type      string // "private", "group", "supergroup" or "channel"
	Title     string // groups, supergroups and channels
	Username  string // without "@"; private chats, supergroups and channels, when set
	FirstName string // private chats
	LastName  string // private chats
	IsForum   bool   // a supergroup with topics
	// MemberCount is getChatMemberCount's answer; nil when that call failed (the chat was
	// found: e.g. a channel where the bot is no administrator).
	MemberCount *int64
}

// usernameRe is a public @username (core.telegram.org: 5-32 characters of a-z, 0-9 and _).
var usernameRe = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{3,31}$`)

// LookupChat asks Telegram about a chat through the tenant's bot: getChat, then
// getChatMemberCount (core.telegram.org/bots/api#getchat). Exactly one of chatID (non-zero)
// and username (a public @username of a group, supergroup or channel; the "@" is optional)
// is given, else 422 invalid_field. Errors: ErrBotNotFound (404), ErrChatNotFound (404:
// Telegram's "chat not found"), ErrTelegramRefused (422: another 400 or a 403),
// ErrInvalidBotToken (422: Telegram rejected the token), ErrTelegramError / ErrTelegramDown
// (502), apperr.ErrUnavailable (503).
func (s *Service) LookupChat(ctx context.Context, tenantID, botID uuid.UUID, chatID int64, username string) (ChatInfo, error) {
	username = strings.TrimPrefix(strings.TrimSpace(username), "@")
	var ref string
	switch {
	case chatID != 0 && username != "":
		return ChatInfo{}, validate.Field("chat_id", "give chat_id or username, not both")
	case chatID != 0:
		ref = strconv.FormatInt(chatID, 10)
	case username != "":
		if !usernameRe.MatchString(username) {
			return ChatInfo{}, validate.Field("username", "username must be 5-32 characters of a-z, 0-9 and _, starting with a letter")
		}
		ref = "@" + username
	default:
		return ChatInfo{}, validate.Field("chat_id", "chat_id or username is required")
	}
	b, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return ChatInfo{}, err
	}
	api, err := s.apiBotFor(b)
	if err != nil {
		return ChatInfo{}, apperr.Classify(fmt.Errorf("open token: %w", err))
	}
	raw, err := api.RequestWithContext(ctx, "getChat", map[string]any{"chat_id": ref}, nil)
	if err != nil {
		field := "chat_id"
		if username != "" {
			field = "username"
		}
		return ChatInfo{}, lookupError(err, field)
	}
	var c gotgbot.ChatFullInfo
	if err := json.Unmarshal(raw, &c); err != nil {
		return ChatInfo{}, ErrTelegramDown.Wrap(fmt.Errorf("decode getChat: %w", err))
	}
	info := ChatInfo{ID: c.Id, Type: c.Type, Title: c.Title, Username: c.Username, FirstName: c.FirstName, LastName: c.LastName, IsForum: c.IsForum}
	if n, err := api.GetChatMemberCountWithContext(ctx, c.Id, nil); err == nil {
		info.MemberCount = &n
	} else {
		s.log.InfoContext(ctx, "telegram: getChatMemberCount failed", "bot_app_id", b.ID.String(), "error", safeTelegramError(err))
	}
	return info, nil
}

// lookupError classifies an error of getChat; field (chat_id or username) is details.field of
// a 422.
func lookupError(err error, field string) error {
	var te *gotgbot.TelegramError
	if errors.As(err, &te) {
		switch {
		case te.Code == 400 && strings.Contains(strings.ToLower(te.Description), "chat not found"):
			return ErrChatNotFound.Wrap(err)
		case te.Code == 400 || te.Code == 403:
			return ErrTelegramRefused.WithMessage("Telegram refused: %s", te.Description).
				WithDetails(map[string]any{"field": field, "error_code": te.Code, "description": te.Description}).Wrap(err)
		}
	}
	return classifyTelegram(err)
}
