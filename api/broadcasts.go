package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/internal/validate"
)

// maxReportedIDs bounds the invalid ids echoed back in a 422's details.
const maxReportedIDs = 100

// createBroadcastRequest is the body of POST /broadcast/. Recipients are contact ids of the
// tenant; BotAppID may be omitted when the tenant has exactly one bot.
type createBroadcastRequest struct {
	Name        string   `json:"name"`
	Platform    string   `json:"platform"`
	MessageText string   `json:"message_text"`
	ParseMode   string   `json:"parse_mode"`
	Recipients  []string `json:"recipients"`
	BotAppID    *string  `json:"bot_app_id"`
	// Segment selects the recipients instead of Recipients (exactly one of the two).
	Segment *broadcast.Segment `json:"segment"`
	// Content options: photo/document (message_text is then the caption), reply_markup,
	// disable_notification, protect_content, link_preview_options.
	contentFields
	// draft, send_at, max_consecutive_errors (broadcast_control.go).
	broadcastScheduleFields
	// broadcastTiming: expires_at, window, allow_paid_broadcast (broadcast_timing.go).
	broadcastTiming
	// Topic names one of the tenant's topics (topics.go); "" or absent for none.
	Topic string `json:"topic"`
}

// broadcastResponse is a broadcast with its per-recipient counts.
type broadcastResponse struct {
	ID          uuid.UUID  `json:"id"`
	Name        string     `json:"name"`
	Platform    string     `json:"platform"`
	BotAppID    uuid.UUID  `json:"bot_app_id"`
	MessageText string     `json:"message_text"`
	ParseMode   string     `json:"parse_mode"`
	Status      string     `json:"status"`
	Error       string     `json:"error"`
	Total       int        `json:"total"`
	Sent        int        `json:"sent"`
	Failed      int        `json:"failed"`
	Pending     int        `json:"pending"`
	Deferred    int        `json:"deferred"`
	Cancelled   int        `json:"cancelled"`
	Skipped     int        `json:"skipped"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
	StartedAt   *time.Time `json:"started_at"`
	CompletedAt *time.Time `json:"completed_at"`
	// Segment is the segment the recipients were selected by; null for a list of recipients.
	Segment *broadcast.Segment `json:"segment"`
	contentFields
	// expired, send_at, pause_reason, cycle, rate, eta, … (broadcast_control.go).
	broadcastControlView
	// broadcastTimingResponse: expires_at, window, allow_paid_broadcast (broadcast_timing.go).
	broadcastTimingResponse
	// Topic is the topic the broadcast is about; null for none (topics.go).
	Topic *string `json:"topic"`
}

func toBroadcastResponse(b broadcast.Broadcast, n broadcast.Counts) broadcastResponse {
	total := n.Total
	if total == 0 {
		total = b.Total
	}
	resp := broadcastResponse{
		ID: b.ID, Name: b.Name, Platform: b.Platform, BotAppID: b.BotID, MessageText: b.MessageText,
		ParseMode: b.ParseMode, Status: b.Status, Error: b.Error, Total: total,
		Sent: n.Sent, Failed: n.Failed, Pending: n.Pending, Deferred: n.Deferred, Cancelled: n.Cancelled, Skipped: n.Skipped,
		CreatedAt: utc(b.CreatedAt), UpdatedAt: utc(b.UpdatedAt),
		StartedAt: timeOrNil(b.StartedAt), CompletedAt: timeOrNil(b.CompletedAt), Segment: b.Segment,
		broadcastControlView:    toBroadcastControlView(b, n, time.Now()),
		broadcastTimingResponse: toBroadcastTimingResponse(b),
	}
	if b.Content != nil {
		resp.contentFields = toContentFields(b.Content.Content)
	}
	if b.Topic != "" {
		resp.Topic = &b.Topic
	}
	return resp
}

// createBroadcast validates the audience and schedules the broadcast (or saves a draft): 202.
func (s *server) createBroadcast(c echo.Context) error {
	tid, err := tenantID(c)
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
	b, n, err := s.d.Broadcasts.Create(c.Request().Context(), tid, nb)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, toBroadcastResponse(b, n))
}

// toNewBroadcast parses the ids; the other fields are validated by broadcast.Create
// (name, platform "TELEGRAM", message_text 1-4096, parse_mode, 1-100000 recipients).
func (r createBroadcastRequest) toNewBroadcast() (broadcast.NewBroadcast, error) {
	botID, ids, err := parseAudience(r.BotAppID, r.Recipients)
	if err != nil {
		return broadcast.NewBroadcast{}, err
	}
	sc, err := r.schedule()
	if err != nil {
		return broadcast.NewBroadcast{}, err
	}
	nb := broadcast.NewBroadcast{
		Name: r.Name, Platform: r.Platform, MessageText: r.MessageText, ParseMode: r.ParseMode,
		Recipients: ids, BotID: botID, Segment: r.Segment, Content: r.toContent(), Schedule: sc,
		Topic: r.Topic,
	}
	if err := r.apply(&nb); err != nil {
		return broadcast.NewBroadcast{}, err
	}
	return nb, nil
}

// parseAudience parses bot_app_id and the recipients' ids (nil when recipients is absent,
// so that the service can tell "no recipients" from "an empty list").
func parseAudience(rawBotID *string, recipients []string) (*uuid.UUID, []uuid.UUID, error) {
	var rawBot string
	if rawBotID != nil {
		rawBot = *rawBotID
	}
	botID, err := validate.OptionalUUID("bot_app_id", rawBot)
	if err != nil {
		return nil, nil, err
	}
	if recipients == nil {
		return botID, nil, nil
	}
	ids := make([]uuid.UUID, 0, len(recipients))
	var bad []string
	for _, raw := range recipients {
		id, ok := validate.ParseUUID(raw)
		if !ok {
			if len(bad) < maxReportedIDs {
				bad = append(bad, raw)
			}
			continue
		}
		ids = append(ids, id)
	}
	if bad != nil {
		return nil, nil, validate.Field("recipients", "recipients must be contact ids (UUIDs)").
			WithDetails(map[string]any{"field": "recipients", "contact_ids": bad})
	}
	return botID, ids, nil
}

// listBroadcasts answers one page of the tenant's broadcasts, newest first, filtered by
// ?status=, ?bot_app_id= (404 bot_not_found when not one of the tenant's bots),
// ?created_after= and ?created_before= (broadcastListFilter).
func (s *server) listBroadcasts(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	f, err := broadcastListFilter(c)
	if err != nil {
		return err
	}
	f.Cursor, f.Limit = cursor, limit
	bs, counts, next, err := s.d.Broadcasts.List(c.Request().Context(), tid, f)
	if err != nil {
		return err
	}
	if len(bs) == 0 && f.BotID != nil { // a non-empty page proves the bot is the tenant's
		if err := s.d.Telegram.RequireBot(c.Request().Context(), tid, *f.BotID); err != nil {
			return err
		}
	}
	items := make([]broadcastResponse, 0, len(bs))
	for i, b := range bs {
		var n broadcast.Counts
		if i < len(counts) {
			n = counts[i]
		}
		items = append(items, toBroadcastResponse(b, n))
	}
	return c.JSON(http.StatusOK, listPage[broadcastResponse]{Items: items, NextCursor: next})
}

// getBroadcast answers one broadcast and its progress; another tenant's is 404.
func (s *server) getBroadcast(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", broadcast.ErrNotFound)
	if err != nil {
		return err
	}
	b, n, err := s.d.Broadcasts.Get(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toBroadcastResponse(b, n))
}

// cancelBroadcast stops sending to the recipients not yet sent: 200 with the broadcast.
func (s *server) cancelBroadcast(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", broadcast.ErrNotFound)
	if err != nil {
		return err
	}
	b, n, err := s.d.Broadcasts.Cancel(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toBroadcastResponse(b, n))
}
