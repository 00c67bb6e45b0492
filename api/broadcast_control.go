package api

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/internal/validate"
)

// broadcastScheduleFields are the lifecycle fields of POST /broadcast/ and PUT
// /broadcast/{id}/ (embedded in createBroadcastRequest).
type broadcastScheduleFields struct {
	// Draft saves without sending (POST /broadcast/{id}/send sends it). In PUT, absent keeps
	// the current state.
	Draft *bool `json:"draft"`
	// SendAt (RFC 3339) is when sending may start; absent or past means at once.
	SendAt *string `json:"send_at"`
	// MaxConsecutiveErrors is the auto-pause threshold (1-10000, default 50).
	MaxConsecutiveErrors *int `json:"max_consecutive_errors"`
}

// schedule parses the fields into broadcast.Schedule. Errors: invalid_field send_at (not
// RFC 3339); max_consecutive_errors is checked by the service.
func (f broadcastScheduleFields) schedule() (broadcast.Schedule, error) {
	sc := broadcast.Schedule{Draft: f.Draft, MaxConsecutiveErrors: f.MaxConsecutiveErrors}
	if f.SendAt != nil {
		t, err := time.Parse(time.RFC3339, *f.SendAt)
		if err != nil {
			return sc, validate.Field("send_at", "send_at must be an RFC 3339 time, e.g. 2026-12-24T09:00:00Z")
		}
		sc.SendAt = &t
	}
	return sc, nil
}

// broadcastControlView is the lifecycle part of broadcastResponse (embedded).
type broadcastControlView struct {
	// Expired counts recipients not sent before the broadcast's expiry.
	Expired int `json:"expired"`
	// SendAt is when sending may start (null: at once).
	SendAt *time.Time `json:"send_at"`
	// PauseReason says why a paused broadcast was paused ("" when paused through the API).
	PauseReason string     `json:"pause_reason"`
	PausedAt    *time.Time `json:"paused_at"`
	// MaxConsecutiveErrors is the auto-pause threshold.
	MaxConsecutiveErrors int `json:"max_consecutive_errors"`
	// ConsecutiveErrors is the current count toward it.
	ConsecutiveErrors int `json:"consecutive_errors"`
	// Cycle is 1, plus one per retry-failed.
	Cycle int `json:"cycle"`
	// Rate is the recipients sent per second over about the last minute.
	Rate float64 `json:"rate"`
	// ETA is when the pending recipients should all be sent at Rate (running only; else null).
	ETA *time.Time `json:"eta"`
}

// toBroadcastControlView builds the lifecycle part of b's response at now.
func toBroadcastControlView(b broadcast.Broadcast, n broadcast.Counts, now time.Time) broadcastControlView {
	return broadcastControlView{
		Expired: n.Expired, SendAt: timeOrNil(b.SendAt), PauseReason: b.PauseReason, PausedAt: timeOrNil(b.PausedAt),
		MaxConsecutiveErrors: b.MaxConsecutiveErrors, ConsecutiveErrors: b.ErrorStreak, Cycle: b.Cycle,
		Rate: math.Round(b.Rate(now, b.StartedAt)*100) / 100, ETA: broadcast.ETA(b, n, now),
	}
}

// updateBroadcast replaces a draft or scheduled broadcast (PUT /broadcast/{id}/): the body
// and its validation are those of POST /broadcast/; 200 with the broadcast.
func (s *server) updateBroadcast(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", broadcast.ErrNotFound)
	if err != nil {
		return err
	}
	var req createBroadcastRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	nb, err := req.toNewBroadcast()
	if err != nil {
		return err
	}
	b, n, err := s.d.Broadcasts.Update(c.Request().Context(), tid, id, nb)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toBroadcastResponse(b, n))
}

// broadcastAction is a POST /broadcast/{id}/<action> handler (no body): one service call
// on the tenant's broadcast, 200 with the broadcast.
func (s *server) broadcastAction(action func(*broadcast.Service, context.Context, uuid.UUID, uuid.UUID) (broadcast.Broadcast, broadcast.Counts, error)) echo.HandlerFunc {
	return func(c echo.Context) error {
		tid, err := tenantID(c)
		if err != nil {
			return err
		}
		id, err := pathID(c, "id", broadcast.ErrNotFound)
		if err != nil {
			return err
		}
		b, n, err := action(s.d.Broadcasts, c.Request().Context(), tid, id)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, toBroadcastResponse(b, n))
	}
}

// recipientHistoryView is the retry-failed part of a recipient (embedded in
// recipientResponse).
type recipientHistoryView struct {
	// Cycle is the attempt cycle of the current status (1 until a retry-failed).
	Cycle int `json:"cycle"`
	// History lists the earlier cycles' last attempts, oldest first:
	// [{"cycle", "status", "attempts", "error", "at"}]; [] when none.
	History json.RawMessage `json:"history"`
}

// toRecipientHistoryView builds the retry-failed part of r's response.
func toRecipientHistoryView(r broadcast.RecipientRow) recipientHistoryView {
	v := recipientHistoryView{Cycle: max(r.Cycle, 1), History: r.History}
	if len(v.History) == 0 || string(v.History) == "null" {
		v.History = json.RawMessage("[]")
	}
	return v
}
