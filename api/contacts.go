package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
)

// contactResponse is a contact: a person who wrote to one or more of the tenant's bots.
// bot_app_id, telegram_chat_id, blocked and opted_out are those at the bot the person
// first wrote to; bots lists every bot with the person's state there.
type contactResponse struct {
	ID               uuid.UUID `json:"id"`
	BotAppID         uuid.UUID `json:"bot_app_id"`
	TelegramChatID   int64     `json:"telegram_chat_id"`
	TelegramUserID   int64     `json:"telegram_user_id"`
	TelegramUsername string    `json:"telegram_username"`
	FirstName        string    `json:"first_name"`
	LastName         string    `json:"last_name"`
	LanguageCode     string    `json:"language_code"`
	Blocked          bool      `json:"blocked"`
	// OptedOut is set by the contact's /stop and cleared by /start (broadcasts skip it).
	OptedOut bool `json:"opted_out"`
	// Tags are sorted (byte order), never null; Attributes never null.
	Tags       []string            `json:"tags"`
	Attributes contacts.Attributes `json:"attributes"`
	LastSeenAt *time.Time          `json:"last_seen_at"`
	CreatedAt  time.Time           `json:"created_at"`
	// ExternalID is the tenant's own id of the person (null when unset); Email and Phone
	// are "" when unset.
	ExternalID *string `json:"external_id"`
	Email      string  `json:"email"`
	Phone      string  `json:"phone"`
	// Bots are the person's links, one per bot it wrote to, oldest first; never null.
	Bots []contactBotResponse `json:"bots"`
}

// contactBotResponse is a contact's Telegram identity at one bot.
type contactBotResponse struct {
	BotAppID       uuid.UUID  `json:"bot_app_id"`
	TelegramChatID int64      `json:"telegram_chat_id"`
	StartedAt      time.Time  `json:"started_at"`
	LastInboundAt  *time.Time `json:"last_inbound_at"`
	Blocked        bool       `json:"blocked"`
	BlockedAt      *time.Time `json:"blocked_at"`
	OptedOut       bool       `json:"opted_out"`
	OptedOutAt     *time.Time `json:"opted_out_at"`
}

func toContactResponse(ct contacts.Contact) contactResponse {
	r := contactResponse{
		ID: ct.ID, BotAppID: ct.BotID, TelegramChatID: ct.TelegramChatID, TelegramUserID: ct.TelegramUserID,
		TelegramUsername: ct.TelegramUsername, FirstName: ct.FirstName, LastName: ct.LastName,
		LanguageCode: ct.LanguageCode, Blocked: ct.Blocked, OptedOut: ct.OptedOut, LastSeenAt: timeOrNil(ct.LastSeenAt),
		CreatedAt: utc(ct.CreatedAt), Tags: ct.Tags, Attributes: ct.Attributes,
		Email: ct.Email, Phone: ct.Phone,
	}
	if ct.ExternalID != "" {
		r.ExternalID = &ct.ExternalID
	}
	r.Bots = make([]contactBotResponse, 0, len(ct.Bots))
	for _, l := range ct.Bots {
		r.Bots = append(r.Bots, contactBotResponse{BotAppID: l.BotID, TelegramChatID: l.TelegramChatID,
			StartedAt: utc(l.StartedAt), LastInboundAt: timeOrNil(l.LastInboundAt), Blocked: l.Blocked,
			BlockedAt: timeOrNil(l.BlockedAt), OptedOut: l.OptedOut, OptedOutAt: timeOrNil(l.OptedOutAt)})
	}
	if r.Tags == nil {
		r.Tags = []string{}
	}
	if r.Attributes == nil {
		r.Attributes = contacts.Attributes{}
	}
	return r
}

// listContacts answers one page of the tenant's contacts, newest first, optionally with a
// tag (?tag=, exact and case-sensitive) and of one
// bot (?bot_app_id=; 404 bot_not_found when it is not one of the tenant's bots, checked
// when the page is empty since a non-empty page proves it).
func (s *server) listContacts(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	botID, err := optionalUUIDQuery(c, "bot_app_id")
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	tag := c.QueryParam("tag")
	if tag != "" {
		if err := contacts.ValidateTag("tag", tag); err != nil {
			return err
		}
	}
	f := contacts.ListFilter{BotID: botID, Tag: tag, Cursor: cursor, Limit: limit,
		Q: c.QueryParam("q"), ExternalID: c.QueryParam("external_id")}
	if f.Q != "" {
		if f.Q, err = validate.Name("q", f.Q, 200); err != nil {
			return err
		}
	}
	if f.Blocked, err = boolQuery(c, "blocked"); err != nil {
		return err
	}
	if f.OptedOut, err = boolQuery(c, "opted_out"); err != nil {
		return err
	}
	cs, next, err := s.d.Contacts.List(c.Request().Context(), tid, f)
	if err != nil {
		return err
	}
	if len(cs) == 0 && botID != nil {
		if err := s.d.Telegram.RequireBot(c.Request().Context(), tid, *botID); err != nil {
			return err
		}
	}
	return c.JSON(http.StatusOK, newPage(cs, next, toContactResponse))
}

// getContact answers one contact; another tenant's is 404.
func (s *server) getContact(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	ct, err := s.d.Contacts.Get(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toContactResponse(ct))
}

// deleteContact erases a contact and everything stored about the person (right to be
// forgotten; contacts.Erase): 204. Another tenant's or an unknown id is 404
// contact_not_found. The log line names only the ids.
func (s *server) deleteContact(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", contacts.ErrNotFound)
	if err != nil {
		return err
	}
	if err := s.d.Contacts.Erase(c.Request().Context(), tid, id); err != nil {
		return err
	}
	s.log.InfoContext(c.Request().Context(), "api: contact erased", "tenant_id", tid.String(), "contact_id", id.String())
	return c.NoContent(http.StatusNoContent)
}

// boolQuery reads an optional boolean query parameter: absent → nil; "true" or "false";
// anything else is 422 invalid_field naming it.
func boolQuery(c echo.Context, name string) (*bool, error) {
	switch c.QueryParam(name) {
	case "":
		return nil, nil
	case "true":
		v := true
		return &v, nil
	case "false":
		v := false
		return &v, nil
	default:
		return nil, validate.Field(name, "%s must be true or false", name)
	}
}
