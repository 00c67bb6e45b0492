package telegram

// STUB: helper-3 replaces this file.

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// WebhookEvent is one received update.
type WebhookEvent struct {
	ID           int64
	TenantID     uuid.UUID
	BotID        uuid.UUID
	UpdateID     int64
	UpdateType   string
	Payload      []byte
	ReceivedAt   time.Time
	ProcessedAt  time.Time
	ProcessError string
}

// EventFilter selects a page of webhook events.
type EventFilter struct {
	BotID  *uuid.UUID
	Cursor string
	Limit  int
}

// Ingest stores one webhook delivery and enqueues its processing.
func (s *Service) Ingest(ctx context.Context, botID uuid.UUID, secret string, body []byte) error {
	return errNotImplementedYet
}

// ListEvents returns a page of the tenant's webhook events, newest first.
func (s *Service) ListEvents(ctx context.Context, tenantID uuid.UUID, f EventFilter) ([]WebhookEvent, string, error) {
	return nil, "", errNotImplementedYet
}

// HandleUpdate processes one stored webhook event (task TypeUpdate).
func (s *Service) HandleUpdate(ctx context.Context, t *asynq.Task) error { return errNotImplementedYet }

// HandleSweep re-enqueues stored-but-unprocessed events and stale queued messages (task TypeSweep).
func (s *Service) HandleSweep(ctx context.Context, t *asynq.Task) error { return errNotImplementedYet }
