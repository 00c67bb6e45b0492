package telegram

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/validate"
)

// Token and lifecycle of a bot (issue 8): token rotation, token validation, the bot's
// status (active, disabled, invalid_token) and webhook re-registration.
//
// Changing the webhook secret without losing an update. Telegram signs every webhook
// request with the secret_token of the last successful setWebhook. Between the moment
// Telegram accepts a new secret and the moment our row holds it, updates arrive signed with
// the new secret. We therefore store the new secret's hash as the bot's *next* secret
// (webhook_secret_next_hash) before calling setWebhook, and Ingest accepts the current and
// the next secret. Then:
//   - setWebhook succeeds: one UPDATE makes the next secret the current one (with the new
//     token, for a rotation); every process's bot cache is invalidated.
//   - Telegram refuses setWebhook (an answer with an error): Telegram keeps the old webhook
//     and secret, so the next secret is cleared and nothing else changes.
//   - setWebhook gets no answer (timeout, network): Telegram may or may not have applied it,
//     so the next secret stays accepted (it is random, known only to Telegram); the old
//     token and secret keep working; the next rotation or repair replaces it.
//   - the final UPDATE fails: Telegram already uses the new secret, which stays accepted as
//     the next one; the row keeps the old token, which Telegram still honours unless it was
//     revoked in @BotFather. Retrying the request finishes the switch.
// This was chosen over a grace period for the old secret: nothing is ever refused, and no
// timer decides when a secret stops working. One rotation or repair runs per bot at a time
// (a Redis lock; a second one gets ErrBotBusy, 409).

// InactiveBotRetry is the RetryAfter of the OutcomeWait that Send and SendBatch return for a
// bot that is not active (disabled, invalid_token): its messages and broadcast recipients
// are tried again this much later, never dropped.
const InactiveBotRetry = time.Minute

// activeBotEventsSQL restricts a query on webhook_events to the events that may be
// processed: those of bots that are active or deleted (a deleted bot's events are marked
// "bot deleted"). PostgreSQL evaluates the subquery once per query (a hashed subplan over
// bots_not_active_idx, which holds only the bots that are not active).
const activeBotEventsSQL = "bot_id NOT IN (SELECT id FROM bots WHERE status <> 'active' AND deleted_at IS NULL)"

// rekeyLockPrefix + bot_app_id is the Redis key of the lock held by a token rotation or a
// webhook re-registration of one bot.
const rekeyLockPrefix = "botfleet:bots:rekey:"

// inactiveOutcome returns the OutcomeWait of a send through a bot that is not active, and
// ok true when the bot may send ("" counts as active: a Bot built by hand).
func inactiveOutcome(bot Bot, chatID int64) (Outcome, bool) {
	if bot.Status == "" || bot.Status == BotActive {
		return Outcome{}, true
	}
	return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: InactiveBotRetry, BotInactive: true, Err: "bot " + bot.Status + ": nothing is sent until it is active again"}, false
}

// validateStatus checks a status set by the tenant (field "status"): "active" or
// "disabled". invalid_token is set by Telegram's answers only.
func validateStatus(s string) (string, error) {
	return validate.Enum("status", s, BotActive, BotDisabled)
}

// ValidateToken checks a bot token without storing anything: its shape (ErrInvalidField
// 422 for bot_token), then getMe (core.telegram.org/bots/api#getme). It returns the bot's
// identity as Telegram answers it. Errors: ErrInvalidBotToken (422) when Telegram answers
// 401/404, ErrTelegramError / ErrTelegramDown (502).
func (s *Service) ValidateToken(ctx context.Context, raw string) (gotgbot.User, error) {
	token, err := validateToken(raw)
	if err != nil {
		return gotgbot.User{}, err
	}
	api, err := s.apiBot(token)
	if err != nil {
		return gotgbot.User{}, validate.Field("bot_token", "bot_token must look like 123456789:AA... as issued by @BotFather")
	}
	me, err := api.GetMeWithContext(ctx, nil)
	if err != nil {
		return gotgbot.User{}, classifyTelegram(err)
	}
	return *me, nil
}

// BotValidation is the result of ValidateBot.
type BotValidation struct {
	// Bot is the bot after the check (Status changed by it).
	Bot Bot
	// Valid reports whether Telegram accepted the stored token.
	Valid bool
	// Me is getMe's answer when Valid.
	Me gotgbot.User
	// Error is Telegram's answer when not Valid (no token, no secret in it).
	Error string
}

// ValidateBot calls getMe with the stored token of the tenant's bot botID now
// (core.telegram.org/bots/api#getme).
//
// Telegram accepts it: Valid, Me is the bot's identity, and a bot that was invalid_token is
// active again (a disabled one stays disabled); a changed username is stored. Telegram
// answers 401/404 (the token was revoked in @BotFather): not Valid, and the bot is marked
// invalid_token: it sends nothing and its webhook events wait, nothing is dropped, until
// the token is rotated (UpdateBot with Token) or validated again. Both changes apply only
// if the token was not rotated meanwhile. Errors: ErrBotNotFound (404), ErrTelegramError /
// ErrTelegramDown (502: nothing changed), apperr.ErrUnavailable (503).
func (s *Service) ValidateBot(ctx context.Context, tenantID, botID uuid.UUID) (BotValidation, error) {
	b, err := s.GetBot(ctx, tenantID, botID)
	if err != nil {
		return BotValidation{}, err
	}
	api, err := s.apiBotFor(b)
	if err != nil {
		return BotValidation{}, fmt.Errorf("open bot token: %w", err)
	}
	me, getMeErr := api.GetMeWithContext(ctx, nil)
	if getMeErr != nil {
		cerr := classifyTelegram(getMeErr)
		if !errors.Is(cerr, ErrInvalidBotToken) {
			return BotValidation{}, cerr
		}
		nb, err := s.setTokenStatus(context.WithoutCancel(ctx), b, BotInvalidToken, "")
		if err != nil {
			return BotValidation{}, err
		}
		s.log.WarnContext(ctx, "telegram: bot token rejected by Telegram; bot marked invalid_token",
			"bot_app_id", b.ID.String(), "telegram_bot_id", b.TelegramBotID)
		return BotValidation{Bot: nb, Error: safeTelegramError(getMeErr)}, nil
	}
	nb := b
	if b.Status == BotInvalidToken || (me.Username != "" && me.Username != b.Username) {
		if nb, err = s.setTokenStatus(context.WithoutCancel(ctx), b, BotActive, me.Username); err != nil {
			return BotValidation{}, err
		}
	}
	return BotValidation{Bot: nb, Valid: true, Me: *me}, nil
}

// setTokenStatus records the verdict of Telegram on b's token, if b still has that token
// (not rotated meanwhile): to BotInvalidToken marks the bot invalid_token (unless it is
// already); to BotActive makes an invalid_token bot active (other statuses stay) and stores
// username when not "". It returns the bot as stored (b when nothing changed).
func (s *Service) setTokenStatus(ctx context.Context, b Bot, to, username string) (Bot, error) {
	q := s.db.NewUpdate().Model((*Bot)(nil)).Set("updated_at = now()").
		Where("id = ?", b.ID).Where("deleted_at IS NULL").Where("token_sealed = ?", b.TokenSealed)
	if to == BotInvalidToken {
		q = q.Set("status = ?", BotInvalidToken).Where("status <> ?", BotInvalidToken)
	} else {
		q = q.Set("status = CASE WHEN status = ? THEN ? ELSE status END", BotInvalidToken, BotActive)
		if username != "" {
			q = q.Set("username = ?", username)
		}
	}
	var nb Bot
	if err := q.Returning("*").Scan(ctx, &nb); err != nil {
		if database.IsNoRows(err) {
			return b, nil // already so, rotated or deleted meanwhile
		}
		return Bot{}, apperr.Classify(fmt.Errorf("set bot status: %w", err))
	}
	s.invalidateBot(ctx, b.ID)
	return nb, nil
}

// markTokenInvalid marks bot invalid_token after Telegram answered 401 to one of its sends
// (send.go): best effort, logged. A token rotated since the send was made is left alone.
func (s *Service) markTokenInvalid(ctx context.Context, bot Bot, log *slog.Logger) {
	if _, err := s.setTokenStatus(ctx, bot, BotInvalidToken, ""); err != nil {
		log.ErrorContext(ctx, "telegram: mark bot invalid_token failed", "error", err)
		return
	}
	log.WarnContext(ctx, "telegram: Telegram answered 401 to a send; bot marked invalid_token")
}

// RegisterWebhook registers bot's webhook with Telegram again, with its stored token and a
// new secret_token (setWebhook, core.telegram.org/bots/api#setwebhook: url WebhookURL,
// AllowedUpdates, max_connections 40, pending updates kept), without losing an update (see
// the package's lifecycle notes: the new secret is accepted before setWebhook is called).
// On success the bot's webhook_status is "active" and webhook_error is cleared; when
// Telegram refuses, webhook_status is "failed" with Telegram's description in
// webhook_error, and the error is returned. It is the repair of a bot whose setWebhook
// failed or whose webhook drifted. Errors: ErrBotNotFound (deleted), ErrBotBusy (409, a
// rotation or repair of this bot is under way), ErrInvalidBotToken (Telegram answered
// 401/404), ErrTelegramError / ErrTelegramDown (502), apperr.ErrUnavailable (503).
func (s *Service) RegisterWebhook(ctx context.Context, bot Bot) error {
	api, err := s.apiBotFor(bot)
	if err != nil {
		return fmt.Errorf("open bot token: %w", err)
	}
	_, err = s.rekey(ctx, bot, api, true, nil)
	return err
}

// rotateToken replaces the token of the tenant's bot b with token (shape already checked)
// and applies u's other fields (already validated) in the same UPDATE; see UpdateBot.
func (s *Service) rotateToken(ctx context.Context, b Bot, token string, u UpdateBot) (Bot, error) {
	api, err := s.apiBot(token)
	if err != nil {
		return Bot{}, validate.Field("bot_token", "bot_token must look like 123456789:AA... as issued by @BotFather")
	}
	me, err := api.GetMeWithContext(ctx, nil)
	if err != nil {
		return Bot{}, classifyTelegram(err)
	}
	if me.Id != b.TelegramBotID {
		return Bot{}, ErrTokenBotMismatch
	}
	sealed, err := s.sealToken(b.ID, token)
	if err != nil {
		return Bot{}, fmt.Errorf("seal token: %w", err)
	}
	status := b.Status
	switch {
	case u.Status != nil:
		status = *u.Status
	case status == BotInvalidToken:
		status = BotActive // the new token was just accepted by getMe
	}
	nb, err := s.rekey(ctx, b, api, false, func(q *bun.UpdateQuery) *bun.UpdateQuery {
		q = q.Set("token_sealed = ?", sealed).Set("token_rotated_at = now()").Set("status = ?", status)
		q = u.applyInbox(q) // also updated_by
		if u.Editor != "" {
			q = q.Set("token_rotated_by = ?", u.Editor)
		}
		if me.Username != "" {
			q = q.Set("username = ?", me.Username)
		}
		if u.Name != nil {
			q = q.Set("name = ?", *u.Name)
		}
		if u.DailyLimit != nil {
			q = q.Set("daily_limit = ?", *u.DailyLimit)
		}
		return q
	})
	if err != nil {
		return Bot{}, err
	}
	s.log.InfoContext(ctx, "telegram: bot token rotated", "bot_app_id", b.ID.String(), "telegram_bot_id", b.TelegramBotID)
	return nb, nil
}

// rekey registers b's webhook through api (b's current token, or a new one being rotated
// in) with a new secret and, once Telegram accepted it, stores the secret as b's current
// one together with the changes of apply (nil: none), in one UPDATE; see the lifecycle
// notes at the top of this file. repair records a refusal in webhook_status/webhook_error
// (a rotation leaves them: the old webhook keeps working). Once the next secret is stored
// the remaining steps run even if ctx is cancelled.
func (s *Service) rekey(ctx context.Context, b Bot, api *gotgbot.Bot, repair bool, apply func(*bun.UpdateQuery) *bun.UpdateQuery) (Bot, error) {
	unlock, err := s.lockRekey(ctx, b.ID)
	if err != nil {
		return Bot{}, err
	}
	defer unlock()
	secret, hash, err := newWebhookSecret()
	if err != nil {
		return Bot{}, fmt.Errorf("webhook secret: %w", err)
	}
	log := s.log.With("bot_app_id", b.ID.String(), "telegram_bot_id", b.TelegramBotID)

	// 1. Accept the new secret before Telegram may use it.
	res, err := s.db.NewUpdate().Model((*Bot)(nil)).Set("webhook_secret_next_hash = ?", hash).
		Where("id = ?", b.ID).Where("deleted_at IS NULL").Exec(ctx)
	if err != nil {
		return Bot{}, apperr.Classify(fmt.Errorf("store next webhook secret: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Bot{}, ErrBotNotFound
	}
	ctx = context.WithoutCancel(ctx)
	s.invalidateBot(ctx, b.ID)

	// 2. setWebhook with the new secret (and the new token, for a rotation).
	url := s.WebhookURL(b.ID)
	if _, err := api.SetWebhookWithContext(ctx, url, &gotgbot.SetWebhookOpts{
		SecretToken: secret, AllowedUpdates: AllowedUpdates, MaxConnections: 40,
	}); err != nil {
		whErr := "setWebhook: " + safeTelegramError(err)
		log.WarnContext(ctx, "telegram: setWebhook failed; the old webhook and token stay", "error", whErr, "repair", repair)
		var te *gotgbot.TelegramError
		refused := errors.As(err, &te)
		q := s.db.NewUpdate().Model((*Bot)(nil)).Set("updated_at = now()").Where("id = ?", b.ID).Where("deleted_at IS NULL")
		if refused { // Telegram kept the old secret: stop accepting the new one
			q = q.Set("webhook_secret_next_hash = CASE WHEN webhook_secret_next_hash = ? THEN NULL ELSE webhook_secret_next_hash END", hash)
		}
		if repair {
			q = q.Set("webhook_status = ?", WebhookFailed).Set("webhook_error = ?", whErr)
		}
		if refused || repair {
			if _, uerr := q.Exec(ctx); uerr != nil {
				log.WarnContext(ctx, "telegram: record setWebhook failure", "error", uerr)
			}
			s.invalidateBot(ctx, b.ID)
		}
		return Bot{}, classifyTelegram(err)
	}

	// 3. Store the switch in one UPDATE.
	q := s.db.NewUpdate().Model((*Bot)(nil)).
		Set("webhook_secret_hash = ?", hash).Set("webhook_secret_next_hash = NULL").Set("webhook_url = ?", url).
		Set("webhook_status = ?", WebhookActive).Set("webhook_error = ''").Set("updated_at = now()")
	if apply != nil {
		q = apply(q)
	}
	var nb Bot
	err = q.Where("id = ?", b.ID).Where("deleted_at IS NULL").Where("webhook_secret_next_hash = ?", hash).
		Returning("*").Scan(ctx, &nb)
	if err != nil {
		if database.IsNoRows(err) {
			return Bot{}, ErrBotNotFound // deleted meanwhile
		}
		log.ErrorContext(ctx, "telegram: webhook registered but not stored; the new secret stays accepted", "error", err)
		return Bot{}, apperr.Classify(fmt.Errorf("store webhook switch: %w", err))
	}
	s.invalidateBot(ctx, b.ID)
	return nb, nil
}

// unlockScript deletes the lock key only while it still holds our value.
var unlockScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// lockRekey takes the per-bot lock of rotations and repairs for the longest they can take
// (two Bot API calls and the UPDATEs). Errors: ErrBotBusy when it is held,
// apperr.ErrUnavailable when Redis fails. Without Redis there is no lock.
func (s *Service) lockRekey(ctx context.Context, botID uuid.UUID) (func(), error) {
	if s.rdb == nil {
		return func() {}, nil
	}
	var v [16]byte
	_, _ = rand.Read(v[:])
	val := hex.EncodeToString(v[:])
	key := rekeyLockPrefix + botID.String()
	ok, err := s.rdb.SetNX(ctx, key, val, 2*s.cfg.RequestTimeout+30*time.Second).Result()
	if err != nil {
		return nil, apperr.Classify(fmt.Errorf("lock bot: %w", err))
	}
	if !ok {
		return nil, ErrBotBusy
	}
	return func() {
		uctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = unlockScript.Run(uctx, s.rdb, []string{key}, val).Err()
	}, nil
}
