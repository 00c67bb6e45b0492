package telegram

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"regexp"
	"strings"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
)

// NewBot is the input of RegisterBot.
//
// Name is the tenant's label for the bot (validate.Name: 1-200 characters after trimming,
// no control characters).
// Token is the token BotFather issued ("<bot id>:<secret>"); it is sealed before it is
// stored and never returned. DailyLimit caps sends per UTC day (0 = no cap, never negative).
type NewBot struct {
	Name       string
	Token      string
	DailyLimit int
}

// UpdateBot holds the optional changes of UpdateBot (nil = unchanged). The rules of Name
// and DailyLimit are those of NewBot.
type UpdateBot struct {
	Name       *string
	DailyLimit *int
	// Status is BotActive or BotDisabled (field "status"; invalid_token is set by Telegram's
	// answers only).
	Status *string
	// Token is a new token from @BotFather for the same Telegram bot: it rotates the token
	// (see UpdateBot). Same shape rule as NewBot.Token.
	Token *string
	// InboxMode is InboxAll, InboxKeywords or InboxOff (field "inbox_mode"; inbox.go).
	InboxMode *string
	// InboxKeywords replaces the bot's keyword list (field "inbox_keywords";
	// ValidateInboxKeywords).
	InboxKeywords *[]string
	// Editor is the name of the API key making the change, stored as updated_by (and as
	// token_rotated_by for a rotation) when something changes; "" leaves them.
	Editor string
}

// BotFilter selects a page of bots: Cursor is a next_cursor from a previous page ("" = first
// page); Limit is 1-200 (0 = page.DefaultLimit).
type BotFilter struct {
	Cursor string
	Limit  int
}

// BotCommands are the commands registered with setMyCommands for every bot
// (core.telegram.org/bots/api#setmycommands) and answered by HandleUpdate.
var BotCommands = []gotgbot.BotCommand{
	{Command: "start", Description: "Start the bot"},
	{Command: "help", Description: "Show help"},
	{Command: "stop", Description: "Stop receiving messages"},
}

// WebhookPath is the path of a bot's webhook under Config.PublicBaseURL; the bot's id
// follows it, then a trailing slash.
const WebhookPath = "/telegram/v1/webhooks/"

// tokenRe is the shape of a bot token: the bot's numeric id, a colon and the secret part
// (core.telegram.org/bots/api#authorizing-your-bot).
var tokenRe = regexp.MustCompile(`^\d+:[A-Za-z0-9_-]{20,}$`)

// WebhookURL returns the URL Telegram calls for bot id: PublicBaseURL (without trailing
// slashes) + "/telegram/v1/webhooks/" + id + "/".
func (s *Service) WebhookURL(id uuid.UUID) string {
	return strings.TrimRight(s.cfg.PublicBaseURL, "/") + WebhookPath + id.String() + "/"
}

// validateName applies validate.Name to a bot name (field "name").
func validateName(name string) (string, error) {
	return validate.Name("name", name, validate.MaxNameLen)
}

// validateDailyLimit checks 0 (no limit) <= n <= 2^31-1 (field "daily_limit").
func validateDailyLimit(n int) error {
	return validate.IntRange("daily_limit", int64(n), 0, math.MaxInt32)
}

// maxTokenLen bounds a bot token before its shape is checked (tokens are about 46 characters).
const maxTokenLen = 200

// validateToken checks the shape of a bot token (field "bot_token"): "<digits>:<20+ characters
// of [A-Za-z0-9_-]>", as BotFather issues them. The message never quotes the token.
func validateToken(raw string) (string, error) {
	token, err := validate.Token("bot_token", raw, maxTokenLen)
	if err != nil {
		return "", err
	}
	if !tokenRe.MatchString(token) {
		return "", validate.Field("bot_token", "bot_token must look like 123456789:AA... as issued by @BotFather")
	}
	return token, nil
}

// classifyTelegram turns an error of a Bot API call made on behalf of an API client into a
// domain error: Telegram's 401/404 (unknown or revoked token) is ErrInvalidBotToken (422),
// another Telegram error is ErrTelegramError (502), a network or decoding failure is
// ErrTelegramDown (502). gotgbot's messages carry no token (its url.Error is sanitised).
func classifyTelegram(err error) error {
	var te *gotgbot.TelegramError
	if errors.As(err, &te) {
		if te.Code == 401 || te.Code == 404 {
			return ErrInvalidBotToken.Wrap(err)
		}
		return ErrTelegramError.Wrap(err)
	}
	return ErrTelegramDown.Wrap(err)
}

// safeTelegramError is a text describing a failed Bot API call that is safe to store and
// show to the tenant: Telegram's description, never the request (which holds the token
// in its URL and the secret_token in its parameters).
func safeTelegramError(err error) string {
	var te *gotgbot.TelegramError
	if errors.As(err, &te) {
		return fmt.Sprintf("Telegram answered %d: %s", te.Code, te.Description)
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "Telegram did not answer in time"
	}
	return "Telegram could not be reached"
}

// RegisterBot registers a tenant's Telegram bot and returns it (201 in the API).
//
// Steps: validate nb (ErrInvalidField 422 invalid_field for name, daily_limit and a bot_token
// that is not "<digits>:<20+ chars of [A-Za-z0-9_-]>"); getMe with the token
// (core.telegram.org/bots/api#getme: Telegram's 401/404 → ErrInvalidBotToken, another
// Telegram error → ErrTelegramError 502, no answer → ErrTelegramDown 502); refuse a Telegram
// bot that is already active on the platform, for any tenant (ErrBotExists 409); store the
// bot with its token sealed and the SHA-256 of a fresh webhook secret; then setWebhook
// (core.telegram.org/bots/api#setwebhook: url = WebhookURL(id), secret_token, AllowedUpdates,
// max_connections 40, pending updates kept) and setMyCommands (BotCommands).
//
// A setWebhook failure does not undo the registration: the bot is kept and returned with
// WebhookStatus "failed" and a safe WebhookError (no token, no secret), so that the tenant
// sees what Telegram answered; deleting the bot and registering it again retries. A
// setMyCommands failure is only logged (commands are cosmetic). Once the row is stored the
// remaining steps run even if ctx is cancelled (each Bot API call is bounded by
// Config.RequestTimeout). Storage errors: apperr.ErrUnavailable (503).
func (s *Service) RegisterBot(ctx context.Context, tenantID uuid.UUID, nb NewBot) (Bot, error) {
	name, err := validateName(nb.Name)
	if err != nil {
		return Bot{}, err
	}
	if err := validateDailyLimit(nb.DailyLimit); err != nil {
		return Bot{}, err
	}
	token, err := validateToken(nb.Token)
	if err != nil {
		return Bot{}, err
	}
	api, err := s.apiBot(token)
	if err != nil {
		return Bot{}, validate.Field("bot_token", "bot_token must look like 123456789:AA... as issued by @BotFather")
	}
	me, err := api.GetMeWithContext(ctx, nil)
	if err != nil {
		return Bot{}, classifyTelegram(err)
	}

	exists, err := s.db.NewSelect().Model((*Bot)(nil)).
		Where("telegram_bot_id = ?", me.Id).Where("deleted_at IS NULL").Exists(ctx)
	if err != nil {
		return Bot{}, apperr.Classify(fmt.Errorf("check bot: %w", err))
	}
	if exists {
		return Bot{}, ErrBotExists
	}

	// The id is chosen here because it is the sealed token's associated data.
	id := uuid.New()
	sealed, err := s.sealToken(id, token)
	if err != nil {
		return Bot{}, fmt.Errorf("seal token: %w", err)
	}
	secret, secretHash, err := newWebhookSecret()
	if err != nil {
		return Bot{}, fmt.Errorf("webhook secret: %w", err)
	}
	b := Bot{
		ID: id, TenantID: tenantID, Name: name, TelegramBotID: me.Id, Username: me.Username,
		TokenSealed: sealed, WebhookSecretHash: secretHash, WebhookStatus: WebhookPending,
		DailyLimit: nb.DailyLimit,
	}
	b.WebhookURL = s.WebhookURL(b.ID)
	if _, err := s.db.NewInsert().Model(&b).Returning("*").Exec(ctx); err != nil {
		if database.IsUniqueViolation(err, "bots_telegram_bot_id_active_uq") {
			return Bot{}, ErrBotExists
		}
		return Bot{}, apperr.Classify(fmt.Errorf("insert bot: %w", err))
	}

	// The bot is stored: finish the registration even if the client goes away.
	ctx = context.WithoutCancel(ctx)
	log := s.log.With("bot_app_id", b.ID.String(), "telegram_bot_id", b.TelegramBotID)
	status, whErr := WebhookActive, ""
	if _, err := api.SetWebhookWithContext(ctx, b.WebhookURL, &gotgbot.SetWebhookOpts{
		SecretToken: secret, AllowedUpdates: AllowedUpdates, MaxConnections: 40,
	}); err != nil {
		status, whErr = WebhookFailed, "setWebhook: "+safeTelegramError(err)
		log.WarnContext(ctx, "telegram: setWebhook failed", "error", whErr)
	} else if _, err := api.SetMyCommandsWithContext(ctx, BotCommands, nil); err != nil {
		log.WarnContext(ctx, "telegram: setMyCommands failed", "error", safeTelegramError(err))
	}
	_, err = s.db.NewUpdate().Model(&b).
		Set("webhook_status = ?", status).Set("webhook_error = ?", whErr).Set("updated_at = now()").
		WherePK().Returning("*").Exec(ctx)
	if err != nil {
		return Bot{}, apperr.Classify(fmt.Errorf("update webhook status: %w", err))
	}
	s.invalidateBot(ctx, b.ID)
	log.InfoContext(ctx, "telegram: bot registered", "webhook_status", status)
	return b, nil
}

// GetBot returns the tenant's active bot botID. Errors: ErrBotNotFound (404, also for a
// deleted bot or another tenant's), apperr.ErrUnavailable (503).
func (s *Service) GetBot(ctx context.Context, tenantID, botID uuid.UUID) (Bot, error) {
	var b Bot
	err := s.db.NewSelect().Model(&b).
		Where("b.tenant_id = ?", tenantID).Where("b.id = ?", botID).Where("b.deleted_at IS NULL").Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Bot{}, ErrBotNotFound
		}
		return Bot{}, apperr.Classify(fmt.Errorf("get bot: %w", err))
	}
	logging.Add(ctx, slog.String(logging.KeyBotAppID, b.ID.String())) // the request's log lines name the bot
	return b, nil
}

// ListBots returns one page of the tenant's active bots, newest first (created_at, id), and
// the cursor of the next page ("" on the last). Errors: page.ErrBadCursor, page.ErrBadLimit
// (422), apperr.ErrUnavailable (503).
func (s *Service) ListBots(ctx context.Context, tenantID uuid.UUID, f BotFilter) ([]Bot, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	bots := []Bot{}
	q := s.db.NewSelect().Model(&bots).Where("b.tenant_id = ?", tenantID).Where("b.deleted_at IS NULL")
	if err := page.Newest(q, "b", after, limit).Scan(ctx); err != nil {
		return nil, "", apperr.Classify(fmt.Errorf("list bots: %w", err))
	}
	bots, next := page.Trim(bots, limit, func(b Bot) (time.Time, uuid.UUID) { return b.CreatedAt, b.ID })
	return bots, next, nil
}

// UpdateBot changes the name, daily_limit, status, inbox mode and keywords (inbox.go)
// and/or token of the tenant's active bot botID and returns it; nil fields are unchanged.
// Every field is validated before anything happens (ErrInvalidField 422). u.Editor, when
// not "", is stored as updated_by with any change (and token_rotated_by with a rotation).
//
// Status: "disabled" stops the bot's sends (Send and SendBatch return OutcomeWait) and
// leaves its webhook events unprocessed; "active" resumes both. A bot marked invalid_token
// cannot be made active without a new token: ErrBotTokenRevoked (409).
//
// Token rotates the token: getMe with the new token must answer for the bot's
// telegram_bot_id (Telegram's 401/404 → ErrInvalidBotToken 422; another bot →
// ErrTokenBotMismatch 422), then setWebhook with the new token and a new secret_token, then
// one UPDATE stores the sealed token, the secret and the other fields (an invalid_token bot
// becomes active unless Status says otherwise), and every process's bot cache is
// invalidated. A failure at any step leaves the old token and webhook working (see
// lifecycle.go for the secret switch). Errors of a rotation: ErrBotBusy (409, another one
// is under way), ErrTelegramError / ErrTelegramDown (502).
//
// Errors: ErrBotNotFound (404), apperr.ErrUnavailable (503).
func (s *Service) UpdateBot(ctx context.Context, tenantID, botID uuid.UUID, u UpdateBot) (Bot, error) {
	q := s.db.NewUpdate().Model((*Bot)(nil)).Set("updated_at = now()")
	if u.Name != nil {
		name, err := validateName(*u.Name)
		if err != nil {
			return Bot{}, err
		}
		u.Name = &name
		q = q.Set("name = ?", name)
	}
	if u.DailyLimit != nil {
		if err := validateDailyLimit(*u.DailyLimit); err != nil {
			return Bot{}, err
		}
		q = q.Set("daily_limit = ?", *u.DailyLimit)
	}
	if u.Status != nil {
		status, err := validateStatus(*u.Status)
		if err != nil {
			return Bot{}, err
		}
		u.Status = &status
		q = q.Set("status = ?", status)
	}
	if err := u.validateInbox(); err != nil {
		return Bot{}, err
	}
	q = u.applyInbox(q)
	var token string
	if u.Token != nil {
		t, err := validateToken(*u.Token)
		if err != nil {
			return Bot{}, err
		}
		token = t
	}
	if u.Name == nil && u.DailyLimit == nil && u.Status == nil && u.Token == nil && u.InboxMode == nil && u.InboxKeywords == nil {
		return s.GetBot(ctx, tenantID, botID)
	}
	if u.Token != nil || (u.Status != nil && *u.Status == BotActive) {
		cur, err := s.GetBot(ctx, tenantID, botID)
		if err != nil {
			return Bot{}, err
		}
		if u.Token != nil {
			return s.rotateToken(ctx, cur, token, u)
		}
		if cur.Status == BotInvalidToken {
			return Bot{}, ErrBotTokenRevoked
		}
		// The token must not have been found invalid meanwhile.
		q = q.Where("status <> ?", BotInvalidToken)
	}
	var b Bot
	err := q.Where("tenant_id = ?", tenantID).Where("id = ?", botID).Where("deleted_at IS NULL").
		Returning("*").Scan(ctx, &b)
	if err != nil {
		if database.IsNoRows(err) {
			if u.Status != nil && *u.Status == BotActive {
				if _, gerr := s.GetBot(ctx, tenantID, botID); gerr == nil {
					return Bot{}, ErrBotTokenRevoked
				}
			}
			return Bot{}, ErrBotNotFound
		}
		return Bot{}, apperr.Classify(fmt.Errorf("update bot: %w", err))
	}
	s.invalidateBot(ctx, botID)
	if u.Status != nil {
		s.log.InfoContext(ctx, "telegram: bot status set", "bot_app_id", botID.String(), "status", b.Status)
	}
	return b, nil
}

// DeleteBot takes the tenant's bot botID out of service: it calls deleteWebhook
// (core.telegram.org/bots/api#deletewebhook, pending updates kept) and then marks the bot
// deleted (deleted_at, webhook_status "deleted"). A Telegram failure is logged and does not
// prevent the deletion. Afterwards the bot is ErrBotNotFound everywhere, its webhook answers
// 404, and the same Telegram bot may be registered again. Its contacts, messages and events
// are kept. Errors: ErrBotNotFound (404), apperr.ErrUnavailable (503).
func (s *Service) DeleteBot(ctx context.Context, tenantID, botID uuid.UUID) error {
	b, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return err
	}
	log := s.log.With("bot_app_id", b.ID.String(), "telegram_bot_id", b.TelegramBotID)
	if api, err := s.apiBotFor(b); err != nil {
		log.ErrorContext(ctx, "telegram: open bot token", "error", err)
	} else if _, err := api.DeleteWebhookWithContext(context.WithoutCancel(ctx), nil); err != nil {
		log.WarnContext(ctx, "telegram: deleteWebhook failed; deleting the bot anyway", "error", safeTelegramError(err))
	}
	res, err := s.db.NewUpdate().Model((*Bot)(nil)).
		Set("deleted_at = now()").Set("webhook_status = ?", WebhookDeleted).Set("updated_at = now()").
		Where("tenant_id = ?", tenantID).Where("id = ?", botID).Where("deleted_at IS NULL").
		Exec(context.WithoutCancel(ctx))
	if err != nil {
		return apperr.Classify(fmt.Errorf("delete bot: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrBotNotFound // deleted concurrently
	}
	s.invalidateBot(ctx, botID)
	log.InfoContext(ctx, "telegram: bot deleted")
	return nil
}

// BotForTenant returns the tenant's active bot botID or, when botID is nil, the tenant's
// only active bot. Errors: ErrBotNotFound (404) for an unknown, deleted or another tenant's
// bot; ErrBotRequired (422) when botID is nil and the tenant has zero or several bots;
// apperr.ErrUnavailable (503).
func (s *Service) BotForTenant(ctx context.Context, tenantID uuid.UUID, botID *uuid.UUID) (Bot, error) {
	if botID != nil {
		return s.GetBot(ctx, tenantID, *botID)
	}
	var bots []Bot
	err := s.db.NewSelect().Model(&bots).
		Where("b.tenant_id = ?", tenantID).Where("b.deleted_at IS NULL").Limit(2).Scan(ctx)
	if err != nil {
		return Bot{}, apperr.Classify(fmt.Errorf("find bot: %w", err))
	}
	if len(bots) != 1 {
		return Bot{}, ErrBotRequired
	}
	logging.Add(ctx, slog.String(logging.KeyBotAppID, bots[0].ID.String())) // the request's log lines name the bot
	return bots[0], nil
}

// RequireBot returns nil when botID is one of the tenant's bots, deleted ones included (their
// contacts, messages and events are kept and stay listable), and ErrBotNotFound (404)
// otherwise: unknown, or another tenant's, which must answer exactly like an unknown id
// (DESIGN.md Security). List filters naming a bot use it, so that ?bot_app_id= with another
// tenant's bot is a 404 rather than an empty page. Errors: apperr.ErrUnavailable (503).
func (s *Service) RequireBot(ctx context.Context, tenantID, botID uuid.UUID) error {
	ok, err := s.db.NewSelect().Model((*Bot)(nil)).
		Where("b.tenant_id = ?", tenantID).Where("b.id = ?", botID).Exists(ctx)
	if err != nil {
		return apperr.Classify(fmt.Errorf("check bot: %w", err))
	}
	if !ok {
		return ErrBotNotFound
	}
	return nil
}

// BotByID returns the active bot botID whatever its tenant (worker use; never expose it to
// an API client without a tenant check). It reads the process's bot cache (cachedBot): a
// change made through this package (InvalidateBot) is seen at once in this process and
// within milliseconds in others, any change within 1 s while Redis pub/sub is down. The
// returned Bot's byte slices are shared with the cache: do not modify them. Errors:
// ErrBotNotFound, apperr.ErrUnavailable.
func (s *Service) BotByID(ctx context.Context, botID uuid.UUID) (Bot, error) {
	return s.cachedBot(ctx, botID)
}

// botByID loads bot botID on idb; withDeleted also returns a deleted bot.
func botByID(ctx context.Context, idb bun.IDB, botID uuid.UUID, withDeleted bool) (Bot, error) {
	var b Bot
	q := idb.NewSelect().Model(&b).Where("b.id = ?", botID)
	if !withDeleted {
		q = q.Where("b.deleted_at IS NULL")
	}
	if err := q.Scan(ctx); err != nil {
		if database.IsNoRows(err) {
			return Bot{}, ErrBotNotFound
		}
		return Bot{}, apperr.Classify(fmt.Errorf("get bot: %w", err))
	}
	logging.Add(ctx, slog.String(logging.KeyBotAppID, b.ID.String())) // the request's log lines name the bot
	return b, nil
}
