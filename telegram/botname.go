package telegram

import (
	"context"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/apperr"
)

// ErrBotNameAmbiguous is a 409: the tenant has several live bots with the name asked for;
// address the bot by bot_app_id instead.
var ErrBotNameAmbiguous = apperr.Conflict("bot_name_ambiguous", "several of the tenant's bots have this name; give bot_app_id").
	WithDetails(map[string]any{"field": "bot_name"})

// BotIDByName returns the id of the tenant's live (not deleted) bot whose name is exactly
// name (FastPay's bot resolution: a bot addressed by its name). Errors: ErrBotNotFound
// (none), ErrBotNameAmbiguous (several), apperr kinds.
func (s *Service) BotIDByName(ctx context.Context, tenantID uuid.UUID, name string) (uuid.UUID, error) {
	var ids []uuid.UUID
	err := s.db.NewSelect().Table("bots").Column("id").Where("tenant_id = ?", tenantID).
		Where("name = ?", name).Where("deleted_at IS NULL").Limit(2).Scan(ctx, &ids)
	if err != nil {
		return uuid.Nil, apperr.Classify(err)
	}
	switch len(ids) {
	case 0:
		return uuid.Nil, ErrBotNotFound
	case 1:
		return ids[0], nil
	default:
		return uuid.Nil, ErrBotNameAmbiguous
	}
}
