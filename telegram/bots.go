package telegram

// STUB: helper-3 replaces this file (bots.go) and writes ingest.go, process.go, events.go.

import (
	"context"

	"github.com/google/uuid"
)

// NewBot is the input of RegisterBot.
type NewBot struct {
	Name       string
	Token      string
	DailyLimit int
}

// UpdateBot holds the optional changes of UpdateBot (nil = unchanged).
type UpdateBot struct {
	Name       *string
	DailyLimit *int
}

// BotFilter selects a page of bots.
type BotFilter struct {
	Cursor string
	Limit  int
}

// RegisterBot validates the token with getMe, stores the bot and registers its webhook and commands.
func (s *Service) RegisterBot(ctx context.Context, tenantID uuid.UUID, nb NewBot) (Bot, error) {
	return Bot{}, errNotImplementedYet
}

// GetBot returns the tenant's active bot.
func (s *Service) GetBot(ctx context.Context, tenantID, botID uuid.UUID) (Bot, error) {
	return Bot{}, errNotImplementedYet
}

// ListBots returns a page of the tenant's active bots.
func (s *Service) ListBots(ctx context.Context, tenantID uuid.UUID, f BotFilter) ([]Bot, string, error) {
	return nil, "", errNotImplementedYet
}

// UpdateBot changes name and/or daily_limit.
func (s *Service) UpdateBot(ctx context.Context, tenantID, botID uuid.UUID, u UpdateBot) (Bot, error) {
	return Bot{}, errNotImplementedYet
}

// DeleteBot calls deleteWebhook and takes the bot out of service.
func (s *Service) DeleteBot(ctx context.Context, tenantID, botID uuid.UUID) error {
	return errNotImplementedYet
}

// BotForTenant returns the tenant's bot botID, or its only bot when botID is nil.
func (s *Service) BotForTenant(ctx context.Context, tenantID uuid.UUID, botID *uuid.UUID) (Bot, error) {
	return Bot{}, errNotImplementedYet
}

// BotByID returns an active bot by id whatever its tenant (worker use).
func (s *Service) BotByID(ctx context.Context, botID uuid.UUID) (Bot, error) {
	return Bot{}, errNotImplementedYet
}
