package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/tenant"
)

// TemplateTestSendLimit is the most test sends (POST .../templates/{key}/test/) one API key
// may make per minute, across every API process (a GCRA in Redis, redis_rate).
const TemplateTestSendLimit = 10

// errTemplateTestRateLimited is the 429 of a key past TemplateTestSendLimit.
var errTemplateTestRateLimited = apperr.New(apperr.KindRateLimited, "rate_limited",
	"at most 10 template test sends per minute per API key; retry after the number of seconds in Retry-After")

// putTemplateRequest is the body of PUT /telegram/v1/bots/{bot_app_id}/templates/{key}/.
type putTemplateRequest struct {
	Text      string            `json:"text"`
	ParseMode string            `json:"parse_mode"`
	Variables map[string]string `json:"variables"`
	Command   string            `json:"command"`
}

// rollbackTemplateRequest is the body of POST .../templates/{key}/rollback/.
type rollbackTemplateRequest struct {
	Version int `json:"version"`
}

// testTemplateRequest is the body of POST .../templates/{key}/test/.
type testTemplateRequest struct {
	ChatID int64 `json:"chat_id"`
}

// templateLockResponse is an edit lock.
type templateLockResponse struct {
	Holder     string    `json:"holder"`
	AcquiredAt time.Time `json:"acquired_at"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// templateResponse is a reply template as the API shows it.
type templateResponse struct {
	Key       string                `json:"key"`
	Command   string                `json:"command"`
	BuiltIn   bool                  `json:"built_in"`
	Default   bool                  `json:"default"`
	Version   int                   `json:"version"`
	Text      string                `json:"text"`
	ParseMode string                `json:"parse_mode"`
	Variables map[string]string     `json:"variables"`
	Editor    string                `json:"editor"`
	UpdatedAt *time.Time            `json:"updated_at"`
	Lock      *templateLockResponse `json:"lock"`
}

// templateVersionResponse is one entry of a template's history.
type templateVersionResponse struct {
	Version    int               `json:"version"`
	Command    string            `json:"command"`
	Text       string            `json:"text"`
	ParseMode  string            `json:"parse_mode"`
	Variables  map[string]string `json:"variables"`
	Editor     string            `json:"editor"`
	ChangeType string            `json:"change_type"`
	CreatedAt  time.Time         `json:"created_at"`
}

// templateTestResponse is the answer of a test send that Telegram accepted.
type templateTestResponse struct {
	Status    string `json:"status"`
	MessageID int64  `json:"message_id"`
	ChatID    int64  `json:"chat_id"`
	Text      string `json:"text"`
	ParseMode string `json:"parse_mode"`
}

func toTemplateLockResponse(l *telegram.TemplateLock) *templateLockResponse {
	if l == nil {
		return nil
	}
	return &templateLockResponse{Holder: l.Holder, AcquiredAt: utc(l.AcquiredAt), ExpiresAt: utc(l.ExpiresAt)}
}

func toTemplateResponse(t telegram.ReplyTemplate) templateResponse {
	return templateResponse{
		Key: t.Key, Command: t.Command, BuiltIn: t.BuiltIn, Default: t.Default, Version: t.Version, Text: t.Text,
		ParseMode: t.ParseMode, Variables: t.Variables, Editor: t.Editor, UpdatedAt: timeOrNil(t.UpdatedAt),
		Lock: toTemplateLockResponse(t.Lock),
	}
}

// templatePath returns the tenant, bot and template key of a .../templates/{key}/ route.
func templatePath(c echo.Context) (tid, botID uuid.UUID, key string, err error) {
	if tid, err = tenantID(c); err != nil {
		return
	}
	if botID, err = pathID(c, "bot_app_id", telegram.ErrBotNotFound); err != nil {
		return
	}
	return tid, botID, c.Param("key"), nil
}

// editor is the calling API key (its name is recorded as the editor).
func editor(c echo.Context) (tenant.Key, error) {
	k, ok := tenant.KeyFromContext(c.Request().Context())
	if !ok {
		return tenant.Key{}, apperr.ErrUnauthorized
	}
	return k, nil
}

// listTemplates answers every key of the bot (built-ins included): {"items": [...]}.
func (s *server) listTemplates(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	botID, err := pathID(c, "bot_app_id", telegram.ErrBotNotFound)
	if err != nil {
		return err
	}
	ts, err := s.d.Telegram.ListTemplates(c.Request().Context(), tid, botID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(ts, "", toTemplateResponse))
}

// getTemplate answers one key.
func (s *server) getTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	t, err := s.d.Telegram.GetTemplate(c.Request().Context(), tid, botID, key)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTemplateResponse(t))
}

// putTemplate saves a new version: 201 when it created a tenant-defined key, 200 otherwise.
func (s *server) putTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	var req putTemplateRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, created, err := s.d.Telegram.PutTemplate(c.Request().Context(), tid, botID, key, ed,
		telegram.TemplateEdit{Text: req.Text, ParseMode: req.ParseMode, Variables: req.Variables, Command: req.Command})
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return c.JSON(status, toTemplateResponse(t))
}

// deleteTemplate deletes a tenant-defined key: 204.
func (s *server) deleteTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	if err := s.d.Telegram.DeleteTemplate(c.Request().Context(), tid, botID, key, ed); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// templateHistory answers the versions, newest first: {"items": [...]}.
func (s *server) templateHistory(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	vs, err := s.d.Telegram.TemplateHistory(c.Request().Context(), tid, botID, key)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(vs, "", func(v telegram.TemplateVersion) templateVersionResponse {
		return templateVersionResponse{Version: v.Version, Command: v.Command, Text: v.Text, ParseMode: v.ParseMode,
			Variables: v.Variables, Editor: v.Editor, ChangeType: v.ChangeType, CreatedAt: utc(v.CreatedAt)}
	}))
}

// rollbackTemplate saves a copy of {version} as a new version: 200 with the template.
func (s *server) rollbackTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	var req rollbackTemplateRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, err := s.d.Telegram.RollbackTemplate(c.Request().Context(), tid, botID, key, ed, req.Version)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTemplateResponse(t))
}

// resetTemplate saves the built-in default as a new version: 200 with the template.
func (s *server) resetTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	t, err := s.d.Telegram.ResetTemplate(c.Request().Context(), tid, botID, key, ed)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTemplateResponse(t))
}

// lockTemplate takes (or extends) the edit lock for the calling key: 200 with the lock.
func (s *server) lockTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	l, err := s.d.Telegram.LockTemplate(c.Request().Context(), tid, botID, key, ed)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toTemplateLockResponse(&l))
}

// unlockTemplate releases the edit lock: 204.
func (s *server) unlockTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	if err := s.d.Telegram.UnlockTemplate(c.Request().Context(), tid, botID, key, ed); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// testTemplate sends the template with sample values to chat_id now. The API key's test
// sends are limited to TemplateTestSendLimit per minute (429 rate_limited with
// Retry-After); a send Telegram refused for good (400 chat not found, 403 blocked) is 422
// test_send_failed with details {field: chat_id, status, description}; Telegram unreachable
// or 5xx is 502 telegram_unavailable; a send that must wait (rate limits, Telegram's 429,
// daily_limit) is 429 send_deferred with Retry-After. Nothing of it is stored.
func (s *server) testTemplate(c echo.Context) error {
	tid, botID, key, err := templatePath(c)
	if err != nil {
		return err
	}
	ed, err := editor(c)
	if err != nil {
		return err
	}
	var req testTemplateRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	// Only a test send that passed every check is counted (allow runs just before Send).
	res, err := s.d.Telegram.TestTemplate(c.Request().Context(), tid, botID, key, req.ChatID, func() error {
		return s.allowTemplateTest(c, ed)
	})
	if err != nil {
		return err
	}
	out := res.Outcome
	switch out.Status {
	case telegram.OutcomeSent:
		return c.JSON(http.StatusOK, templateTestResponse{Status: string(out.Status), MessageID: out.MessageID, ChatID: out.ChatID,
			Text: res.Text, ParseMode: res.ParseMode})
	case telegram.OutcomeWait, telegram.OutcomeDeferred:
		wait := out.RetryAfter
		if out.Status == telegram.OutcomeDeferred {
			wait = time.Until(out.Until)
		}
		c.Response().Header().Set("Retry-After", strconv.Itoa(ceilSeconds(wait, 1)))
		return apperr.New(apperr.KindRateLimited, "send_deferred", "the message was not sent now: "+out.Err).
			WithDetails(map[string]any{"status": string(out.Status), "description": out.Err})
	case telegram.OutcomeFailed, telegram.OutcomeBlocked:
		return apperr.Invalid("test_send_failed", "Telegram refused the test message: "+out.Err).
			WithDetails(map[string]any{"field": "chat_id", "status": string(out.Status), "description": out.Err})
	default: // retryable: Telegram could not be reached or answered 5xx
		return telegram.ErrTelegramDown.Wrap(errors.New(out.Err))
	}
}

// allowTemplateTest takes one test send of key ed from its Redis bucket
// (TemplateTestSendLimit per minute). Redis unreachable: 503.
func (s *server) allowTemplateTest(c echo.Context, ed tenant.Key) error {
	if s.d.Redis == nil {
		return apperr.ErrUnavailable
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), time.Second)
	defer cancel()
	res, err := redis_rate.NewLimiter(s.d.Redis).Allow(ctx, "template-test:{"+ed.ID.String()+"}", redis_rate.PerMinute(TemplateTestSendLimit))
	if err != nil {
		return apperr.ErrUnavailable.Wrap(err)
	}
	if res.Allowed == 0 { // RetryAfter is -1 ns when allowed (TECH-NOTES §5)
		c.Response().Header().Set("Retry-After", strconv.Itoa(ceilSeconds(res.RetryAfter, 1)))
		return errTemplateTestRateLimited
	}
	return nil
}
