package api

import (
	"net/http"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// Team inbox (issue 9 "Inbox"): GET/POST /contacts/{id}/messages/, the file of a message,
// GET /conversations/ and read/assign/close. The rules of what enters the inbox are in
// contacts/inbox.go.

// sentBy says who sent an outbound message: {type: "api_key", name} (agent replies and
// POST /messages/), {type: "broadcast", id}, {type: "bot"} (automatic replies); null for
// inbound messages (and outbound rows from before sent_by was recorded).
type sentBy struct {
	Type string     `json:"type"`
	Name string     `json:"name,omitempty"`
	ID   *uuid.UUID `json:"id,omitempty"`
}

// threadMessageResponse is one entry of GET /contacts/{id}/messages/.
type threadMessageResponse struct {
	ID        uuid.UUID `json:"id"`
	BotAppID  uuid.UUID `json:"bot_app_id"`
	Direction string    `json:"direction"`
	Kind      string    `json:"kind"`
	Status    string    `json:"status"`
	Text      string    `json:"text"`
	ParseMode string    `json:"parse_mode"`
	Error     string    `json:"error"`
	// ContentType is "text", or the media type (photo, document, voice, video,
	// video_note, audio, sticker, location, contact).
	ContentType       string          `json:"content_type"`
	Media             *telegram.Media `json:"media"`
	TelegramMessageID *int64          `json:"telegram_message_id"`
	SentBy            *sentBy         `json:"sent_by"`
	CreatedAt         time.Time       `json:"created_at"`
}

func toThreadMessage(it contacts.ThreadItem) threadMessageResponse {
	r := threadMessageResponse{ID: it.ID, BotAppID: it.BotID, Direction: it.Direction, Kind: it.Kind, Status: it.Status,
		Text: it.Text, ParseMode: it.ParseMode, Error: it.Error, Media: telegram.MediaOf(it.Media),
		TelegramMessageID: it.TelegramMessageID, CreatedAt: utc(it.CreatedAt), ContentType: "text"}
	r.SentBy = toSentBy(it.Direction, it.Kind, it.SentBy, it.BroadcastID)
	switch content := telegram.ContentOf(it.Content); {
	case r.Media != nil:
		r.ContentType = r.Media.Type
	case content.Photo != "":
		r.ContentType = telegram.MediaPhoto
	case content.Document != "":
		r.ContentType = telegram.MediaDocument
	}
	return r
}

func toSentBy(direction, kind, name string, broadcastID *uuid.UUID) *sentBy {
	switch {
	case direction != contacts.DirectionOutbound:
		return nil
	case broadcastID != nil:
		return &sentBy{Type: "broadcast", ID: broadcastID}
	case kind == contacts.KindReply:
		return &sentBy{Type: "bot"}
	case name != "":
		return &sentBy{Type: "api_key", Name: name}
	}
	return nil
}

// listContactMessages answers the contact's messages and broadcast sends, newest first:
// ?cursor=&limit= (house cursor), or ?page=&size= (1-based, size 1..200, OrbVPN-style; the
// answer then has page and size and next_cursor ""); ?bot_app_id= optional.
func (s *server) listContactMessages(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	botID, err := optionalUUIDQuery(c, "bot_app_id")
	if err != nil {
		return err
	}
	f := contacts.ThreadFilter{BotID: botID}
	if c.QueryParam("page") != "" || c.QueryParam("size") != "" {
		if c.QueryParam("cursor") != "" {
			return validate.Field("page", "give either cursor or page/size, not both")
		}
		if f.Page, err = intQuery(c, "page", 1, 1, contacts.MaxThreadPage); err != nil {
			return err
		}
		if f.Limit, err = intQuery(c, "size", 50, 1, 200); err != nil {
			return err
		}
	} else if f.Cursor, f.Limit, err = pageQuery(c); err != nil {
		return err
	}
	items, next, err := s.d.Contacts.ListThread(c.Request().Context(), tid, id, f)
	if err != nil {
		return err
	}
	p := newPage(items, next, toThreadMessage)
	if f.Page > 0 {
		return c.JSON(http.StatusOK, struct {
			listPage[threadMessageResponse]
			Page int `json:"page"`
			Size int `json:"size"`
		}{p, f.Page, f.Limit})
	}
	return c.JSON(http.StatusOK, p)
}

// intQuery reads integer query parameter name in [lo, hi] (def when absent; else 422
// invalid_field).
func intQuery(c echo.Context, name string, def, lo, hi int) (int, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return def, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < lo || n > hi {
		return 0, validate.Field(name, "%s must be an integer between %d and %d", name, lo, hi)
	}
	return n, nil
}

// replyRequest is the body of POST /contacts/{id}/messages/.
type replyRequest struct {
	BotAppID  string `json:"bot_app_id"`
	Text      string `json:"text"`
	ParseMode string `json:"parse_mode"`
}

// replyContact sends an agent reply (201 with the queued message; sent_by is the API key's
// name), through the one send path (telegram.Reply → CreateMessage).
func (s *server) replyContact(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	var req replyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	botID, err := validate.OptionalUUID("bot_app_id", req.BotAppID)
	if err != nil {
		return err
	}
	nm := telegram.NewMessage{Text: req.Text, ParseMode: req.ParseMode, SentBy: apiKeyName(c)}
	if botID != nil {
		nm.BotID = *botID
	}
	m, err := s.d.Telegram.Reply(c.Request().Context(), tid, id, nm)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toReplyResponse(m))
}

// apiKeyName is the name of the request's API key ("" outside tenantAuth).
func apiKeyName(c echo.Context) string {
	name, _ := c.Get(ctxAPIKeyName).(string)
	return name
}

func toReplyResponse(m contacts.Message) threadMessageResponse {
	return toThreadMessage(contacts.ThreadItem{ID: m.ID, BotID: m.BotID, Direction: m.Direction, Kind: m.Kind, Status: m.Status,
		Text: m.Text, ParseMode: m.ParseMode, Error: m.Error, Content: m.Content, Media: m.Media,
		TelegramMessageID: m.TelegramMessageID, SentBy: m.SentBy, CreatedAt: m.CreatedAt})
}

// messageFile proxies the file of a contact's message (GET /contacts/{id}/messages/{mid}/file/):
// getFile through the message's bot, then the bytes streamed with Content-Type and
// Content-Length; the bot token never appears in the answer.
func (s *server) messageFile(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	mid, err := pathID(c, "mid", contacts.ErrMessageNotFound)
	if err != nil {
		return err
	}
	f, err := s.d.Telegram.OpenFile(c.Request().Context(), tid, id, mid)
	if err != nil {
		return err
	}
	defer f.Body.Close()
	h := c.Response().Header()
	if f.ContentLength >= 0 {
		h.Set(echo.HeaderContentLength, strconv.FormatInt(f.ContentLength, 10))
	}
	h.Set("X-Content-Type-Options", "nosniff")
	return c.Stream(http.StatusOK, f.ContentType, f.Body)
}

// conversationResponse is one conversation of GET /conversations/.
type conversationResponse struct {
	ContactID        uuid.UUID              `json:"contact_id"`
	BotAppID         uuid.UUID              `json:"bot_app_id"`
	FirstName        string                 `json:"first_name"`
	LastName         string                 `json:"last_name"`
	TelegramUsername string                 `json:"telegram_username"`
	Status           string                 `json:"status"`
	AssignedTo       *string                `json:"assigned_to"`
	UnreadCount      int                    `json:"unread_count"`
	LastMessageAt    time.Time              `json:"last_message_at"`
	LastReadAt       *time.Time             `json:"last_read_at"`
	ClosedAt         *time.Time             `json:"closed_at"`
	LastMessage      *threadMessageResponse `json:"last_message"`
}

func toConversationResponse(cv contacts.Conversation) conversationResponse {
	r := conversationResponse{ContactID: cv.ContactID, BotAppID: cv.BotID, FirstName: cv.FirstName, LastName: cv.LastName,
		TelegramUsername: cv.TelegramUsername, Status: cv.Status(), UnreadCount: cv.Unread, LastMessageAt: utc(cv.LastMessageAt),
		LastReadAt: timeOrNil(cv.LastReadAt), ClosedAt: timeOrNil(cv.ClosedAt)}
	if cv.AssignedTo != "" {
		r.AssignedTo = &cv.AssignedTo
	}
	if cv.Latest != nil {
		m := toReplyResponse(*cv.Latest)
		r.LastMessage = &m
	}
	return r
}

// listConversations answers the tenant's conversations by last activity, newest first;
// filters ?bot_app_id=, ?assigned_to= (an API key name), ?status=open|closed.
func (s *server) listConversations(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	f := contacts.ConversationFilter{}
	if f.BotID, err = optionalUUIDQuery(c, "bot_app_id"); err != nil {
		return err
	}
	if c.QueryParams().Has("assigned_to") {
		v := c.QueryParam("assigned_to")
		f.AssignedTo = &v
	}
	if raw := c.QueryParam("status"); raw != "" {
		if f.Status, err = validate.Enum("status", raw, contacts.ConversationOpen, contacts.ConversationClosed); err != nil {
			return err
		}
	}
	if f.Cursor, f.Limit, err = pageQuery(c); err != nil {
		return err
	}
	cvs, next, err := s.d.Contacts.ListConversations(c.Request().Context(), tid, f)
	if err != nil {
		return err
	}
	if len(cvs) == 0 && f.BotID != nil { // as GET /contacts/: an unknown or another tenant's bot is 404
		if err := s.d.Telegram.RequireBot(c.Request().Context(), tid, *f.BotID); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, newPage(cvs, next, toConversationResponse))
}

// conversationAction answers POST /conversations/{contact_id}/read/ and /close/.
func (s *server) conversationAction(act func(*contacts.Service, echo.Context, uuid.UUID, uuid.UUID) (contacts.Conversation, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		tid, err := tenantID(c)
		if err != nil {
			return err
		}
		id, err := pathID(c, "contact_id", contacts.ErrConversationNotFound)
		if err != nil {
			return err
		}
		cv, err := act(s.d.Contacts, c, tid, id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, toConversationResponse(cv))
	}
}

func readConversation(cs *contacts.Service, c echo.Context, tid, id uuid.UUID) (contacts.Conversation, error) {
	return cs.MarkConversationRead(c.Request().Context(), tid, id)
}

func closeConversation(cs *contacts.Service, c echo.Context, tid, id uuid.UUID) (contacts.Conversation, error) {
	return cs.CloseConversation(c.Request().Context(), tid, id)
}

// assignRequest is the body of POST /conversations/{contact_id}/assign/: api_key_name is
// the name of a live API key of the tenant, or null to unassign.
type assignRequest struct {
	APIKeyName *string `json:"api_key_name"`
}

func assignConversation(cs *contacts.Service, c echo.Context, tid, id uuid.UUID) (contacts.Conversation, error) {
	var req assignRequest
	if err := decodeJSON(c, &req); err != nil {
		return contacts.Conversation{}, err
	}
	return cs.AssignConversation(c.Request().Context(), tid, id, req.APIKeyName)
}
