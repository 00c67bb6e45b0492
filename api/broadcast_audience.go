package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/broadcast"
)

// previewAudienceRequest is the body of POST /broadcast/preview-audience: the audience part
// of a POST /broadcast/ (bot_app_id and exactly one of recipients and segment).
type previewAudienceRequest struct {
	BotAppID   *string            `json:"bot_app_id"`
	Recipients []string           `json:"recipients"`
	Segment    *broadcast.Segment `json:"segment"`
	// Topic, when given, counts the contacts unsubscribed from it (topics.go).
	Topic string `json:"topic"`
}

// previewAudienceResponse is what a broadcast with that audience would target now: Count
// recipients (Blocked of them have blocked the bot and would be recorded as skipped without
// a send) and a Sample of up to 10 of them, newest first, rendered as GET /contacts/ does.
type previewAudienceResponse struct {
	Count   int               `json:"count"`
	Blocked int               `json:"blocked"`
	Sample  []contactResponse `json:"sample"`
	// OptedOut of them (not blocked) sent /stop: also recorded as skipped.
	OptedOut int `json:"opted_out"`
	// Unsubscribed of them (neither blocked nor opted out) opted out of the request's topic:
	// also recorded as skipped by a broadcast with that topic (0 without a topic).
	Unsubscribed int `json:"unsubscribed"`
}

// previewAudience answers the count and a sample of a broadcast audience without creating
// anything: 200. Another tenant's bot is 404 bot_not_found.
func (s *server) previewAudience(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req previewAudienceRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	botID, ids, err := parseAudience(req.BotAppID, req.Recipients)
	if err != nil {
		return err
	}
	a, err := s.d.Broadcasts.PreviewAudience(c.Request().Context(), tid, botID, ids, req.Segment)
	if err != nil {
		return err
	}
	out := previewAudienceResponse{Count: a.Count, Blocked: a.Blocked, OptedOut: a.OptedOut, Sample: make([]contactResponse, 0, len(a.Sample))}
	if out.Unsubscribed, err = s.d.Broadcasts.CountUnsubscribed(c.Request().Context(), tid, botID, ids, req.Segment, req.Topic); err != nil {
		return err
	}
	for _, ct := range a.Sample {
		out.Sample = append(out.Sample, toContactResponse(ct))
	}
	return c.JSON(http.StatusOK, out)
}
