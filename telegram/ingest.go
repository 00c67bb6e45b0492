package telegram

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

// UpdateTypes are the fields of Telegram's Update object (core.telegram.org/bots/api#update,
// Bot API 9.x as generated in gotgbot v2.0.0-rc.36) in the order Ingest looks for them; the
// first one present is the event's update_type ("unknown" when none is).
var UpdateTypes = []string{
	"message", "edited_message", "channel_post", "edited_channel_post",
	"callback_query", "inline_query", "chosen_inline_result",
	"my_chat_member", "chat_member", "chat_join_request",
	"pre_checkout_query", "shipping_query", "purchased_paid_media",
	"poll", "poll_answer", "message_reaction", "message_reaction_count",
	"business_connection", "business_message", "edited_business_message", "deleted_business_messages",
	"guest_message", "chat_boost", "removed_chat_boost", "managed_bot", "subscription",
}

// UpdateTypeUnknown is the update_type of an update with none of the UpdateTypes fields.
const UpdateTypeUnknown = "unknown"

// Timeouts of the ingest path. The work is detached from the request's cancellation (a
// client that hangs up after the INSERT must not leave an event without its task), so it
// is bounded here instead.
const (
	ingestStoreTimeout   = 10 * time.Second
	ingestEnqueueTimeout = 5 * time.Second
)

// Ingest stores one webhook delivery of bot botID and enqueues its processing
// (DESIGN.md "Inbound update"; core.telegram.org/bots/api#setwebhook). The API answers 200
// when it returns nil, and Telegram redelivers on anything else, so nil is returned only
// once the update is durable: stored in webhook_events and its telegram:update task
// enqueued (or already processed).
//
// secret is the X-Telegram-Bot-Api-Secret-Token header, compared in constant time with the
// bot's secret; body is the raw request body (the API layer bounds its size).
//
// Errors: ErrBotNotFound (404) for an unknown or deleted bot; ErrBadSecret (401) for a
// missing or wrong secret, nothing stored; apperr.ErrMalformed (400) unless body is a JSON
// object with a positive integer update_id; apperr.ErrUnavailable (503) when PostgreSQL or
// Redis fails, so that Telegram retries. A redelivered update_id is stored once: if it was
// processed already Ingest returns nil, otherwise it enqueues its task again.
func (s *Service) Ingest(ctx context.Context, botID uuid.UUID, secret string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ingestStoreTimeout)
	defer cancel()

	var bot struct {
		TenantID   uuid.UUID
		SecretHash []byte
	}
	err := s.db.NewSelect().Table("bots").ColumnExpr("tenant_id, webhook_secret_hash").
		Where("id = ?", botID).Where("deleted_at IS NULL").Scan(ctx, &bot.TenantID, &bot.SecretHash)
	if err != nil {
		if database.IsNoRows(err) {
			return ErrBotNotFound
		}
		return apperr.ErrUnavailable.Wrap(fmt.Errorf("look up bot: %w", err))
	}
	h := sha256.Sum256([]byte(secret))
	if secret == "" || subtle.ConstantTimeCompare(h[:], bot.SecretHash) != 1 {
		return ErrBadSecret
	}

	updateID, updateType, err := parseUpdate(body)
	if err != nil {
		return err
	}
	log := s.log.With("bot_app_id", botID.String(), "update_id", updateID)

	var eventID int64
	err = s.db.NewRaw(`INSERT INTO webhook_events (tenant_id, bot_id, update_id, update_type, payload)
		VALUES (?, ?, ?, ?, ?::jsonb) ON CONFLICT (bot_id, update_id) DO NOTHING RETURNING id`,
		bot.TenantID, botID, updateID, updateType, string(body)).Scan(ctx, &eventID)
	switch {
	case err == nil:
	case database.IsNoRows(err): // a redelivery: the event is stored already
		var processedAt sql.NullTime
		err = s.db.NewSelect().Table("webhook_events").ColumnExpr("id, processed_at").
			Where("bot_id = ?", botID).Where("update_id = ?", updateID).Scan(ctx, &eventID, &processedAt)
		if err != nil {
			return apperr.ErrUnavailable.Wrap(fmt.Errorf("look up event: %w", err))
		}
		if processedAt.Valid {
			log.Debug("telegram: duplicate update already processed")
			return nil
		}
		log.Debug("telegram: duplicate update not processed yet; enqueueing again")
	case isDataException(err):
		// e.g. a \u0000 escape, which jsonb rejects: Telegram's retry would fail the same way.
		return apperr.ErrMalformed.WithMessage("the update cannot be stored: %s", pgMessage(err))
	default:
		return apperr.ErrUnavailable.Wrap(fmt.Errorf("store event: %w", err))
	}

	if err := s.enqueueUpdate(ctx, eventID); err != nil {
		log.Warn("telegram: enqueue update failed; Telegram will redeliver", "event_id", eventID, "error", err)
		return apperr.ErrUnavailable.Wrap(err)
	}
	return nil
}

// parseUpdate checks that body is a JSON object with a positive integer update_id and
// returns it with the update's type. Errors: apperr.ErrMalformed.
func parseUpdate(body []byte) (int64, string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return 0, "", apperr.ErrMalformed.WithMessage("the update is not a JSON object")
	}
	raw, ok := fields["update_id"]
	if !ok {
		return 0, "", apperr.ErrMalformed.WithMessage("update_id is missing")
	}
	id, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil || id <= 0 {
		return 0, "", apperr.ErrMalformed.WithMessage("update_id must be a positive integer")
	}
	for _, t := range UpdateTypes {
		if _, ok := fields[t]; ok {
			return id, t, nil
		}
	}
	return id, UpdateTypeUnknown, nil
}

// enqueueUpdate enqueues the telegram:update task of event eventID. It does not depend on
// ctx's cancellation (only on its values) and gives up after ingestEnqueueTimeout. A TaskID
// conflict means the task exists already: success.
func (s *Service) enqueueUpdate(ctx context.Context, eventID int64) error {
	task, err := NewUpdateTask(eventID)
	if err != nil {
		return err
	}
	return s.enqueueTask(ctx, task)
}

// enqueueTask enqueues task, detached from ctx's cancellation and bounded by
// ingestEnqueueTimeout; asynq.ErrTaskIDConflict (the task exists already) is success.
func (s *Service) enqueueTask(ctx context.Context, task *asynq.Task) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ingestEnqueueTimeout)
	defer cancel()
	if _, err := s.queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s: %w", task.Type(), err)
	}
	return nil
}

// isDataException reports a PostgreSQL data exception (SQLSTATE class 22): the input itself
// is unacceptable, retrying cannot help.
func isDataException(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22"
}

func pgMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return "invalid data"
}
