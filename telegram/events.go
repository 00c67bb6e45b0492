package telegram

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/page"
)

// WebhookEvent is one update received on a bot's webhook, stored once per (BotID, UpdateID)
// (table webhook_events). Payload is the Update exactly as Telegram sent it (raw JSON,
// core.telegram.org/bots/api#update); UpdateType is its update field ("message",
// "my_chat_member", ...; "unknown" when none is recognised). ProcessedAt is zero until the
// worker has handled the event; ProcessError says why an event was skipped or failed for good
// ("" when it was handled normally).
type WebhookEvent struct {
	bun.BaseModel `bun:"table:webhook_events,alias:e"`

	ID           int64     `bun:",pk,autoincrement"`
	TenantID     uuid.UUID `bun:",type:uuid,notnull"`
	BotID        uuid.UUID `bun:",type:uuid,notnull"`
	UpdateID     int64     `bun:",notnull"`
	UpdateType   string    `bun:",notnull"`
	Payload      []byte    `bun:",type:jsonb,notnull"`
	ReceivedAt   time.Time `bun:",nullzero,notnull,default:now()"`
	ProcessedAt  time.Time `bun:",nullzero"`
	ProcessError string    `bun:",notnull"`
}

// EventFilter selects a page of webhook events: an optional bot (one of the tenant's,
// deleted ones included; any other id is ErrBotNotFound), Cursor from a previous page's
// next_cursor ("" = first page) and Limit 1-200 (0 = page.DefaultLimit).
type EventFilter struct {
	BotID  *uuid.UUID
	Cursor string
	Limit  int
	// UpdateType, Status, ReceivedAfter and ReceivedBefore narrow the page (events_filter.go).
	EventConditions
}

// ListEvents returns one page of the tenant's webhook events, newest first (by id), and the
// cursor of the next page ("" on the last). Events of deleted bots are included. Errors:
// page.ErrBadCursor, page.ErrBadLimit (422), ErrBotNotFound (404) when f.BotID is not one of
// the tenant's bots (checked only when the page is empty: a non-empty page proves it is),
// apperr.ErrUnavailable (503).
func (s *Service) ListEvents(ctx context.Context, tenantID uuid.UUID, f EventFilter) ([]WebhookEvent, string, error) {
	limit, err := page.Limit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	after, ok, err := page.DecodeInt(f.Cursor)
	if err != nil {
		return nil, "", err
	}
	if err := f.check(); err != nil {
		return nil, "", err
	}
	events := []WebhookEvent{}
	q := s.db.NewSelect().Model(&events).Where("e.tenant_id = ?", tenantID)
	q = f.apply(q)
	if f.BotID != nil {
		q = q.Where("e.bot_id = ?", *f.BotID)
	}
	if ok {
		q = q.Where("e.id < ?", after)
	}
	if err := q.OrderExpr("e.id DESC").Limit(int64(limit + 1)).Scan(ctx); err != nil {
		return nil, "", apperr.Classify(fmt.Errorf("list events: %w", err))
	}
	if len(events) == 0 && f.BotID != nil {
		if err := s.RequireBot(ctx, tenantID, *f.BotID); err != nil {
			return nil, "", err
		}
	}
	next := ""
	if len(events) > limit {
		events = events[:limit]
		next = page.EncodeInt(events[limit-1].ID)
	}
	return events, next, nil
}

// inbound is the Service's state for the inbound path: the bot cache (botcache.go), the
// webhook's group commit (ingest.go) and the event processors' wake-up and callback
// answering (process.go).
type inbound struct {
	bots   *botCache
	ingest *ingestBatcher
	// wake nudges an idle event processor of this process after Ingest stored events.
	wake chan struct{}
	// callbacks bounds the answerCallbackQuery calls in flight (best effort, after commit).
	callbacks chan struct{}
}

func newInbound(s *Service) *inbound {
	in := &inbound{
		bots: newBotCache(s.rdb, s.log, func(ctx context.Context, id uuid.UUID) (Bot, error) { return botByID(ctx, s.db, id, true) },
			func(id uuid.UUID) { s.tpl.drop(id) }), // a bot dropped from the cache drops its reply templates
		wake:      make(chan struct{}, 1),
		callbacks: make(chan struct{}, maxCallbacksInFlight),
	}
	in.ingest = newIngestBatcher(s.db, s.log, in.nudge)
	return in
}

// nudge wakes one idle event processor of this process, if any is waiting.
func (in *inbound) nudge() {
	select {
	case in.wake <- struct{}{}:
	default:
	}
}
