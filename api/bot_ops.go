package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// testSendRequest is the body of POST /telegram/v1/bots/{id}/test/.
type testSendRequest struct {
	ChatID          int64  `json:"chat_id"`
	Text            string `json:"text"`
	ParseMode       string `json:"parse_mode"`
	MessageThreadID int64  `json:"message_thread_id"`
}

// testSendResponse is the 200 answer of a test send Telegram accepted.
type testSendResponse struct {
	OK        bool  `json:"ok"`
	MessageID int64 `json:"message_id"`
	// ChatID is where the message went: the chat_id given, or the new supergroup id after
	// Telegram's migrate_to_chat_id.
	ChatID int64 `json:"chat_id"`
}

// Errors of a test send whose Outcome is not sent (see testSendError).
var (
	errTestSendWait        = apperr.New(apperr.KindRateLimited, "send_limited", "nothing was sent: a send limit applies; retry after the number of seconds in Retry-After")
	errTestSendDaily       = apperr.New(apperr.KindRateLimited, "daily_limit_reached", "nothing was sent: the bot's daily_limit is used up for this UTC day")
	errTestSendBotInactive = apperr.Conflict("bot_not_active", "nothing was sent: the bot is not active (disabled, or Telegram rejected its token)")
	errTestSendUpstream    = apperr.New(apperr.KindUpstream, "telegram_unavailable", "Telegram could not be reached or failed; the message may not have been sent")
)

// testSend sends one message at once through the bot's normal send path (telegram.Service
// TestSend: every limit applies) and answers Telegram's verdict:
//   - 200 {ok, message_id, chat_id}: sent;
//   - 422 telegram_refused: Telegram refused it (400 chat not found, 403 blocked, ...),
//     details {field: "chat_id", error_code, description};
//   - 429 send_limited (a rate limit, Telegram's 429, the chat's 1/s) or daily_limit_reached,
//     with Retry-After in seconds: nothing was sent;
//   - 409 bot_not_active with Retry-After: the bot is disabled or its token was rejected;
//   - 502 telegram_unavailable: a network error or 5xx (the message may have arrived).
func (s *server) testSend(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	var req testSendRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	out, err := s.d.Telegram.TestSend(c.Request().Context(), tid, id, telegram.TestMessage{
		ChatID: req.ChatID, Text: req.Text, ParseMode: req.ParseMode, MessageThreadID: req.MessageThreadID,
	})
	if err != nil {
		return err
	}
	if out.Status == telegram.OutcomeSent {
		return c.JSON(http.StatusOK, testSendResponse{OK: true, MessageID: out.MessageID, ChatID: out.ChatID})
	}
	return testSendError(c, out)
}

// testSendError maps a test send's Outcome other than sent to an error, setting Retry-After
// for the waits.
func testSendError(c echo.Context, out telegram.Outcome) error {
	retryAfter := func(d time.Duration) {
		secs := int((d + time.Second - 1) / time.Second)
		c.Response().Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	switch out.Status {
	case telegram.OutcomeFailed, telegram.OutcomeBlocked:
		return telegram.ErrTelegramRefused.WithMessage("Telegram refused the message: %s", out.Err).
			WithDetails(map[string]any{"field": "chat_id", "error_code": out.ErrorCode, "description": out.Err})
	case telegram.OutcomeDeferred:
		until := out.Until.UTC()
		retryAfter(time.Until(until))
		return errTestSendDaily.WithDetails(map[string]any{"until": until.Format(time.RFC3339)})
	case telegram.OutcomeWait:
		retryAfter(out.RetryAfter)
		if out.BotInactive {
			return errTestSendBotInactive.WithDetails(map[string]any{"reason": out.Err})
		}
		return errTestSendWait.WithDetails(map[string]any{"reason": out.Err, "chat_busy": out.ChatBusy})
	}
	return errTestSendUpstream.WithDetails(map[string]any{"reason": out.Err})
}

// lookupChatRequest is the body of POST /telegram/v1/bots/{id}/lookup-chat/: exactly one of
// chat_id and username.
type lookupChatRequest struct {
	ChatID   int64  `json:"chat_id"`
	Username string `json:"username"`
}

// chatInfoResponse is a chat as Telegram's getChat and getChatMemberCount describe it.
type chatInfoResponse struct {
	ID          int64  `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title,omitempty"`
	Username    string `json:"username,omitempty"`
	FirstName   string `json:"first_name,omitempty"`
	LastName    string `json:"last_name,omitempty"`
	IsForum     bool   `json:"is_forum"`
	MemberCount *int64 `json:"member_count"`
}

// lookupChat asks Telegram about a chat through the bot (telegram.Service LookupChat).
func (s *server) lookupChat(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	var req lookupChatRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ci, err := s.d.Telegram.LookupChat(c.Request().Context(), tid, id, req.ChatID, req.Username)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, chatInfoResponse{ID: ci.ID, Type: ci.Type, Title: ci.Title, Username: ci.Username,
		FirstName: ci.FirstName, LastName: ci.LastName, IsForum: ci.IsForum, MemberCount: ci.MemberCount})
}

// usageDayResponse is one UTC day of GET .../usage/.
type usageDayResponse struct {
	Date     string `json:"date"`
	Sent     int    `json:"sent"`
	Failed   int    `json:"failed"`
	Deferred int    `json:"deferred"`
	Inbound  int    `json:"inbound"`
}

// usageResponse is the answer of GET /telegram/v1/bots/{id}/usage/.
type usageResponse struct {
	BotAppID string             `json:"bot_app_id"`
	From     string             `json:"from"`
	To       string             `json:"to"`
	Days     []usageDayResponse `json:"days"`
	Totals   usageDayTotals     `json:"totals"`
}

type usageDayTotals struct {
	Sent     int `json:"sent"`
	Failed   int `json:"failed"`
	Deferred int `json:"deferred"`
	Inbound  int `json:"inbound"`
}

// dateQuery reads the optional YYYY-MM-DD query parameter name (zero when absent; 422
// invalid_field when it does not parse).
func dateQuery(c echo.Context, name string) (time.Time, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.DateOnly, raw)
	if err != nil {
		return time.Time{}, validate.Field(name, "%s must be a date YYYY-MM-DD (UTC)", name)
	}
	return t, nil
}

// botUsage answers a bot's sent, failed, deferred and inbound counts per UTC day
// (telegram.Service Usage): ?from= and ?to= (YYYY-MM-DD, included; default the last 7 days,
// at most 92).
func (s *server) botUsage(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	from, err := dateQuery(c, "from")
	if err != nil {
		return err
	}
	to, err := dateQuery(c, "to")
	if err != nil {
		return err
	}
	days, err := s.d.Telegram.Usage(c.Request().Context(), tid, id, from, to)
	if err != nil {
		return err
	}
	r := usageResponse{BotAppID: id.String(), Days: make([]usageDayResponse, len(days))}
	for i, d := range days {
		r.Days[i] = usageDayResponse{Date: d.Date.Format(time.DateOnly), Sent: d.Sent, Failed: d.Failed, Deferred: d.Deferred, Inbound: d.Inbound}
		r.Totals.Sent += d.Sent
		r.Totals.Failed += d.Failed
		r.Totals.Deferred += d.Deferred
		r.Totals.Inbound += d.Inbound
	}
	r.From, r.To = r.Days[0].Date, r.Days[len(r.Days)-1].Date
	return c.JSON(http.StatusOK, r)
}

// webhookEventStatus is an event's processing state (telegram.EventStatuses).
func webhookEventStatus(ev telegram.WebhookEvent) string {
	switch {
	case ev.ProcessedAt.IsZero():
		return telegram.EventPending
	case ev.ProcessError == "":
		return telegram.EventProcessed
	case strings.HasPrefix(ev.ProcessError, "skipped:"):
		return telegram.EventSkipped
	}
	return telegram.EventFailed
}

// eventConditionsQuery reads the filters of GET /telegram/v1/webhook-events/: update_type,
// status, created_after and created_before (RFC 3339; 422 invalid_field naming the
// parameter when it does not parse). The values are checked by telegram.ListEvents.
func eventConditionsQuery(c echo.Context) (telegram.EventConditions, error) {
	conds := telegram.EventConditions{UpdateType: c.QueryParam("update_type"), Status: c.QueryParam("status")}
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"created_after", &conds.ReceivedAfter}, {"created_before", &conds.ReceivedBefore}} {
		raw := c.QueryParam(p.name)
		if raw == "" {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, raw)
		if err != nil {
			return conds, validate.Field(p.name, "%s must be an RFC 3339 time such as 2026-12-02T15:04:05Z", p.name)
		}
		*p.dst = t
	}
	return conds, nil
}
