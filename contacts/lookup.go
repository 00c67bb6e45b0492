package contacts

import (
	"context"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

// LinkOf returns contact contactID's link to botID, on idb, scoped by tenantID. Errors:
// ErrNotFound (no such contact of the tenant), ErrNotLinked, apperr kinds.
func (s *Service) LinkOf(ctx context.Context, idb bun.IDB, tenantID, contactID, botID uuid.UUID) (Link, error) {
	var ls []Link
	err := idb.NewRaw(`SELECT cb.* FROM contacts c LEFT JOIN contact_bots cb ON cb.contact_id = c.id AND cb.bot_id = ?
WHERE c.tenant_id = ? AND c.id = ?`, botID, tenantID, contactID).Scan(ctx, &ls)
	if err != nil && !database.IsNoRows(err) {
		return Link{}, apperr.Classify(err)
	}
	switch {
	case len(ls) == 0:
		return Link{}, ErrNotFound
	case ls[0].ContactID == uuid.Nil:
		return Link{}, ErrNotLinked
	}
	return ls[0], nil
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
	return c, s.attachLinks(ctx, s.db, []*Contact{&c})
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
		q = q.Where("EXISTS (SELECT 1 FROM contact_bots cb WHERE cb.contact_id = c.id AND cb.bot_id = ?)", *botID)
	}
	err := q.OrderExpr("c.last_seen_at DESC").Limit(1).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Contact{}, ErrNotFound
		}
		return Contact{}, apperr.Classify(err)
	}
	return c, s.attachLinks(ctx, s.db, []*Contact{&c})
}
