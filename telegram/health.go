package telegram

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"github.com/botfleet/botfleet/internal/apperr"
)

// Health verdicts, from best to worst.
const (
	HealthHealthy  = "healthy"  // every check passed
	HealthDegraded = "degraded" // the bot works, but something needs attention
	HealthFailing  = "failing"  // the bot cannot receive or send: the token, the webhook or Telegram
)

// Thresholds of the health checks.
const (
	// HealthErrorWindow is how recent a webhook delivery error (getWebhookInfo's
	// last_error_date) must be to make a bot degraded.
	HealthErrorWindow = time.Hour
	// HealthPendingHigh is the pending_update_count from which a bot is degraded: Telegram
	// holds that many updates it could not deliver yet.
	HealthPendingHigh = 100
	// HealthDailyNear is the share of daily_limit sent today from which a bot is degraded.
	HealthDailyNear = 0.9
	// healthConcurrency is how many bots the periodic check looks at at once.
	healthConcurrency = 4
	// healthPage is how many bots the periodic check reads per query.
	healthPage = 200
)

// RequiredCommands are the commands a bot's default command list must contain: the ones the
// platform answers itself (HandleUpdate: /start, /help, /stop). A list without one of them is
// allowed (PUT .../commands/), but the health check reports it as commands_missing
// (degraded): users find /stop, the opt-out, through the menu.
var RequiredCommands = []string{"start", "help", "stop"}

// ErrSyncInProgress is returned by SyncBot while another sync of the same bot runs (409).
var ErrSyncInProgress = apperr.Conflict("sync_in_progress", "the bot is being synced already; try again in a few seconds")

// Reason codes of Health.Reasons (stable, snake_case).
const (
	ReasonTokenRejected       = "token_rejected"       // failing: getMe answered 401/404
	ReasonTelegramUnreachable = "telegram_unreachable" // failing: no answer from Telegram
	ReasonTelegramError       = "telegram_error"       // failing: getMe answered another error
	ReasonTokenBotMismatch    = "token_bot_mismatch"   //nolint:gosec // G101: a reason code, not a credential; failing: the token belongs to another bot
	ReasonWebhookNotSet       = "webhook_not_set"      // failing: getWebhookInfo url is empty
	ReasonWebhookURLMismatch  = "webhook_url_mismatch" // failing: url is not the expected one
	ReasonWebhookInfoFailed   = "webhook_info_failed"  // failing: getWebhookInfo failed
	ReasonDeliveryErrors      = "webhook_delivery_errors"
	ReasonPendingUpdatesHigh  = "pending_updates_high"
	ReasonAllowedUpdates      = "allowed_updates_mismatch"
	ReasonCommandsMissing     = "commands_missing"
	ReasonCommandsOutOfSync   = "commands_out_of_sync"
	ReasonCommandsFailed      = "commands_unavailable"
	ReasonDailyLimitNear      = "daily_limit_near"
	ReasonDailyLimitReached   = "daily_limit_reached"
)

// HealthReason is one finding of a health check: a stable Code (the Reason* constants),
// its Severity (HealthDegraded or HealthFailing) and a Message for people (Telegram's
// descriptions included; never a token or a secret).
type HealthReason struct {
	Code     string
	Severity string
	Message  string
}

// storedReason is a HealthReason as stored in bot_health.reasons.
type storedReason struct {
	Code     string `json:"code"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// BotIdentity is what getMe says about the bot (core.telegram.org/bots/api#user).
type BotIdentity struct {
	ID                      int64
	Username                string
	FirstName               string
	CanJoinGroups           bool
	CanReadAllGroupMessages bool
	SupportsInlineQueries   bool
}

// WebhookHealth is what getWebhookInfo says (core.telegram.org/bots/api#webhookinfo), with
// the URL the platform expects. LastErrorDate is zero when Telegram reports no error.
type WebhookHealth struct {
	URL                string
	ExpectedURL        string
	URLMatches         bool
	PendingUpdateCount int64
	LastErrorDate      time.Time
	LastErrorMessage   string
	MaxConnections     int64
	AllowedUpdates     []string
	IPAddress          string
}

// CommandsHealth compares the default command list at Telegram (getMyCommands) with
// RequiredCommands and with the list the platform set (Expected: the stored list, or
// BotCommands).
type CommandsHealth struct {
	Commands []Command
	Count    int
	Required []string
	Missing  []string
	InSync   bool
}

// DailyHealth is today's (UTC) sends against the bot's daily_limit (0 = no limit; Percent is
// then 0).
type DailyHealth struct {
	Sent    int
	Limit   int
	Percent float64
}

// Health is the result of one health check of a bot. Identity, Webhook and Commands are nil
// when their Bot API call failed or was not made (a rejected token stops the check after
// getMe). Verdict is the worst Severity of Reasons, HealthHealthy when there are none.
// WebhookRepaired is true when the check (SyncBot, the periodic task) registered the webhook
// again.
type Health struct {
	BotID           uuid.UUID
	Verdict         string
	Reasons         []HealthReason
	CheckedAt       time.Time
	Identity        *BotIdentity
	Webhook         *WebhookHealth
	Commands        *CommandsHealth
	Daily           DailyHealth
	WebhookRepaired bool
}

// HealthSummary is the last recorded health of a bot (GET /telegram/v1/bots/{id}/).
type HealthSummary struct {
	Verdict           string
	Reasons           []HealthReason
	CheckedAt         time.Time
	WebhookRepairedAt time.Time
}

// botHealthRow is a row of bot_health.
type botHealthRow struct {
	bun.BaseModel `bun:"table:bot_health,alias:bh"`

	BotID             uuid.UUID      `bun:",pk,type:uuid"`
	TenantID          uuid.UUID      `bun:",type:uuid,notnull"`
	Verdict           string         `bun:",notnull"`
	Reasons           []storedReason `bun:",type:jsonb,notnull"`
	CheckedAt         time.Time      `bun:",notnull"`
	WebhookRepairedAt time.Time      `bun:",nullzero"`
}

func (h *Health) add(severity, code, format string, args ...any) {
	h.Reasons = append(h.Reasons, HealthReason{Code: code, Severity: severity, Message: fmt.Sprintf(format, args...)})
	if severity == HealthFailing || h.Verdict == HealthHealthy {
		h.Verdict = severity
	}
}

// urlDrifted reports whether h found the webhook missing or at another URL.
func (h Health) urlDrifted() bool {
	return slices.ContainsFunc(h.Reasons, func(r HealthReason) bool {
		return r.Code == ReasonWebhookNotSet || r.Code == ReasonWebhookURLMismatch
	})
}

// CheckHealth checks the tenant's bot botID against Telegram now, records the result as the
// bot's last health and returns it (GET /telegram/v1/bots/{id}/health/).
//
// The checks (each finding a HealthReason):
//   - getMe: 401/404 token_rejected, another error telegram_error, no answer
//     telegram_unreachable, another bot's id token_bot_mismatch: failing, and the check stops
//     there (nothing else can be asked);
//   - getWebhookInfo: no url webhook_not_set, another url than WebhookURL(id)
//     webhook_url_mismatch (failing); a last_error_date within HealthErrorWindow
//     webhook_delivery_errors, pending_update_count >= HealthPendingHigh
//     pending_updates_high, allowed_updates lacking one of AllowedUpdates
//     allowed_updates_mismatch (degraded);
//   - getMyCommands (default list): one of RequiredCommands absent commands_missing, a list
//     other than the one the platform set commands_out_of_sync (degraded);
//   - today's sends (Limiter.DailyCount) against daily_limit: >= HealthDailyNear
//     daily_limit_near, all of it daily_limit_reached (degraded).
//
// Telegram being down is a finding, not an error: the verdict is failing and the answer is
// still a Health. Errors: ErrBotNotFound (404), apperr.ErrUnavailable (503: PostgreSQL).
func (s *Service) CheckHealth(ctx context.Context, tenantID, botID uuid.UUID) (Health, error) {
	b, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return Health{}, err
	}
	h := s.checkHealth(ctx, b)
	if err := ctx.Err(); err != nil {
		return Health{}, err // the client left: the failed calls say nothing about the bot
	}
	if err := s.recordHealth(context.WithoutCancel(ctx), b, h); err != nil {
		return Health{}, err
	}
	return h, nil
}

// SyncBot registers the webhook of the tenant's bot botID again (setWebhook with
// WebhookURL(id), a new secret_token, AllowedUpdates and max_connections 40, pending updates
// kept; the bot's webhook_status becomes active, or failed with Telegram's description), sets
// every stored command list again (BotCommands when the tenant set none), then checks and
// records the bot's health and returns it with WebhookRepaired set (POST .../sync/).
//
// A failure of a step is not an error: it shows in the returned health (a setWebhook
// failure leaves the webhook as it was at Telegram and in the bot's row). Errors:
// ErrBotNotFound (404), ErrSyncInProgress (409), apperr.ErrUnavailable (503).
func (s *Service) SyncBot(ctx context.Context, tenantID, botID uuid.UUID) (Health, error) {
	b, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return Health{}, err
	}
	ctx = context.WithoutCancel(ctx) // Telegram is changed from here on: finish
	unlock, ok, err := s.lockSync(ctx, b.ID)
	if err != nil {
		return Health{}, err
	}
	if !ok {
		return Health{}, ErrSyncInProgress
	}
	defer unlock()
	log := s.log.With("bot_app_id", b.ID.String())
	repairErr := s.registerWebhook(ctx, b)
	if repairErr != nil && !isTelegramFailure(repairErr) {
		return Health{}, repairErr
	}
	if api, err := s.apiBotFor(b); err == nil {
		lists, err := s.expectedCommands(ctx, b)
		if err != nil {
			return Health{}, err
		}
		for _, l := range lists {
			if err := applyCommands(ctx, api, l.LanguageCode, l.Commands); err != nil {
				log.WarnContext(ctx, "telegram: sync: setMyCommands failed", "language_code", l.LanguageCode, "error", safeTelegramError(err))
			}
		}
	}
	b, err = botByID(ctx, s.db, b.ID, false)
	if err != nil {
		return Health{}, err
	}
	h := s.checkHealth(ctx, b)
	h.WebhookRepaired = repairErr == nil
	if err := s.recordHealth(ctx, b, h); err != nil {
		return Health{}, err
	}
	log.InfoContext(ctx, "telegram: bot synced", "verdict", h.Verdict, "webhook_registered", h.WebhookRepaired)
	return h, nil
}

// LastHealth returns the last recorded health of the tenant's bots botIDs (bots never
// checked are absent), in one query. Errors: apperr.ErrUnavailable (503).
func (s *Service) LastHealth(ctx context.Context, tenantID uuid.UUID, botIDs ...uuid.UUID) (map[uuid.UUID]HealthSummary, error) {
	out := make(map[uuid.UUID]HealthSummary, len(botIDs))
	if len(botIDs) == 0 {
		return out, nil
	}
	var rows []botHealthRow
	err := s.db.NewSelect().Model(&rows).Where("bh.tenant_id = ?", tenantID).Where("bh.bot_id IN (?)", bun.List(botIDs)).Scan(ctx)
	if err != nil {
		return nil, apperr.Classify(fmt.Errorf("last health: %w", err))
	}
	for _, r := range rows {
		reasons := make([]HealthReason, len(r.Reasons))
		for i, x := range r.Reasons {
			reasons[i] = HealthReason(x)
		}
		out[r.BotID] = HealthSummary{Verdict: r.Verdict, Reasons: reasons, CheckedAt: r.CheckedAt, WebhookRepairedAt: r.WebhookRepairedAt}
	}
	return out, nil
}

// isTelegramFailure reports whether err is a Bot API failure (502 or a rejected token)
// rather than a storage one.
func isTelegramFailure(err error) bool {
	return errors.Is(err, ErrTelegramDown) || errors.Is(err, ErrTelegramError) || errors.Is(err, ErrInvalidBotToken)
}

// checkHealth runs the checks of CheckHealth on b at s.now() (Deps.Now: the day of the daily
// count, the age of the last delivery error, CheckedAt); it records nothing.
func (s *Service) checkHealth(ctx context.Context, b Bot) Health {
	now := s.now()
	h := Health{BotID: b.ID, Verdict: HealthHealthy, CheckedAt: now.UTC(), Reasons: []HealthReason{}}
	h.Daily = s.dailyHealth(ctx, b, now, &h)

	api, err := s.apiBotFor(b)
	if err != nil {
		h.add(HealthFailing, ReasonTokenRejected, "the stored token cannot be decrypted with the configured ENCRYPTION_KEY(S)")
		return h
	}
	me, err := api.GetMeWithContext(ctx, nil)
	if err != nil {
		var te *gotgbot.TelegramError
		switch {
		case errors.As(err, &te) && (te.Code == 401 || te.Code == 404):
			h.add(HealthFailing, ReasonTokenRejected, "getMe: %s (the token was revoked or replaced in @BotFather)", safeTelegramError(err))
		case errors.As(err, &te):
			h.add(HealthFailing, ReasonTelegramError, "getMe: %s", safeTelegramError(err))
		default:
			h.add(HealthFailing, ReasonTelegramUnreachable, "getMe: %s", safeTelegramError(err))
		}
		return h
	}
	h.Identity = &BotIdentity{ID: me.Id, Username: me.Username, FirstName: me.FirstName, CanJoinGroups: me.CanJoinGroups,
		CanReadAllGroupMessages: me.CanReadAllGroupMessages, SupportsInlineQueries: me.SupportsInlineQueries}
	if me.Id != b.TelegramBotID {
		h.add(HealthFailing, ReasonTokenBotMismatch, "the token belongs to bot %d, not to the registered bot %d", me.Id, b.TelegramBotID)
		return h
	}

	if wi, err := api.GetWebhookInfoWithContext(ctx, nil); err != nil {
		h.add(HealthFailing, ReasonWebhookInfoFailed, "getWebhookInfo: %s", safeTelegramError(err))
	} else {
		h.Webhook = s.webhookHealth(b, wi, now, &h)
	}

	if cmds, err := api.GetMyCommandsWithContext(ctx, nil); err != nil {
		h.add(HealthDegraded, ReasonCommandsFailed, "getMyCommands: %s", safeTelegramError(err))
	} else {
		h.Commands = s.commandsHealth(ctx, b, fromGotgbotCommands(cmds), &h)
	}
	return h
}

func (s *Service) webhookHealth(b Bot, wi *gotgbot.WebhookInfo, now time.Time, h *Health) *WebhookHealth {
	w := &WebhookHealth{
		URL: wi.Url, ExpectedURL: s.WebhookURL(b.ID), PendingUpdateCount: wi.PendingUpdateCount,
		LastErrorMessage: wi.LastErrorMessage, MaxConnections: wi.MaxConnections,
		AllowedUpdates: wi.AllowedUpdates, IPAddress: wi.IpAddress,
	}
	if w.AllowedUpdates == nil {
		w.AllowedUpdates = []string{}
	}
	w.URLMatches = w.URL == w.ExpectedURL
	switch {
	case w.URL == "":
		h.add(HealthFailing, ReasonWebhookNotSet, "no webhook is set at Telegram: updates are not delivered; sync registers it")
	case !w.URLMatches:
		h.add(HealthFailing, ReasonWebhookURLMismatch, "the webhook points elsewhere (someone called setWebhook by hand?): updates do not reach the platform; sync registers it again")
	}
	if wi.LastErrorDate > 0 {
		w.LastErrorDate = time.Unix(wi.LastErrorDate, 0).UTC()
		if now.Sub(w.LastErrorDate) < HealthErrorWindow {
			h.add(HealthDegraded, ReasonDeliveryErrors, "Telegram failed to deliver an update %s ago: %s",
				now.Sub(w.LastErrorDate).Truncate(time.Second), wi.LastErrorMessage)
		}
	}
	if wi.PendingUpdateCount >= HealthPendingHigh {
		h.add(HealthDegraded, ReasonPendingUpdatesHigh, "%d updates wait at Telegram for delivery", wi.PendingUpdateCount)
	}
	if len(wi.AllowedUpdates) > 0 {
		var missing []string
		for _, u := range AllowedUpdates {
			if !slices.Contains(wi.AllowedUpdates, u) {
				missing = append(missing, u)
			}
		}
		if len(missing) > 0 {
			h.add(HealthDegraded, ReasonAllowedUpdates, "allowed_updates lacks %s: those updates are not delivered", strings.Join(missing, ", "))
		}
	}
	return w
}

func (s *Service) commandsHealth(ctx context.Context, b Bot, got []Command, h *Health) *CommandsHealth {
	c := &CommandsHealth{Commands: got, Count: len(got), Required: RequiredCommands, Missing: []string{}, InSync: true}
	for _, r := range RequiredCommands {
		if !slices.ContainsFunc(got, func(x Command) bool { return x.Command == r }) {
			c.Missing = append(c.Missing, r)
		}
	}
	if len(c.Missing) > 0 {
		h.add(HealthDegraded, ReasonCommandsMissing, "the command menu lacks /%s, which the bot answers", strings.Join(c.Missing, ", /"))
	}
	if lists, err := s.expectedCommands(ctx, b); err == nil && !slices.Equal(lists[0].Commands, got) {
		c.InSync = false
		h.add(HealthDegraded, ReasonCommandsOutOfSync, "the default command list at Telegram differs from the one set through the platform; sync sets it again")
	}
	return c
}

func (s *Service) dailyHealth(ctx context.Context, b Bot, now time.Time, h *Health) DailyHealth {
	d := DailyHealth{Limit: b.DailyLimit}
	n, err := s.limits.DailyCount(ctx, b.ID, now)
	if err != nil {
		s.log.WarnContext(ctx, "telegram: health: daily count", "bot_app_id", b.ID.String(), "error", err)
		return d
	}
	d.Sent = n
	if d.Limit > 0 {
		d.Percent = float64(int(float64(d.Sent)*1000/float64(d.Limit))) / 10
		switch {
		case d.Sent >= d.Limit:
			h.add(HealthDegraded, ReasonDailyLimitReached, "daily_limit reached: %d of %d sent today (UTC); further sends wait for midnight UTC", d.Sent, d.Limit)
		case float64(d.Sent) >= HealthDailyNear*float64(d.Limit):
			h.add(HealthDegraded, ReasonDailyLimitNear, "%d of daily_limit %d sent today (UTC)", d.Sent, d.Limit)
		}
	}
	return d
}

// recordHealth stores h as bot b's last health.
func (s *Service) recordHealth(ctx context.Context, b Bot, h Health) error {
	row := botHealthRow{BotID: b.ID, TenantID: b.TenantID, Verdict: h.Verdict, Reasons: make([]storedReason, len(h.Reasons)), CheckedAt: h.CheckedAt}
	for i, r := range h.Reasons {
		row.Reasons[i] = storedReason(r)
	}
	q := s.db.NewInsert().Model(&row).On("CONFLICT (bot_id) DO UPDATE").
		Set("verdict = EXCLUDED.verdict").Set("reasons = EXCLUDED.reasons").Set("checked_at = EXCLUDED.checked_at")
	if h.WebhookRepaired {
		row.WebhookRepairedAt = h.CheckedAt
		q = q.Set("webhook_repaired_at = EXCLUDED.webhook_repaired_at")
	}
	if _, err := q.Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("record health: %w", err))
	}
	return nil
}

// registerWebhook registers b's webhook again with a new secret (RegisterWebhook: the next
// secret is accepted before setWebhook, so no delivery is refused during the switch; a
// refusal is recorded in webhook_status/webhook_error).
func (s *Service) registerWebhook(ctx context.Context, b Bot) error {
	return s.RegisterWebhook(ctx, b)
}

// lockSync takes the per-bot sync lock in Redis (SET NX, expiring after twice the Bot API
// timeout plus 5 s, so that a dead holder frees it), so that two syncs (the API and the
// periodic task, or two processes) never register two different secrets at once. ok is
// false when another holder has it.
func (s *Service) lockSync(ctx context.Context, botID uuid.UUID) (unlock func(), ok bool, err error) {
	key := "tg:sync:" + botID.String()
	val := uuid.NewString()
	ok, err = s.rdb.SetNX(ctx, key, val, 2*s.cfg.RequestTimeout+5*time.Second).Result()
	if err != nil {
		return nil, false, apperr.Classify(fmt.Errorf("sync lock: %w", err))
	}
	if !ok {
		return nil, false, nil
	}
	return func() { _ = syncUnlockScript.Run(context.WithoutCancel(ctx), s.rdb, []string{key}, val).Err() }, true, nil
}

// syncUnlockScript deletes KEYS[1] only when it still holds ARGV[1] (the holder's value).
var syncUnlockScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)

// TypeHealthCheck is the periodic task that checks every active bot (HandleHealthCheck).
const TypeHealthCheck = "telegram:health-check"

// healthCheckTimeout bounds one run of the periodic health check; bots not reached by then
// are checked by the next run.
const healthCheckTimeout = 20 * time.Minute

// NewHealthCheckTask returns the periodic health check task (queue default, no retry: the
// next run comes soon). It is Unique for healthCheckTimeout, so that runs never overlap when
// one takes longer than BOT_HEALTH_INTERVAL (each bot takes up to three Bot API calls, six
// when its webhook is repaired; the scheduler's enqueue is then refused as a duplicate).
func NewHealthCheckTask() *asynq.Task {
	return asynq.NewTask(TypeHealthCheck, nil, asynq.Queue(QueueDefault), asynq.MaxRetry(0),
		asynq.Timeout(healthCheckTimeout), asynq.Unique(healthCheckTimeout))
}

// HandleHealthCheck runs CheckAllBots (task TypeHealthCheck, registered on a schedule by the
// worker every BOT_HEALTH_INTERVAL).
func (s *Service) HandleHealthCheck(ctx context.Context, _ *asynq.Task) error {
	checked, repaired, err := s.CheckAllBots(ctx)
	s.log.InfoContext(ctx, "telegram: health check", "bots", checked, "webhooks_repaired", repaired)
	return err
}

// CheckAllBots checks every active bot (status active, deleted_at unset), page by page (healthPage per
// query) with healthConcurrency bots at a time, and records each one's health. A bot whose
// webhook drifted (webhook_not_set, webhook_url_mismatch: someone called setWebhook or
// deleteWebhook by hand, or PUBLIC_BASE_URL changed) gets its webhook registered again
// (registerWebhook) and is checked once more; a bot being synced at that moment is left to
// its sync. checked counts the bots checked, repaired the webhooks registered again.
// Errors: PostgreSQL failures (the counts so far are returned with it).
// Disabled and invalid_token bots are left alone (POST .../validate and .../sync still
// check them on demand).
func (s *Service) CheckAllBots(ctx context.Context) (checked, repaired int, err error) {
	after := uuid.Nil
	for {
		var bots []Bot
		err := s.db.NewSelect().Model(&bots).Where("b.deleted_at IS NULL").Where("b.status = ?", BotActive).Where("b.id > ?", after).
			OrderExpr("b.id").Limit(healthPage).Scan(ctx)
		if err != nil {
			return checked, repaired, apperr.Classify(fmt.Errorf("health check: list bots: %w", err))
		}
		if len(bots) == 0 {
			return checked, repaired, nil
		}
		after = bots[len(bots)-1].ID
		results := make([]bool, len(bots))
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(healthConcurrency)
		for i, b := range bots {
			g.Go(func() error {
				r, err := s.checkOne(gctx, b)
				results[i] = r
				return err
			})
		}
		err = g.Wait()
		checked += len(bots)
		for _, r := range results {
			if r {
				repaired++
			}
		}
		if err != nil {
			return checked, repaired, err
		}
		if len(bots) < healthPage {
			return checked, repaired, nil
		}
	}
}

// checkOne checks bot b, repairs a drifted webhook and records the health.
func (s *Service) checkOne(ctx context.Context, b Bot) (repaired bool, err error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	h := s.checkHealth(ctx, b)
	if err := ctx.Err(); err != nil {
		return false, err // the run ended (timeout, shutdown): record nothing false
	}
	if h.urlDrifted() {
		unlock, ok, err := s.lockSync(ctx, b.ID)
		if err != nil {
			return false, err
		}
		if ok {
			rerr := s.registerWebhook(ctx, b)
			unlock()
			switch {
			case rerr == nil:
				s.log.InfoContext(ctx, "telegram: webhook drifted; registered again", "bot_app_id", b.ID.String(),
					"found_url_empty", h.Webhook != nil && h.Webhook.URL == "")
				if fresh, err := botByID(ctx, s.db, b.ID, false); err == nil {
					b = fresh
				}
				h = s.checkHealth(ctx, b)
				h.WebhookRepaired, repaired = true, true
			case !isTelegramFailure(rerr):
				return false, rerr
			default:
				s.log.WarnContext(ctx, "telegram: webhook drifted; registering it again failed", "bot_app_id", b.ID.String(), "error", rerr)
			}
		}
	}
	if err := s.recordHealth(ctx, b, h); err != nil {
		return repaired, err
	}
	return repaired, nil
}
