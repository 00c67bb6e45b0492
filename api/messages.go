package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// createMessageRequest is the body of POST /messages/.
type createMessageRequest struct {
	BotAppID  string `json:"bot_app_id"`
	ContactID string `json:"contact_id"`
	// ChatID, instead of contact_id, is a group, supergroup or channel of bot_app_id
	// (GET /telegram/v1/bots/{bot_app_id}/chats/); MessageThreadID a forum topic in it.
	ChatID          int64  `json:"chat_id"`
	MessageThreadID int64  `json:"message_thread_id"`
	Text            string `json:"text"`
	ParseMode       string `json:"parse_mode"`
	// ThrottleKey and ThrottleSeconds (both or neither; message_throttle.go): a second
	// message with the same key to the same recipient within ThrottleSeconds is not sent,
	// and the answer is 200 {"suppressed": true}.
	ThrottleKey     string `json:"throttle_key"`
	ThrottleSeconds int64  `json:"throttle_seconds"`
	// Topic names one of the tenant's topics: a contact unsubscribed from it gets nothing
	// and the answer is 200 {"suppressed": true, "reason": "unsubscribed"} (topics.go).
	Topic string `json:"topic"`
	// Content options (text is the caption with photo or document).
	contentFields
	// bot_name, external_id, username: message_address.go.
	messageAddress
}

// messageResponse is a single message and its delivery state (queued, sent or failed).
type messageResponse struct {
	ID                uuid.UUID  `json:"id"`
	BotAppID          uuid.UUID  `json:"bot_app_id"`
	ContactID         *uuid.UUID `json:"contact_id"`
	ChatID            int64      `json:"chat_id"`
	Text              string     `json:"text"`
	ParseMode         string     `json:"parse_mode"`
	Status            string     `json:"status"`
	Error             string     `json:"error"`
	Attempts          int        `json:"attempts"`
	TelegramMessageID *int64     `json:"telegram_message_id"`
	CreatedAt         time.Time  `json:"created_at"`
	SentAt            *time.Time `json:"sent_at"`
	// Inbox reports whether an inbound message is flagged for the inbox by its bot's
	// inbox mode (telegram/inbox.go); false for outbound messages.
	Inbox bool `json:"inbox"`
	// MessageThreadID is the forum topic of a message to a group (omitted for none).
	MessageThreadID int64 `json:"message_thread_id,omitempty"`
	contentFields
}

func toMessageResponse(m contacts.Message) messageResponse {
	return messageResponse{
		contentFields: toContentFields(telegram.ContentOf(m.Content)),
		ID:            m.ID, BotAppID: m.BotID, ContactID: m.ContactID, ChatID: m.ChatID, Text: m.Text,
		ParseMode: m.ParseMode, Status: m.Status, Error: m.Error, Attempts: m.Attempts,
		TelegramMessageID: m.TelegramMessageID, CreatedAt: utc(m.CreatedAt), SentAt: timeOrNil(m.SentAt),
		Inbox:           m.Inbox,
		MessageThreadID: telegram.MessageThreadOf(m.Content),
	}
}

// createMessage queues one message to a contact: 202 with status "queued"; a worker sends it.
func (s *server) createMessage(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req createMessageRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := s.resolveAddress(c.Request().Context(), tid, &req); err != nil { // message_address.go
		return err
	}
	nm, err := req.toNewMessage()
	if err != nil {
		return err
	}
	nm.SentBy = apiKeyName(c) // messages.sent_by (inbox.go)
	if err := req.checkThrottle(); err != nil {
		return err
	}
	ctx := c.Request().Context()
	if suppressed, err := s.topicSuppressed(ctx, tid, req.Topic, nm); err != nil || suppressed { // topics.go
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, unsubscribedResponse{Suppressed: true, Reason: reasonUnsubscribed})
	}
	var throttle string
	if req.ThrottleKey != "" {
		throttle = throttleRedisKey(tid.String(), nm, req.ThrottleKey)
		ok, err := s.takeThrottle(ctx, throttle, req.ThrottleSeconds)
		if err != nil {
			c.Response().Header().Set("Retry-After", "1")
			return err
		}
		if !ok {
			return c.JSON(http.StatusOK, suppressedResponse{Suppressed: true, ThrottleKey: req.ThrottleKey})
		}
	}
	m, err := s.d.Telegram.CreateMessage(ctx, tid, nm)
	if err != nil {
		if throttle != "" {
			s.releaseThrottle(ctx, throttle)
		}
		return err
	}
	return c.JSON(http.StatusAccepted, toMessageResponse(m))
}

// toNewMessage parses the ids; telegram.CreateMessage validates the rest (text, parse_mode,
// the contact belonging to the bot). bot_app_id may be omitted when the tenant has one bot
// and the recipient is a contact. Exactly one of contact_id and chat_id (a group, supergroup
// or channel, with bot_app_id); message_thread_id only with chat_id.
func (r createMessageRequest) toNewMessage() (telegram.NewMessage, error) {
	botID, err := validate.OptionalUUID("bot_app_id", r.BotAppID)
	if err != nil {
		return telegram.NewMessage{}, err
	}
	nm := telegram.NewMessage{Text: r.Text, ParseMode: r.ParseMode, Content: r.toContent(), ChatID: r.ChatID, MessageThreadID: r.MessageThreadID}
	switch {
	case r.ChatID != 0 && r.ContactID != "":
		return telegram.NewMessage{}, validate.Field("chat_id", "give exactly one of contact_id and chat_id")
	case r.ChatID == 0:
		if r.MessageThreadID != 0 {
			return telegram.NewMessage{}, validate.Field("message_thread_id", "message_thread_id is only allowed with chat_id (a forum supergroup)")
		}
		contactID, err := validate.UUID("contact_id", r.ContactID)
		if err != nil {
			return telegram.NewMessage{}, err
		}
		nm.ContactID = contactID
	}
	if botID != nil {
		nm.BotID = *botID
	}
	return nm, nil
}

// getMessage answers one message; another tenant's is 404.
func (s *server) getMessage(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrMessageNotFound)
	if err != nil {
		return err
	}
	m, err := s.d.Telegram.GetMessage(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toMessageResponse(m))
}
