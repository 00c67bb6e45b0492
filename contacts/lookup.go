package contacts

import (
	"context"
	"strings"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

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
		q = q.Where("EXISTS (SELECT 1 FROM contact_bots cb WHERE cb.contact_id = c.id AND cb.bot_id = ?)", *botID)
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
