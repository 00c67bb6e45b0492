package api

import (
	"context"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/validate"
)

// messageAddress are the other ways POST /messages/ may name its bot and recipient, besides
// bot_app_id and contact_id (OrbVPN's notification by user id or username, FastPay's bot
// resolution by name):
//   - bot_name: the tenant's live bot with exactly this name (404 bot_not_found for none,
//     409 bot_name_ambiguous for several); not with bot_app_id;
//   - external_id: the contact with this external_id (PATCH /contacts/{id}/, account
//     linking); 404 contact_not_found for none;
//   - username: the Telegram username of a known contact of the bot ("@name" or "name",
//     case-insensitive; the most recently seen one if several); 404 contact_not_found.
//
// Exactly one of contact_id, external_id, username and chat_id names the recipient.
type messageAddress struct {
	BotName    string `json:"bot_name"`
	ExternalID string `json:"external_id"`
	Username   string `json:"username"`
}

// resolveAddress turns bot_name, external_id and username into bot_app_id and contact_id on
// r, so that the rest of POST /messages/ (one send path) sees ids only.
func (s *server) resolveAddress(ctx context.Context, tid uuid.UUID, r *createMessageRequest) error {
	given := 0
	for _, v := range []bool{r.ContactID != "", r.ExternalID != "", r.Username != "", r.ChatID != 0} {
		if v {
			given++
		}
	}
	if given > 1 {
		field := "contact_id"
		if r.ChatID != 0 {
			field = "chat_id"
		}
		return validate.Field(field, "give exactly one of contact_id, external_id, username and chat_id")
	}
	if r.BotName != "" {
		if r.BotAppID != "" {
			return validate.Field("bot_name", "give one of bot_app_id and bot_name")
		}
		id, err := s.d.Telegram.BotIDByName(ctx, tid, r.BotName)
		if err != nil {
			return err
		}
		r.BotAppID = id.String()
	}
	switch {
	case r.ExternalID != "":
		c, err := s.d.Contacts.GetByExternalID(ctx, tid, r.ExternalID)
		if err != nil {
			return err
		}
		r.ContactID, r.ExternalID = c.ID.String(), ""
	case r.Username != "":
		botID, err := validate.OptionalUUID("bot_app_id", r.BotAppID)
		if err != nil {
			return err
		}
		c, err := s.d.Contacts.GetByUsername(ctx, tid, r.Username, botID)
		if err != nil {
			return err
		}
		r.ContactID, r.Username = c.ID.String(), ""
	}
	return nil
}
