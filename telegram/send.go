package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// Outgoing is one message to send: with sendMessage (core.telegram.org/bots/api#sendmessage),
// or sendPhoto / sendDocument when Content.Photo / Content.Document is set
// (core.telegram.org/bots/api#sendphoto, #senddocument), Text being the caption then.
type Outgoing struct {
	// Text is 1-4096 characters after entity parsing (a caption: 0-1024).
	Text string
	// ParseMode is "", "HTML", "MarkdownV2" or "Markdown" (core.telegram.org/bots/api#formatting-options).
	ParseMode string
	// Content is the photo or document, inline keyboard and flags (content.go).
	Content
	// AllowPaidBroadcast is passed to Telegram as allow_paid_broadcast (paid broadcasts
	// beyond 30 messages/s for a fee in Stars; core.telegram.org/bots/api#sendmessage).
	// SendBatch paces such a batch at Config.PaidBotRate instead of Config.BotRate.
	AllowPaidBroadcast bool
	// MessageThreadID is the forum topic (message_thread_id) of a supergroup to send to; 0
	// for none (core.telegram.org/bots/api#sendmessage).
	MessageThreadID int64
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
	// Redis error, the context ended while waiting, or the bot is not active: disabled or
	// invalid_token, RetryAfter InactiveBotRetry).
	OutcomeWait OutcomeStatus = "wait"
	// OutcomeBlocked: permanent 403 (bot blocked by the user, user deactivated, bot kicked);
	// the contact has been marked blocked for this bot.
	OutcomeBlocked OutcomeStatus = "blocked"
	// OutcomeFailed: permanent failure (400 chat not found, empty or unparsable text, 404,
	// ...). Do not retry. (A 401, revoked token, is an OutcomeWait: the bot is marked
	// invalid_token and its messages wait.)
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
	// BotInactive marks an OutcomeWait because the bot is not active: it was disabled, or its
	// token was rejected (a 401 answer marked it invalid_token). Nothing was sent; a
	// broadcast pauses instead of waiting (broadcast.PauseReasonBotInactive).
	BotInactive bool
	// ChatBusy marks an OutcomeWait that concerns this chat only (the per-chat limit): other
	// chats of the bot can be sent to meanwhile.
	ChatBusy bool
	// ErrorCode is Telegram's error_code of a failed call (e.g. 400, 401, 403, 429, 500);
	// 0 when Telegram did not answer with an error (sent, network errors, limits).
	ErrorCode int
	// Err is a human-readable reason for anything but OutcomeSent, e.g. Telegram's
	// description "Forbidden: bot was blocked by the user". It never contains the token.
	Err string
}

// sendRedisWaitRetry is how long to wait when the limiter's Redis fails: nothing is sent.
const sendRedisWaitRetry = 5 * time.Second

// sendCancelWaitRetry is the RetryAfter when the context ends while waiting for a slot.
const sendCancelWaitRetry = time.Second

// Send sends msg to chatID through bot with PriorityInteractive: the send path of replies
// and single messages. It keeps every limit (DESIGN.md, "Sending rules"):
//
//  1. bot.DailyLimit > 0: one send is counted for the UTC day; over the limit it returns
//     OutcomeDeferred with Until = the next UTC midnight.
//  2. Limiter.Acquire (429 pause, per chat, per bot with priority over broadcasts, global)
//     across all workers; a wait up to Config.MaxWait is slept here (ctx-aware), a longer one
//     returns OutcomeWait.
//  3. sendMessage with Config.RequestTimeout (core.telegram.org/bots/api#sendmessage). The
//     call is not cancelled with ctx once it has started: a message Telegram may have
//     received is always classified and returned, never abandoned.
//  4. The answer is classified: see OutcomeStatus. A 429 pauses the bot for retry_after in
//     every worker; a 403 marks the contact blocked; a 400 with migrate_to_chat_id moves the
//     contact to the new chat id and sends once more there.
//
// A bot whose Status is not active (disabled, invalid_token) sends nothing: Send returns
// OutcomeWait with RetryAfter InactiveBotRetry at once (nothing reserved, nothing dropped).
// A 401 answer marks the bot invalid_token (markTokenInvalid) and is an OutcomeWait too.
//
// A daily reservation is given back whenever nothing was sent. Send never panics on Telegram
// or Redis errors and returns no error: everything is in the Outcome.
func (s *Service) Send(ctx context.Context, bot Bot, chatID int64, msg Outgoing) Outcome {
	if out, ok := inactiveOutcome(bot, chatID); !ok {
		return out
	}
	now := s.now()
	log := s.log.With("bot_app_id", bot.ID.String(), "chat_id", chatID)
	if out, ok := s.reserveDaily(ctx, bot, chatID, now, log); !ok {
		return out
	}
	opts := AcquireOpts{Priority: PriorityInteractive, MaxWait: s.cfg.MaxWait, WaitForChat: true, WaitForPause: true}
	out := s.sendOnce(ctx, bot, chatID, msg, opts, log, true)
	if out.Status != OutcomeSent {
		s.releaseDaily(ctx, bot, now, log)
	}
	return out
}

// reserveDaily counts one send against bot's daily limit; ok false returns the Outcome to
// report (deferred, or a wait when Redis fails).
func (s *Service) reserveDaily(ctx context.Context, bot Bot, chatID int64, now time.Time, log *slog.Logger) (Outcome, bool) {
	if bot.DailyLimit <= 0 {
		return Outcome{}, true
	}
	ok, err := s.limits.ReserveDaily(ctx, bot.ID, bot.DailyLimit, now)
	if err != nil {
		log.WarnContext(ctx, "telegram: daily limit check failed", "error", err)
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: sendRedisWaitRetry, Err: "send limits unavailable (Redis); nothing was sent"}, false
	}
	if !ok {
		return Outcome{Status: OutcomeDeferred, ChatID: chatID, Until: NextUTCMidnight(now), Err: "daily limit reached"}, false
	}
	return Outcome{}, true
}

// releaseDaily gives back a daily reservation made at now when nothing was sent.
func (s *Service) releaseDaily(ctx context.Context, bot Bot, now time.Time, log *slog.Logger) {
	if bot.DailyLimit <= 0 {
		return
	}
	if err := s.limits.ReleaseDaily(context.WithoutCancel(ctx), bot.ID, now); err != nil {
		log.WarnContext(ctx, "telegram: release daily send failed", "error", err)
	}
}

// sendOnce acquires a permit for chatID, calls sendMessage and classifies the answer.
// With mayMigrate, a migrate_to_chat_id answer moves the contact and recurses once.
func (s *Service) sendOnce(ctx context.Context, bot Bot, chatID int64, msg Outgoing, opts AcquireOpts, log *slog.Logger, mayMigrate bool) Outcome {
	permit, refused, err := s.limits.Acquire(ctx, bot.ID, chatID, opts)
	if out, ok := acquireOutcome(ctx, chatID, refused, err, log); !ok {
		return out
	}
	return s.deliver(ctx, bot, chatID, msg, permit, log, mayMigrate)
}

// acquireOutcome turns a failed Acquire into an OutcomeWait; ok is true when a permit was
// granted.
func acquireOutcome(ctx context.Context, chatID int64, refused *Refusal, err error, log *slog.Logger) (Outcome, bool) {
	switch {
	case err != nil && ctx.Err() != nil:
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: sendCancelWaitRetry, Err: "cancelled while waiting for a rate slot"}, false
	case err != nil:
		log.WarnContext(ctx, "telegram: rate limiter failed", "error", err)
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: sendRedisWaitRetry, Err: "send limits unavailable (Redis); nothing was sent"}, false
	case refused != nil:
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: refused.RetryAfter, ChatBusy: refused.Reason == RefusedChat,
			Err: "rate limited (" + refused.Reason + ")"}, false
	}
	return Outcome{}, true
}

// deliver calls sendMessage under permit (recording its completion), then classifies the
// answer. The call runs on a context detached from ctx's cancellation and bounded by
// Config.RequestTimeout: a started send always finishes and is reported.
func (s *Service) deliver(ctx context.Context, bot Bot, chatID int64, msg Outgoing, permit Permit, log *slog.Logger, mayMigrate bool) (out Outcome) {
	defer func() { observeDeliver(out) }() // metrics by outcome (metrics.go)
	api, err := s.apiBotFor(bot)
	if err != nil {
		_ = permit.Cancel(ctx)
		log.ErrorContext(ctx, "telegram: cannot open bot token", "error", err)
		return Outcome{Status: OutcomeFailed, ChatID: chatID, Err: "cannot decrypt the bot token (wrong ENCRYPTION_KEY, or its key missing from ENCRYPTION_KEYS?)"}
	}
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
	m, err := sendAPI(callCtx, api, chatID, &msg)
	cancel()
	permit.Done()
	if err == nil {
		return Outcome{Status: OutcomeSent, ChatID: chatID, MessageID: m.MessageId}
	}

	var tgErr *gotgbot.TelegramError
	if !errors.As(err, &tgErr) {
		text := redactToken(sendErrText(err), api.Token)
		log.WarnContext(ctx, "telegram: send failed", "error", redactToken(err.Error(), api.Token))
		return Outcome{Status: OutcomeRetry, ChatID: chatID, Err: text}
	}
	defer func() { // the code of this answer, unless a migrated resend reported its own
		if out.Status != OutcomeSent && out.ErrorCode == 0 {
			out.ErrorCode = tgErr.Code
		}
	}()
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
			log.WarnContext(ctx, "telegram: pause bot failed", "error", err)
		}
		log.InfoContext(ctx, "telegram: flood wait, bot paused", "retry_after", d)
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: d, Err: desc}
	case tgErr.Code == 403:
		if _, err := s.markBlocked(context.WithoutCancel(ctx), bot, chatID); err != nil { // callbacks.go: contact.blocked
			log.ErrorContext(ctx, "telegram: mark contact blocked failed", "error", err)
		}
		return Outcome{Status: OutcomeBlocked, ChatID: chatID, Err: desc}
	case tgErr.Code == 400 && params.MigrateToChatId != 0:
		newID := params.MigrateToChatId
		if !mayMigrate || newID == chatID {
			return Outcome{Status: OutcomeFailed, ChatID: chatID, Err: desc}
		}
		log.InfoContext(ctx, "telegram: chat migrated", "new_chat_id", newID)
		if err := s.contacts.MigrateChat(context.WithoutCancel(ctx), bot.ID, chatID, newID); err != nil {
			log.ErrorContext(ctx, "telegram: migrate contact chat failed", "new_chat_id", newID, "error", err)
		}
		opts := AcquireOpts{Priority: PriorityInteractive, MaxWait: s.cfg.MaxWait, WaitForChat: true, WaitForPause: true}
		return s.sendOnce(ctx, bot, newID, msg, opts, log.With("chat_id", newID), false)
	case tgErr.Code == 401: // the token was revoked: the bot waits, nothing is dropped
		s.markTokenInvalid(context.WithoutCancel(ctx), bot, log)
		return Outcome{Status: OutcomeWait, ChatID: chatID, RetryAfter: InactiveBotRetry, BotInactive: true, Err: "bot token rejected by Telegram (401 " + desc + "): bot marked invalid_token"}
	case tgErr.Code >= 500:
		return Outcome{Status: OutcomeRetry, ChatID: chatID, Err: desc}
	default: // 400, 404 and any other client error: permanent.
		return Outcome{Status: OutcomeFailed, ChatID: chatID, Err: desc}
	}
}

// sendAPI calls sendMessage, sendPhoto (msg.Photo set) or sendDocument (msg.Document set)
// with every option of msg. A plain text message without options builds no more than
// before (the options struct only).
func sendAPI(ctx context.Context, api *gotgbot.Bot, chatID int64, msg *Outgoing) (*gotgbot.Message, error) {
	markup := wireKeyboard(msg.ReplyMarkup)
	switch {
	case msg.Photo != "":
		return api.SendPhotoWithContext(ctx, chatID, gotgbot.InputFileByURL(msg.Photo), &gotgbot.SendPhotoOpts{
			Caption: msg.Text, ParseMode: msg.ParseMode, DisableNotification: msg.DisableNotification,
			ProtectContent: msg.ProtectContent, AllowPaidBroadcast: msg.AllowPaidBroadcast, ReplyMarkup: markup,
			MessageThreadId: msg.MessageThreadID,
		})
	case msg.Document != "":
		return api.SendDocumentWithContext(ctx, chatID, gotgbot.InputFileByURL(msg.Document), &gotgbot.SendDocumentOpts{
			Caption: msg.Text, ParseMode: msg.ParseMode, DisableNotification: msg.DisableNotification,
			ProtectContent: msg.ProtectContent, AllowPaidBroadcast: msg.AllowPaidBroadcast, ReplyMarkup: markup,
			MessageThreadId: msg.MessageThreadID,
		})
	}
	opts := &gotgbot.SendMessageOpts{
		ParseMode: msg.ParseMode, DisableNotification: msg.DisableNotification,
		ProtectContent: msg.ProtectContent, AllowPaidBroadcast: msg.AllowPaidBroadcast, ReplyMarkup: markup,
		MessageThreadId: msg.MessageThreadID,
	}
	if msg.DisableLinkPreview {
		opts.LinkPreviewOptions = disabledLinkPreview
	}
	return api.SendMessageWithContext(ctx, chatID, msg.Text, opts)
}

// BatchOptions are the options of SendBatch.
type BatchOptions struct {
	// Concurrency is the most sendMessage calls in flight at once. Default: 8.
	Concurrency int
	// Deadline stops starting new sends once passed (zero: none).
	Deadline time.Time
	// Interactive sends with PriorityInteractive (replies and single messages: a busy chat is
	// waited for within MaxWait) instead of PriorityBulk (broadcasts: a busy chat is skipped
	// with OutcomeWait).
	Interactive bool
	// Messages, when set, gives each chat its own message (same length as chatIDs); msg is
	// then ignored.
	Messages []Outgoing
	// OnResult is called once per chat (index i of chatIDs) as soon as its Outcome is known
	// (from several goroutines at once; it must be safe for concurrent use), so that the
	// caller can record each send right after it happened. Required.
	OnResult func(i int, out Outcome)
}

// SendBatch sends msg (or opts.Messages[i]) to each of chatIDs through bot with
// PriorityBulk (a broadcast's chunk) or, with opts.Interactive, PriorityInteractive (a batch
// of replies), keeping every limit like Send, and reports one Outcome per chat through
// opts.OnResult. It returns when every chat has been reported.
//
// One goroutine acquires the permits in order (Limiter.Acquire, waiting up to Config.MaxWait
// for the bot's window), and up to opts.Concurrency sends are in flight at once, so that the
// bot runs at its window's pace whatever the round-trip time. A chat that is busy (a reply
// was just sent to it) gets OutcomeWait with its RetryAfter and the batch moves on. The batch
// stops starting sends when ctx ends, opts.Deadline passes, the bot is paused (429) or its
// slots are further than MaxWait, or its daily limit is used up: the chats not attempted get
// OutcomeWait (RetryAfter: the pause or the wait, 0 when stopped by ctx or the deadline) or
// OutcomeDeferred (Until: the next UTC midnight). Sends already started always finish and
// are reported, even after ctx has ended (bounded by Config.RequestTimeout). A bot that is
// not active (Bot.Status) sends nothing: every chat gets OutcomeWait with RetryAfter
// InactiveBotRetry.
func (s *Service) SendBatch(ctx context.Context, bot Bot, chatIDs []int64, msg Outgoing, opts BatchOptions) {
	if opts.Concurrency <= 0 {
		opts.Concurrency = 8
	}
	if _, ok := inactiveOutcome(bot, 0); !ok {
		for i, chatID := range chatIDs {
			out, _ := inactiveOutcome(bot, chatID)
			opts.OnResult(i, out)
		}
		return
	}
	log := s.log.With("bot_app_id", bot.ID.String())
	sem := make(chan struct{}, opts.Concurrency)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stop *Outcome // set when the batch stops; copied to every chat not attempted
	stopWith := func(o Outcome) {
		mu.Lock()
		if stop == nil {
			stop = &o
		}
		mu.Unlock()
	}
	stopped := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return stop != nil
	}
	acq := AcquireOpts{Priority: PriorityBulk, MaxWait: s.cfg.MaxWait, NoSleep: true, Paid: msg.AllowPaidBroadcast}
	if opts.Interactive {
		acq.Priority, acq.WaitForChat = PriorityInteractive, true
	}
	report := opts.OnResult
	i := 0
	for ; i < len(chatIDs); i++ {
		if stopped() {
			break
		}
		if ctx.Err() != nil || (!opts.Deadline.IsZero() && time.Now().After(opts.Deadline)) {
			stopWith(Outcome{Status: OutcomeWait, Err: "run stopped before sending"})
			break
		}
		chatID := chatIDs[i]
		clog := log.With("chat_id", chatID)
		now := s.now()
		if out, ok := s.reserveDaily(ctx, bot, chatID, now, clog); !ok {
			stopWith(out)
			break
		}
		permit, refused, err := s.limits.Acquire(ctx, bot.ID, chatID, acq)
		if out, ok := acquireOutcome(ctx, chatID, refused, err, clog); !ok {
			s.releaseDaily(ctx, bot, now, clog)
			if refused != nil && refused.Reason == RefusedChat {
				report(i, out) // this chat only: move on
				continue
			}
			stopWith(out)
			break
		}
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			// Never abandon a granted permit: wait for a free sender instead.
			sem <- struct{}{}
		}
		wg.Add(1)
		m := msg
		if opts.Messages != nil {
			m = opts.Messages[i]
		}
		go func(i int, chatID int64, m Outgoing, permit Permit, now time.Time, clog *slog.Logger) {
			defer wg.Done()
			defer func() { <-sem }()
			if !sleepCtx(ctx, time.Until(permit.StartAt)) {
				// Stopped before its slot: nothing was sent.
				_ = permit.Cancel(ctx)
				s.releaseDaily(ctx, bot, now, clog)
				report(i, Outcome{Status: OutcomeWait, ChatID: chatID, Err: "run stopped before sending"})
				return
			}
			out := s.deliver(ctx, bot, chatID, m, permit, clog, true)
			if out.Status != OutcomeSent {
				s.releaseDaily(ctx, bot, now, clog)
			}
			if out.Status == OutcomeWait { // 429: the bot is paused for every worker
				stopWith(Outcome{Status: OutcomeWait, RetryAfter: out.RetryAfter, Err: out.Err})
			}
			report(i, out)
		}(i, chatID, m, permit, now, clog)
	}
	wg.Wait()
	for j := i; j < len(chatIDs); j++ {
		o := *stop
		o.ChatID = chatIDs[j]
		report(j, o)
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
