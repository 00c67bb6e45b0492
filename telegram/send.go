package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// Outgoing is one message to send with sendMessage (core.telegram.org/bots/api#sendmessage).
type Outgoing struct {
	// Text is 1-4096 characters after entity parsing.
	Text string
	// ParseMode is "", "HTML", "MarkdownV2" or "Markdown" (core.telegram.org/bots/api#formatting-options).
	ParseMode string
}

// OutcomeStatus classifies the result of Send.
type OutcomeStatus string

// Outcomes of Send (DESIGN.md, "Outcomes of a send").
const (
	// OutcomeSent: Telegram accepted the message; Outcome.MessageID is its message_id.
	OutcomeSent OutcomeStatus = "sent"
	// OutcomeRetry: a retryable failure (network error, TELEGRAM_REQUEST_TIMEOUT, 5xx, an
	// undecodable answer such as a proxy's HTML 502). It counts against TELEGRAM_MAX_RETRIES.
	OutcomeRetry OutcomeStatus = "retry"
	// OutcomeWait: nothing was sent; try again after Outcome.RetryAfter without counting a
	// failure (rate-limit wait longer than Config.MaxWait, Telegram's 429 retry_after, a
	// Redis error, or the context ended while waiting).
	OutcomeWait OutcomeStatus = "wait"
	// OutcomeBlocked: permanent 403 (bot blocked by the user, user deactivated, bot kicked);
	// the contact has been marked blocked for this bot.
	OutcomeBlocked OutcomeStatus = "blocked"
	// OutcomeFailed: permanent failure (400 chat not found, empty or unparsable text, 401/404
	// revoked token, ...). Do not retry.
	OutcomeFailed OutcomeStatus = "failed"
	// OutcomeDeferred: the bot's daily_limit is used up for this UTC day; send again at
	// Outcome.Until (the next UTC midnight). Never dropped.
	OutcomeDeferred OutcomeStatus = "deferred"
)

// Outcome is the result of Send.
type Outcome struct {
	// Status classifies the result.
	Status OutcomeStatus
	// MessageID is Telegram's message_id (OutcomeSent only).
	MessageID int64
	// ChatID is the chat the last attempt went to: the chatID given to Send, or the new
	// supergroup id after a migrate_to_chat_id answer (callers should store it).
	ChatID int64
	// RetryAfter is how long to wait before trying again (OutcomeWait).
	RetryAfter time.Duration
	// Until is when the daily limit resets (OutcomeDeferred): the next UTC midnight.
	Until time.Time
	// Err is a human-readable reason for anything but OutcomeSent, e.g. Telegram's
	// description "Forbidden: bot was blocked by the user". It never contains the token.
	Err string
}

// sendRedisWaitRetry is how long to wait when the limiter's Redis fails: nothing is sent.
const sendRedisWaitRetry = 5 * time.Second

// sendCancelWaitRetry is the RetryAfter when the context ends while waiting for a slot.
const sendCancelWaitRetry = time.Second

// Send sends msg to chatID through bot, the single send path of replies, single messages and
// broadcasts. It keeps every limit (DESIGN.md, "Sending rules"):
//
//  1. bot.DailyLimit > 0: one send is counted for the UTC day; over the limit it returns
//     OutcomeDeferred with Until = the next UTC midnight.
//  2. Limiter.Reserve (global, per bot, per chat, 429 pause) across all workers; a wait up to
//     Config.MaxWait is slept here (ctx-aware), a longer one returns OutcomeWait.
//  3. sendMessage with Config.RequestTimeout (core.telegram.org/bots/api#sendmessage).
//  4. The answer is classified: see OutcomeStatus. A 429 pauses the bot for retry_after in
//     every worker; a 403 marks the contact blocked; a 400 with migrate_to_chat_id moves the
//     contact to the new chat id and sends once more there.
//
// A daily reservation is given back whenever nothing was sent. Send never panics on Telegram
// or Redis errors and returns no error: everything is in the Outcome.
func (s *Service) Send(ctx context.Context, bot Bot, chatID int64, msg Outgoing) Outcome {
	now := time.Now()
	log := s.log.With("bot_app_id", bot.ID.String(), "chat_id", chatID)
	if bot.DailyLimit > 0 {
		ok, err := s.limits.ReserveDaily(ctx, bot.ID, bot.DailyLimit, now)
		if err != nil {
			log.Warn("telegram: daily limit check failed", "err", err)
			return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: sendRedisWaitRetry, Err: "send limits unavailable (Redis); nothing was sent"}
		}
		if !ok {
			return Outcome{Status: OutcomeDeferred, ChatID: chatID, Until: NextUTCMidnight(now), Err: "daily limit reached"}
		}
	}
	out := s.sendOnce(ctx, bot, chatID, msg, log, true)
	if out.Status != OutcomeSent && bot.DailyLimit > 0 {
		if err := s.limits.ReleaseDaily(context.WithoutCancel(ctx), bot.ID, now); err != nil {
			log.Warn("telegram: release daily send failed", "err", err)
		}
	}
	return out
}

// sendOnce reserves a rate slot for chatID, calls sendMessage and classifies the answer.
// With mayMigrate, a migrate_to_chat_id answer moves the contact and recurses once.
func (s *Service) sendOnce(ctx context.Context, bot Bot, chatID int64, msg Outgoing, log *slog.Logger, mayMigrate bool) Outcome {
	wait, ok, err := s.limits.Reserve(ctx, bot.ID, chatID, s.cfg.MaxWait)
	if err != nil && ctx.Err() != nil {
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: sendCancelWaitRetry, Err: "cancelled while waiting for a rate slot"}
	}
	if err != nil {
		log.Warn("telegram: rate limiter failed", "err", err)
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: sendRedisWaitRetry, Err: "send limits unavailable (Redis); nothing was sent"}
	}
	if !ok {
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: wait, Err: "rate limited"}
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: sendCancelWaitRetry, Err: "cancelled while waiting for a rate slot"}
		}
	}

	api, err := s.apiBotFor(bot)
	if err != nil {
		log.Error("telegram: cannot open bot token", "err", err)
		return Outcome{Status: OutcomeFailed, ChatID: chatID, Err: "cannot decrypt the bot token (wrong ENCRYPTION_KEY?)"}
	}
	m, err := api.SendMessageWithContext(ctx, chatID, msg.Text, &gotgbot.SendMessageOpts{ParseMode: msg.ParseMode})
	if err == nil {
		return Outcome{Status: OutcomeSent, ChatID: chatID, MessageID: m.MessageId}
	}

	var tgErr *gotgbot.TelegramError
	if !errors.As(err, &tgErr) {
		text := redactToken(sendErrText(err), api.Token)
		log.Warn("telegram: sendMessage failed", "err", redactToken(err.Error(), api.Token))
		return Outcome{Status: OutcomeRetry, ChatID: chatID, Err: text}
	}
	desc := redactToken(tgErr.Description, api.Token)
	if desc == "" {
		desc = fmt.Sprintf("Telegram error %d", tgErr.Code)
	}
	var params gotgbot.ResponseParameters
	if tgErr.ResponseParams != nil {
		params = *tgErr.ResponseParams
	}
	switch {
	case params.RetryAfter > 0 || tgErr.Code == 429:
		d := time.Duration(max(params.RetryAfter, 1)) * time.Second
		if err := s.limits.PauseBot(context.WithoutCancel(ctx), bot.ID, d); err != nil {
			log.Warn("telegram: pause bot failed", "err", err)
		}
		log.Info("telegram: flood wait, bot paused", "retry_after", d)
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: d, Err: desc}
	case tgErr.Code == 403:
		if _, err := s.contacts.SetBlocked(context.WithoutCancel(ctx), s.db, bot.ID, chatID, true); err != nil {
			log.Error("telegram: mark contact blocked failed", "err", err)
		}
		return Outcome{Status: OutcomeBlocked, ChatID: chatID, Err: desc}
	case tgErr.Code == 400 && params.MigrateToChatId != 0:
		newID := params.MigrateToChatId
		if !mayMigrate || newID == chatID {
			return Outcome{Status: OutcomeFailed, ChatID: chatID, Err: desc}
		}
		log.Info("telegram: chat migrated", "new_chat_id", newID)
		if err := s.contacts.MigrateChat(context.WithoutCancel(ctx), bot.ID, chatID, newID); err != nil {
			log.Error("telegram: migrate contact chat failed", "new_chat_id", newID, "err", err)
		}
		return s.sendOnce(ctx, bot, newID, msg, log.With("chat_id", newID), false)
	case tgErr.Code >= 500:
		return Outcome{Status: OutcomeRetry, ChatID: chatID, Err: desc}
	default: // 400, 401, 404 and any other client error: permanent.
		return Outcome{Status: OutcomeFailed, ChatID: chatID, Err: desc}
	}
}

// sendErrText is a generic, secret-free description of a non-Telegram error.
func sendErrText(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr) && netErr.Timeout():
		return "Telegram request timed out"
	case errors.Is(err, context.Canceled):
		return "Telegram request cancelled"
	case errors.As(err, &syn), errors.As(err, &typ), strings.Contains(err.Error(), "failed to decode"):
		return "Telegram answered with an unreadable response (proxy or server error)"
	default:
		return "Telegram could not be reached"
	}
}

// redactToken removes token (and its secret part after the colon) from text.
func redactToken(text, token string) string {
	if token == "" {
		return text
	}
	text = strings.ReplaceAll(text, token, "[REDACTED]")
	if _, secret, ok := strings.Cut(token, ":"); ok && len(secret) >= 8 {
		text = strings.ReplaceAll(text, secret, "[REDACTED]")
	}
	return text
}
