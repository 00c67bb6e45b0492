package api

import (
	"cmp"
	"log/slog"
	"net/http"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/telegram"
)

// createBotRequest is the body of POST /telegram/v1/bots/. BotToken is the token from
// @BotFather; it is never returned nor logged.
type createBotRequest struct {
	Name       string `json:"name"`
	BotToken   string `json:"bot_token"`
	DailyLimit int    `json:"daily_limit"`
}

// updateBotRequest is the body of PUT /telegram/v1/bots/{bot_app_id}/: absent fields stay.
// BotToken rotates the token (telegram.UpdateBot); Status is "active" or "disabled".
type updateBotRequest struct {
	Name       *string `json:"name"`
	DailyLimit *int    `json:"daily_limit"`
	Status     *string `json:"status"`
	BotToken   *string `json:"bot_token"`
	// InboxMode is all, keywords or off; InboxKeywords replaces the keyword list
	// (telegram/inbox.go).
	InboxMode     *string   `json:"inbox_mode"`
	InboxKeywords *[]string `json:"inbox_keywords"`
}

// botResponse is a bot as the API shows it. It has no token and no webhook secret, masked
// or not: nothing of a secret leaves the server.
type botResponse struct {
	// Health is the last recorded health check (GET of one bot only; absent before the
	// first check; bot_health.go).
	Health *healthSummaryResponse `json:"health,omitempty"`

	BotAppID      uuid.UUID `json:"bot_app_id"`
	Name          string    `json:"name"`
	Username      string    `json:"username"`
	TelegramBotID int64     `json:"telegram_bot_id"`
	DailyLimit    int       `json:"daily_limit"`
	WebhookURL    string    `json:"webhook_url"`
	WebhookStatus string    `json:"webhook_status"`
	CreatedAt     time.Time `json:"created_at"`
	UpdatedAt     time.Time `json:"updated_at"`

	// Status is active, disabled or invalid_token (telegram.BotActive, ...).
	Status string `json:"status"`
	// WebhookError is Telegram's description of the last failed setWebhook ("" when none).
	WebhookError string `json:"webhook_error"`
	// TokenRotatedAt is when the token was last rotated (null: never).
	TokenRotatedAt *time.Time `json:"token_rotated_at"`
	// InboxMode (all, keywords, off) and InboxKeywords (lowercased) decide which inbound
	// messages are flagged "inbox" (telegram/inbox.go).
	InboxMode     string   `json:"inbox_mode"`
	InboxKeywords []string `json:"inbox_keywords"`
	// UpdatedBy is the name of the API key of the last PUT that changed the bot ("": none);
	// TokenRotatedBy the name of the one that last rotated its token ("": never).
	UpdatedBy      string `json:"updated_by"`
	TokenRotatedBy string `json:"token_rotated_by"`
}

func toBotResponse(b telegram.Bot) botResponse {
	r := botResponse{
		BotAppID: b.ID, Name: b.Name, Username: b.Username, TelegramBotID: b.TelegramBotID,
		DailyLimit: b.DailyLimit, WebhookURL: b.WebhookURL, WebhookStatus: b.WebhookStatus,
		CreatedAt: utc(b.CreatedAt), UpdatedAt: utc(b.UpdatedAt),
		Status: b.Status, WebhookError: b.WebhookError, TokenRotatedAt: timeOrNil(b.TokenRotatedAt),
		InboxMode: cmp.Or(b.InboxMode, telegram.InboxAll), InboxKeywords: b.InboxKeywords,
		UpdatedBy: b.UpdatedBy, TokenRotatedBy: b.TokenRotatedBy,
	}
	if r.InboxKeywords == nil {
		r.InboxKeywords = []string{}
	}
	return r
}

// createBot registers a bot (getMe, setWebhook, setMyCommands happen in telegram): 201.
// telegram.RegisterBot validates the fields (422 invalid_field, invalid_bot_token).
func (s *server) createBot(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req createBotRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	b, err := s.d.Telegram.RegisterBot(c.Request().Context(), tid, telegram.NewBot{Name: req.Name, Token: req.BotToken, DailyLimit: req.DailyLimit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, toBotResponse(b))
}

// listBots answers one page of the tenant's bots.
func (s *server) listBots(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	bots, next, err := s.d.Telegram.ListBots(c.Request().Context(), tid, telegram.BotFilter{Cursor: cursor, Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(bots, next, toBotResponse))
}

// getBot answers one bot; another tenant's is 404.
func (s *server) getBot(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	b, err := s.d.Telegram.GetBot(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	resp := toBotResponse(b)
	if err := s.addHealth(c, tid, &resp); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, resp)
}

// updateBot changes name, daily_limit, status, inbox_mode, inbox_keywords and/or rotates
// bot_token (validated by telegram.UpdateBot): 200. The calling API key's name is recorded
// as updated_by (and token_rotated_by for a rotation).
func (s *server) updateBot(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	var req updateBotRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	b, err := s.d.Telegram.UpdateBot(c.Request().Context(), tid, id, telegram.UpdateBot{
		Name: req.Name, DailyLimit: req.DailyLimit, Status: req.Status, Token: req.BotToken,
		InboxMode: req.InboxMode, InboxKeywords: req.InboxKeywords, Editor: ed.Name,
	})
	if err != nil {
		return err
	}
	s.resumeBotBroadcasts(c, b)
	return c.JSON(http.StatusOK, toBotResponse(b))
}

// deleteBot removes the webhook and takes the bot out of service: 204.
func (s *server) deleteBot(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	if err := s.d.Telegram.DeleteBot(c.Request().Context(), tid, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// validateTokenRequest is the body of POST /telegram/v1/validate-token.
type validateTokenRequest struct {
	BotToken string `json:"bot_token"`
}

// botIdentityResponse is a bot's identity as getMe answers it
// (core.telegram.org/bots/api#user).
type botIdentityResponse struct {
	TelegramBotID           int64  `json:"telegram_bot_id"`
	Username                string `json:"username"`
	FirstName               string `json:"first_name"`
	CanJoinGroups           bool   `json:"can_join_groups"`
	CanReadAllGroupMessages bool   `json:"can_read_all_group_messages"`
	SupportsInlineQueries   bool   `json:"supports_inline_queries"`
}

func toBotIdentity(u gotgbot.User) botIdentityResponse {
	return botIdentityResponse{
		TelegramBotID: u.Id, Username: u.Username, FirstName: u.FirstName, CanJoinGroups: u.CanJoinGroups,
		CanReadAllGroupMessages: u.CanReadAllGroupMessages, SupportsInlineQueries: u.SupportsInlineQueries,
	}
}

// botValidationResponse answers POST /telegram/v1/bots/{bot_app_id}/validate: valid with
// the identity, or not valid with Telegram's answer (the bot is then invalid_token).
type botValidationResponse struct {
	Valid    bool                 `json:"valid"`
	Identity *botIdentityResponse `json:"identity"`
	Error    string               `json:"error,omitempty"`
	Bot      botResponse          `json:"bot"`
}

// validateBot calls getMe with the bot's stored token now (telegram.ValidateBot): 200.
func (s *server) validateBot(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	v, err := s.d.Telegram.ValidateBot(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	s.resumeBotBroadcasts(c, v.Bot)
	resp := botValidationResponse{Valid: v.Valid, Error: v.Error, Bot: toBotResponse(v.Bot)}
	if v.Valid {
		ident := toBotIdentity(v.Me)
		resp.Identity = &ident
	}
	return c.JSON(http.StatusOK, resp)
}

// validateToken checks a token with getMe and stores nothing (telegram.ValidateToken): 200
// with the identity, 422 for a token Telegram rejects.
func (s *server) validateToken(c echo.Context) error {
	if _, err := tenantID(c); err != nil {
		return err
	}
	var req validateTokenRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	me, err := s.d.Telegram.ValidateToken(c.Request().Context(), req.BotToken)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toBotIdentity(me))
}

// resumeBotBroadcasts resumes, once bot b is active, its broadcasts that paused because it
// was not (broadcast.ResumeBotBroadcasts). A failure is only logged: the broadcast sweep
// resumes them within its interval.
func (s *server) resumeBotBroadcasts(c echo.Context, b telegram.Bot) {
	if s.d.Broadcasts == nil || b.Status != telegram.BotActive {
		return
	}
	ctx := c.Request().Context()
	if n, err := s.d.Broadcasts.ResumeBotBroadcasts(ctx, b.ID); err != nil {
		slog.WarnContext(ctx, "api: resume the bot's broadcasts failed; the sweep resumes them", "bot_app_id", b.ID.String(), "error", err)
	} else if n > 0 {
		slog.InfoContext(ctx, "api: bot active again, broadcasts resumed", "bot_app_id", b.ID.String(), "broadcasts", n)
	}
}
