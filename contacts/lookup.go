package contacts

import (
	"context"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

// ErrNotLinked is returned when a contact has no Telegram identity on the bot asked for
// (the person never wrote to that bot).
var ErrNotLinked = apperr.Invalid("contact_not_linked", "the contact has not started this bot")

// Link is a contact's Telegram identity on one bot: the private chat where the bot reaches
// the person, and the person's state on that bot.
type Link struct {
	ContactID uuid.UUID
	BotID     uuid.UUID
	// ChatID is Telegram's chat_id of the private chat between the person and the bot.
	ChatID int64
	// Blocked: the user blocked the bot (a 403 or my_chat_member "kicked").
	Blocked bool
	// OptedOut: the user sent /stop to the bot.
	OptedOut bool
}

// LinkOf returns contact contactID's link to botID, on idb, scoped by tenantID. Errors:
// ErrNotFound (no such contact of the tenant), ErrNotLinked, apperr kinds.
func (s *Service) LinkOf(ctx context.Context, idb bun.IDB, tenantID, contactID, botID uuid.UUID) (Link, error) {
	var c Contact
	err := idb.NewSelect().Model(&c).Where("c.tenant_id = ?", tenantID).Where("c.id = ?", contactID).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Link{}, ErrNotFound
		}
		return Link{}, apperr.Classify(err)
	}
	if c.BotID != botID {
		return Link{}, ErrNotLinked
	}
	return Link{ContactID: c.ID, BotID: c.BotID, ChatID: c.TelegramChatID, Blocked: c.Blocked, OptedOut: c.OptedOut}, nil
}

// GetByExternalID returns the tenant's contact whose external_id is externalID. Errors:
// ErrNotFound, apperr kinds.
func (s *Service) GetByExternalID(ctx context.Context, tenantID uuid.UUID, externalID string) (Contact, error) {
	var c Contact
	err := s.db.NewSelect().Model(&c).Where("c.tenant_id = ?", tenantID).Where("c.external_id = ?", externalID).
		Limit(1).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Contact{}, ErrNotFound
		}
		return Contact{}, apperr.Classify(err)
	}
	return c, nil
}

// GetByUsername returns the tenant's contact whose Telegram username is username (with or
// without the leading "@", case-insensitive as Telegram usernames are), optionally one
// linked to botID. Errors: ErrNotFound, apperr kinds.
func (s *Service) GetByUsername(ctx context.Context, tenantID uuid.UUID, username string, botID *uuid.UUID) (Contact, error) {
	username = strings.TrimPrefix(username, "@")
	if username == "" {
		return Contact{}, ErrNotFound
	}
	var c Contact
	q := s.db.NewSelect().Model(&c).Where("c.tenant_id = ?", tenantID).
		Where("lower(c.telegram_username) = lower(?)", username)
	if botID != nil {
		q = q.Where("c.bot_id = ?", *botID)
	}
	err := q.OrderExpr("c.last_seen_at DESC").Limit(1).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Contact{}, ErrNotFound
		}
		return Contact{}, apperr.Classify(err)
	}
	return c, nil
}
