package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/telegram"
)

// webhookOK is the body of a successful delivery (Telegram ignores it).
var webhookOK = map[string]bool{"ok": true}

// webhook receives one update from Telegram for bot_app_id. The body is capped at 1 MiB
// (413); telegram.Ingest checks the secret header in constant time (401, nothing stored)
// and stores the event in webhook_events, which the event processors consume; 200 only
// once the row is committed (group commit with concurrent deliveries), 400 when the
// update is malformed or PostgreSQL refuses its data, 503 when PostgreSQL is down
// (Telegram retries). Redis plays no part. A bot_app_id that is not a UUID is 404.
func (s *server) webhook(c echo.Context) error {
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	// Ingest bounds its own work on a context detached from the request's cancellation: a
	// client that hangs up must not abort a group-commit batch holding other requests' rows.
	if err := s.d.Telegram.Ingest(c.Request().Context(), id, c.Request().Header.Get(telegram.SecretHeader), body); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, webhookOK)
}

// webhookEventResponse is one stored update. Payload is the update as Telegram sent it.
type webhookEventResponse struct {
	ID          int64           `json:"id"`
	BotAppID    uuid.UUID       `json:"bot_app_id"`
	UpdateID    int64           `json:"update_id"`
	UpdateType  string          `json:"update_type"`
	Payload     json.RawMessage `json:"payload"`
	ReceivedAt  time.Time       `json:"received_at"`
	ProcessedAt *time.Time      `json:"processed_at"`
	// Status and ProcessError: see webhookEventStatus (bot_ops.go).
	Status       string `json:"status"`
	ProcessError string `json:"process_error"`
}

func toWebhookEventResponse(ev telegram.WebhookEvent) webhookEventResponse {
	payload := json.RawMessage(ev.Payload)
	if !json.Valid(payload) {
		payload = json.RawMessage("null")
	}
	return webhookEventResponse{
		ID: ev.ID, BotAppID: ev.BotID, UpdateID: ev.UpdateID, UpdateType: ev.UpdateType,
		Payload: payload, ReceivedAt: utc(ev.ReceivedAt), ProcessedAt: timeOrNil(ev.ProcessedAt),
		Status: webhookEventStatus(ev), ProcessError: ev.ProcessError,
	}
}

// listWebhookEvents answers one page of the tenant's received updates, newest first,
// optionally of one bot (?bot_app_id=) and narrowed by eventConditionsQuery's filters.
func (s *server) listWebhookEvents(c echo.Context) error {
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
	conds, err := eventConditionsQuery(c)
	if err != nil {
		return err
	}
	evs, next, err := s.d.Telegram.ListEvents(c.Request().Context(), tid, telegram.EventFilter{BotID: botID, Cursor: cursor, Limit: limit, EventConditions: conds})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(evs, next, toWebhookEventResponse))
}
