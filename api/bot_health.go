package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// healthResponse is a bot's health (GET .../health/, POST .../sync/). It carries nothing
// secret: no token, no webhook secret (Telegram's getWebhookInfo does not reveal it either).
type healthResponse struct {
	BotAppID        string                  `json:"bot_app_id"`
	Verdict         string                  `json:"verdict"`
	Reasons         []healthReasonResponse  `json:"reasons"`
	CheckedAt       time.Time               `json:"checked_at"`
	WebhookRepaired bool                    `json:"webhook_repaired"`
	Identity        *identityResponse       `json:"identity"`
	Webhook         *webhookHealthResponse  `json:"webhook"`
	Commands        *commandsHealthResponse `json:"commands"`
	Daily           dailyResponse           `json:"daily"`
}

type identityResponse struct {
	ID                      int64  `json:"id"`
	Username                string `json:"username"`
	FirstName               string `json:"first_name"`
	CanJoinGroups           bool   `json:"can_join_groups"`
	CanReadAllGroupMessages bool   `json:"can_read_all_group_messages"`
	SupportsInlineQueries   bool   `json:"supports_inline_queries"`
}

type webhookHealthResponse struct {
	URL                string     `json:"url"`
	ExpectedURL        string     `json:"expected_url"`
	URLMatches         bool       `json:"url_matches"`
	PendingUpdateCount int64      `json:"pending_update_count"`
	LastErrorDate      *time.Time `json:"last_error_date"`
	LastErrorMessage   string     `json:"last_error_message"`
	MaxConnections     int64      `json:"max_connections"`
	AllowedUpdates     []string   `json:"allowed_updates"`
	IPAddress          string     `json:"ip_address"`
}

type commandsHealthResponse struct {
	Count    int               `json:"count"`
	Required []string          `json:"required"`
	Missing  []string          `json:"missing"`
	InSync   bool              `json:"in_sync"`
	Commands []commandResponse `json:"commands"`
}

type dailyResponse struct {
	Sent    int     `json:"sent"`
	Limit   int     `json:"limit"`
	Percent float64 `json:"percent"`
}

// healthReasonResponse is one finding of a health check (telegram.HealthReason).
type healthReasonResponse struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

func toReasons(rs []telegram.HealthReason) []healthReasonResponse {
	out := make([]healthReasonResponse, len(rs))
	for i, r := range rs {
		out[i] = healthReasonResponse(r)
	}
	return out
}

// commandResponse is one BotCommand (core.telegram.org/bots/api#botcommand), in responses
// and in the body of PUT .../commands/.
type commandResponse struct {
	Command     string `json:"command"`
	Description string `json:"description"`
}

// healthSummaryResponse is a bot's last recorded health, shown as `health` by GET
// /telegram/v1/bots/{id}/ (null before the first check).
type healthSummaryResponse struct {
	Verdict           string                 `json:"verdict"`
	Reasons           []healthReasonResponse `json:"reasons"`
	CheckedAt         time.Time              `json:"checked_at"`
	WebhookRepairedAt *time.Time             `json:"webhook_repaired_at"`
}

// commandsResponse is a bot's command list for one language.
type commandsResponse struct {
	LanguageCode string            `json:"language_code"`
	Custom       bool              `json:"custom"`
	Commands     []commandResponse `json:"commands"`
	UpdatedAt    *time.Time        `json:"updated_at"`
}

// putCommandsRequest is the body of PUT .../commands/. LanguageCode may also be given as the
// language_code query parameter (both given and different: 422).
type putCommandsRequest struct {
	Commands     *[]commandResponse `json:"commands"`
	LanguageCode *string            `json:"language_code"`
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

func toCommandResponses(cmds []telegram.Command) []commandResponse {
	out := make([]commandResponse, len(cmds))
	for i, c := range cmds {
		out[i] = commandResponse(c)
	}
	return out
}

func toHealthResponse(h telegram.Health) healthResponse {
	r := healthResponse{
		BotAppID: h.BotID.String(), Verdict: h.Verdict, Reasons: toReasons(h.Reasons), CheckedAt: utc(h.CheckedAt),
		WebhookRepaired: h.WebhookRepaired,
		Daily:           dailyResponse{Sent: h.Daily.Sent, Limit: h.Daily.Limit, Percent: h.Daily.Percent},
	}
	if i := h.Identity; i != nil {
		r.Identity = &identityResponse{ID: i.ID, Username: i.Username, FirstName: i.FirstName, CanJoinGroups: i.CanJoinGroups,
			CanReadAllGroupMessages: i.CanReadAllGroupMessages, SupportsInlineQueries: i.SupportsInlineQueries}
	}
	if w := h.Webhook; w != nil {
		r.Webhook = &webhookHealthResponse{URL: w.URL, ExpectedURL: w.ExpectedURL, URLMatches: w.URLMatches,
			PendingUpdateCount: w.PendingUpdateCount, LastErrorDate: timePtr(w.LastErrorDate), LastErrorMessage: w.LastErrorMessage,
			MaxConnections: w.MaxConnections, AllowedUpdates: w.AllowedUpdates, IPAddress: w.IPAddress}
	}
	if c := h.Commands; c != nil {
		r.Commands = &commandsHealthResponse{Count: c.Count, Required: c.Required, Missing: c.Missing, InSync: c.InSync,
			Commands: toCommandResponses(c.Commands)}
	}
	return r
}

func toHealthSummary(h telegram.HealthSummary) *healthSummaryResponse {
	r := &healthSummaryResponse{Verdict: h.Verdict, Reasons: toReasons(h.Reasons), CheckedAt: utc(h.CheckedAt), WebhookRepairedAt: timePtr(h.WebhookRepairedAt)}
	return r
}

func toCommandsResponse(l telegram.CommandList) commandsResponse {
	return commandsResponse{LanguageCode: l.LanguageCode, Custom: l.Custom, Commands: toCommandResponses(l.Commands), UpdatedAt: timePtr(l.UpdatedAt)}
}

// botHealth checks the bot against Telegram now: 200 with the health whatever the verdict
// (Telegram down is verdict failing, reason telegram_unreachable).
func (s *server) botHealth(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	h, err := s.d.Telegram.CheckHealth(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toHealthResponse(h))
}

// syncBot registers the webhook and the command lists again: 200 with the new health.
func (s *server) syncBot(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	h, err := s.d.Telegram.SyncBot(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toHealthResponse(h))
}

// getBotCommands answers the stored command list of ?language_code= ("" = default).
func (s *server) getBotCommands(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	l, err := s.d.Telegram.GetCommands(c.Request().Context(), tid, id, c.QueryParam("language_code"))
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toCommandsResponse(l))
}

// putBotCommands replaces a command list (setMyCommands): 200 with the list.
func (s *server) putBotCommands(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	var req putCommandsRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Commands == nil {
		return validate.Field("commands", "commands is required (an array of {command, description}; [] clears the list)")
	}
	lang := c.QueryParam("language_code")
	if req.LanguageCode != nil {
		if c.QueryParams().Has("language_code") && lang != *req.LanguageCode {
			return validate.Field("language_code", "language_code is given in the query and in the body with different values")
		}
		lang = *req.LanguageCode
	}
	cmds := make([]telegram.Command, len(*req.Commands))
	for i, c := range *req.Commands {
		cmds[i] = telegram.Command(c)
	}
	l, err := s.d.Telegram.SetCommands(c.Request().Context(), tid, id, lang, cmds)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toCommandsResponse(l))
}

// addHealth sets resp.Health to the bot's last recorded health (one query by primary key).
func (s *server) addHealth(c echo.Context, tid uuid.UUID, resp *botResponse) error {
	last, err := s.d.Telegram.LastHealth(c.Request().Context(), tid, resp.BotAppID)
	if err != nil {
		return err
	}
	if h, ok := last[resp.BotAppID]; ok {
		resp.Health = toHealthSummary(h)
	}
	return nil
}
