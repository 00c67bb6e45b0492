package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/queue"
	"github.com/botfleet/botfleet/internal/validate"
)

// MaxTextLength is the longest message text, in characters (Unicode code points), that
// sendMessage accepts (core.telegram.org/bots/api#sendmessage: 1-4096 characters after
// entities parsing). CreateMessage counts the raw text, so formatted text with markup is
// checked conservatively.
const MaxTextLength = validate.MaxTextLen

// ErrContactNotOfBot is CreateMessage's 422 for a contact not linked to the bot (the person never wrote to it)
// (besides ErrBotNotFound, ErrBotRequired and contacts.ErrNotFound (404)).
var ErrContactNotOfBot = apperr.Invalid("contact_not_of_bot", "contact_id is not a contact of this bot").
	WithDetails(map[string]any{"field": "contact_id"})

// sendEnqueueTimeout bounds the enqueue of a send task after the message row is stored.
const sendEnqueueTimeout = 5 * time.Second

// NewMessage is the input of CreateMessage.
type NewMessage struct {
	// BotID is the bot_app_id; uuid.Nil means the tenant's only bot (ErrBotRequired otherwise).
	BotID uuid.UUID
	// ContactID is the recipient; it must be a contact of BotID. uuid.Nil when ChatID is set.
	ContactID uuid.UUID
	// ChatID, instead of ContactID, is a group, supergroup or channel of BotID (bot_chats,
	// chats.go) where the bot may post; BotID is then required.
	ChatID int64
	// MessageThreadID is the forum topic of a ChatID that is a forum supergroup; 0 for none.
	MessageThreadID int64
	// Text is 1-4096 characters, not blank, without control characters other than tab and
	// newline (validate.Text), and parseable in ParseMode by Telegram's formatting rules
	// (validate.FormattedText).
	Text string
	// ParseMode is "", "HTML", "MarkdownV2" or "Markdown" (validate.ParseMode:
	// case-insensitive; stored in Telegram's spelling).
	ParseMode string
	// Content is the photo or document (Text is then the caption, 0-1024 characters),
	// inline keyboard and flags (CheckMessage).
	Content Content
	// SentBy is the name of the API key of the request (messages.sent_by; "" for none).
	SentBy string
}

// CreateMessage validates a single message to one contact, stores it as an outbound message
// with status "queued" and enqueues its telegram:send task; the worker sends it through Send.
//
// The message goes through nm.BotID or, when it is uuid.Nil, through the bot the contact
// last wrote to (its link with the latest inbound message), else the tenant's only bot. The
// chat and the blocked / opted_out checks are those of the contact's link to that bot.
//
// The content options and the text's variables follow CheckMessage (the rules of
// broadcasts); the variables are rendered now for the contact (values escaped for the parse
// mode) and the message stores the text as it will be sent.
//
// Errors: invalid_field (422) for text and parse_mode, for a text that Telegram could
// not parse in its parse_mode (details.position), an unknown variable (details.position,
// details.variable), a rendered text that does not fit, photo, document and reply_markup
// (details.field naming the part); ErrBotNotFound (404, also another
// tenant's bot), ErrBotRequired (422); contacts.ErrNotFound (404, unknown or another
// tenant's contact); ErrContactNotOfBot (422); ErrContactBlocked (422, the contact blocked
// the bot); ErrContactOptedOut (422, the contact sent /stop); apperr.ErrUnavailable (503) when PostgreSQL is down.
// With ChatID instead of ContactID (a group, supergroup or channel): ErrBotChatNotFound (404),
// ErrChatNotAvailable (422), invalid_field message_thread_id (422) for a topic in a chat
// that is not a forum; see createChatMessage.
//
// The enqueue uses a context detached from the request (5 s). If it fails the message is
// still returned queued and the error is logged: the periodic sweep (HandleSweep)
// re-enqueues queued messages whose task was lost, so the send is delayed, not lost.
func (s *Service) CreateMessage(ctx context.Context, tenantID uuid.UUID, nm NewMessage) (contacts.Message, error) {
	tpl, err := CheckMessage("text", nm.Text, nm.ParseMode, nm.Content)
	if err != nil {
		return contacts.Message{}, err
	}
	mode := tpl.ParseMode
	var botID *uuid.UUID
	if nm.BotID != uuid.Nil {
		botID = &nm.BotID
	}
	if nm.ChatID != 0 {
		return s.createChatMessage(ctx, tenantID, nm, tpl) // chats_send.go
	}
	// A bot named is checked first (another tenant's bot is 404 bot_not_found whatever the
	// contact); with none, the bot the person last wrote to (the only one, often).
	var bot Bot
	if botID != nil {
		if bot, err = s.BotForTenant(ctx, tenantID, botID); err != nil {
			return contacts.Message{}, err
		}
	}
	c, err := s.contacts.Get(ctx, tenantID, nm.ContactID)
	if err != nil {
		return contacts.Message{}, err
	}
	if botID == nil {
		if l, ok := c.LatestLink(); ok {
			botID = &l.BotID
		}
		if bot, err = s.BotForTenant(ctx, tenantID, botID); err != nil {
			return contacts.Message{}, err
		}
	}
	// The person's link to this bot: its chat and its blocked / opted_out state there.
	link, ok := c.Link(bot.ID)
	if !ok {
		return contacts.Message{}, ErrContactNotOfBot
	}
	if link.Blocked {
		return contacts.Message{}, ErrContactBlocked
	}
	if link.OptedOut {
		return contacts.Message{}, ErrContactOptedOut
	}
	// Variables are rendered now, for this contact; the message stores the text as sent.
	out, reason := tpl.RenderFor(ContactLookup(c.FirstName, c.LastName, c.TelegramUsername, c.Attributes))
	if reason != "" {
		return contacts.Message{}, validate.Field("text", "text: %s", reason)
	}
	m := contacts.Message{
		TenantID: tenantID, BotID: bot.ID, ContactID: &c.ID, ChatID: link.TelegramChatID,
		Kind: contacts.KindMessage, Text: out.Text, ParseMode: mode, Content: nm.Content.json(), SentBy: nm.SentBy,
	}
	if err := s.contacts.CreateOutbound(ctx, s.db, &m); err != nil {
		return contacts.Message{}, err
	}
	s.enqueueSend(ctx, m.ID)
	return m, nil
}

// enqueueSend enqueues the telegram:send task of message id with a context that outlives the
// request; a duplicate TaskID is success, other failures are logged (the sweep re-enqueues).
func (s *Service) enqueueSend(ctx context.Context, id uuid.UUID) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sendEnqueueTimeout)
	defer cancel()
	task, err := NewSendTask(id)
	if err == nil {
		_, err = s.queue.EnqueueContext(ctx, task)
	}
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		s.log.ErrorContext(ctx, "telegram: enqueue send failed; the sweep will retry", "message_id", id.String(), "error", err)
	}
}

// GetMessage returns the tenant's message id. Errors: ErrMessageNotFound (404, also another
// tenant's).
func (s *Service) GetMessage(ctx context.Context, tenantID, id uuid.UUID) (contacts.Message, error) {
	return s.contacts.GetMessage(ctx, tenantID, id)
}

// HandleSend sends one queued outbound message (task TypeSend) through Send and records the
// result in PostgreSQL. It is idempotent: a message that is no longer queued is skipped.
//
// Before calling Telegram the message is claimed: status "sending", attempts+1, committed
// (contacts.ClaimSend), so that a message that may have reached Telegram is never sent again
// without a record saying so. A message left "sending" by a worker that died is claimed
// again only after SendLease (its error then says the previous attempt may have been
// delivered).
//
// Results: sent → status sent with telegram_message_id, nil. Rate-limit wait or Telegram's
// 429 → queued again with the attempt given back, *RetryAfterError (the worker's IsFailure
// ignores it). Daily limit → the same until the next UTC midnight ("daily_limit"). Retryable
// failure → queued with the attempt counted; once attempts exceeds Config.MaxRetries
// (TELEGRAM_MAX_RETRIES: 1 attempt + MaxRetries retries) the message is failed with the last
// error and asynq.SkipRetry is returned, otherwise a plain error so that asynq retries with
// the worker's RetryDelayFunc. Blocked or permanent failure → failed, asynq.SkipRetry.
// A bad payload, a deleted message or a deleted bot → asynq.SkipRetry.
func (s *Service) HandleSend(ctx context.Context, t *asynq.Task) error {
	var p SendPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.MessageID == uuid.Nil {
		return fmt.Errorf("decode %s payload: %w", TypeSend, asynq.SkipRetry)
	}
	m, ok, err := s.contacts.ClaimSend(ctx, p.MessageID, time.Now().Add(-s.SendLease()))
	if errors.Is(err, contacts.ErrMessageNotFound) {
		return fmt.Errorf("message %s: %w", p.MessageID, asynq.SkipRetry)
	}
	if err != nil {
		return fmt.Errorf("claim message %s: %w", p.MessageID, err)
	}
	if !ok {
		return nil // sent, failed, or being sent by a live worker
	}
	log := s.log.With("bot_app_id", m.BotID.String(), "chat_id", m.ChatID, "message_id", m.ID.String())
	logging.Add(ctx, slog.String(logging.KeyTenantID, m.TenantID.String()), slog.String(logging.KeyBotAppID, m.BotID.String()))
	// From here on the claim is ours: every path records an outcome, even if ctx ends.
	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	bot, err := s.BotByID(ctx, m.BotID)
	if errors.Is(err, ErrBotNotFound) {
		failed := contacts.SendResult{ID: m.ID, Status: contacts.StatusFailed, Attempts: m.Attempts, Error: "bot deleted"}
		if err := s.finishSends(dbCtx, []contacts.Message{m}, []contacts.SendResult{failed}); err != nil {
			return fmt.Errorf("mark message failed: %w", err)
		}
		return fmt.Errorf("message %s: bot deleted: %w", m.ID, asynq.SkipRetry)
	}
	if err != nil {
		back := contacts.SendResult{ID: m.ID, Status: contacts.StatusQueued, Attempts: m.Attempts - 1, KeepError: true}
		if rerr := s.contacts.FinishSends(dbCtx, []contacts.SendResult{back}); rerr != nil {
			log.WarnContext(ctx, "telegram: give message back failed; the sweep will", "error", rerr)
		}
		return fmt.Errorf("load bot %s: %w", m.BotID, err)
	}

	out := s.Send(ctx, bot, m.ChatID, outgoingOf(m))
	r := s.sendResult(m, out)
	if err := s.finishSends(dbCtx, []contacts.Message{m}, []contacts.SendResult{r}); err != nil {
		if out.Status == OutcomeSent {
			// Retrying the task would send a duplicate: give up loudly instead. The message
			// stays "sending" with its attempt counted.
			log.ErrorContext(ctx, "telegram: message sent but not recorded", "telegram_message_id", out.MessageID, "error", err)
			return fmt.Errorf("record sent message %s: %v: %w", m.ID, err, asynq.SkipRetry)
		}
		return fmt.Errorf("record send of message %s: %w", m.ID, err)
	}
	switch {
	case out.Status == OutcomeSent:
		return nil
	case out.Status == OutcomeDeferred:
		return &RetryAfterError{RetryAfter: max(time.Until(out.Until), time.Second), Reason: "daily_limit"}
	case out.Status == OutcomeWait:
		return &RetryAfterError{RetryAfter: max(out.RetryAfter, 100*time.Millisecond), Reason: waitReason(out)}
	case r.Status == contacts.StatusQueued: // a retryable failure: asynq retries with its backoff
		return fmt.Errorf("send message %s (attempt %d): %s", m.ID, r.Attempts, out.Err)
	case out.Status == OutcomeRetry:
		log.WarnContext(ctx, "telegram: send failed after retries", "attempts", r.Attempts, "error", out.Err)
		return fmt.Errorf("send message %s: %s (after %d attempts): %w", m.ID, out.Err, r.Attempts, asynq.SkipRetry)
	default: // OutcomeBlocked, OutcomeFailed
		return fmt.Errorf("send message %s: %s: %w", m.ID, out.Err, asynq.SkipRetry)
	}
}

// sendResult maps the Outcome of sending claimed message m (its attempt counted by the
// claim) to the row to write: sent; queued again with the attempt given back (rate-limit
// wait, 429, daily limit: not attempts); queued with the attempt counted (retryable
// failure, until attempts exceeds Config.MaxRetries: then failed); failed (blocked or
// permanent).
func (s *Service) sendResult(m contacts.Message, out Outcome) contacts.SendResult {
	r := contacts.SendResult{ID: m.ID, Attempts: m.Attempts, Error: out.Err}
	switch out.Status {
	case OutcomeSent:
		mid := out.MessageID
		r.Status, r.TelegramMessageID, r.Error = contacts.StatusSent, &mid, ""
	case OutcomeWait, OutcomeDeferred:
		r.Status, r.Attempts, r.KeepError = contacts.StatusQueued, m.Attempts-1, true
	case OutcomeRetry:
		r.Status = contacts.StatusQueued
		if m.Attempts > s.cfg.MaxRetries {
			r.Status = contacts.StatusFailed
		}
	default: // OutcomeBlocked, OutcomeFailed
		r.Status = contacts.StatusFailed
	}
	return r
}

// waitReason is the RetryAfterError reason of an OutcomeWait.
func waitReason(out Outcome) string {
	if out.Err == "" {
		return "rate_limit"
	}
	return out.Err
}

// sendManyFlush is how often HandleSendMany records the results of a batch while it runs.
const sendManyFlush = 200 * time.Millisecond

// sweepMessages enqueues telegram:send again for every outbound message still queued whose
// row was last updated more than olderThan ago, and every message left "sending" longer
// than SendLease (its worker died mid-send; a rescue task with its own TaskID), paging
// through all of them by id. A task
// that is still live is left alone; an archived or completed one (its retries ran out, e.g.
// during a long PostgreSQL outage) is replaced (queue.Enqueue). It returns how many tasks
// it enqueued. Errors: apperr.ErrUnavailable.
func (s *Service) sweepMessages(ctx context.Context, olderThan time.Duration) (int, error) {
	n := 0
	stale := []struct {
		status string
		age    time.Duration
	}{{contacts.StatusQueued, olderThan}, {contacts.StatusSending, max(olderThan, s.SendLease())}}
	for _, st := range stale {
		status, age := st.status, st.age
		after := uuid.Nil
		for {
			ids, err := s.contacts.StaleOutbound(ctx, status, time.Now().Add(-age), after, sweepBatch)
			if err != nil {
				return n, apperr.Classify(fmt.Errorf("sweep messages: %w", err))
			}
			for _, id := range ids {
				taskID := sendTaskID(id)
				var opts []asynq.Option
				if status == contacts.StatusSending {
					// Its worker died mid-send; asynq would recover that task only after its
					// own lease and recoverer interval (up to 1.5 min). A second task is
					// harmless: only one can claim the message (ClaimSend).
					taskID = fmt.Sprintf("%s:rescue:%d", taskID, time.Now().UnixNano())
					opts = append(opts, asynq.TaskID(taskID))
				}
				ok, err := queue.Enqueue(ctx, s.queue, s.insp, mustSendTask(id), QueueOutbound, taskID, opts...)
				if err != nil {
					return n, apperr.ErrUnavailable.Wrap(err)
				}
				if ok {
					n++
				}
			}
			if len(ids) < sweepBatch {
				break
			}
			after = ids[len(ids)-1]
		}
	}
	return n, nil
}

// HandleSendMany sends the batches of outbound messages of a TypeSendMany task (payload
// SendManyPayload), each bot's batch at once in its own goroutine, so that one task carries
// the replies of a whole processed batch of updates (asynq costs a few Redis round trips per
// task; one task per reply capped replies at a few hundred per second). See sendBatchOf for
// one bot's batch. The task returns nil when no message is left queued, a *RetryAfterError for
// the earliest of those left queued, or the first transient error (PostgreSQL), after which
// a new run claims only the messages still queued. A bad payload is asynq.SkipRetry.
func (s *Service) HandleSendMany(ctx context.Context, t *asynq.Task) error {
	var p SendManyPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || len(p.Batches) == 0 {
		return fmt.Errorf("decode %s payload: %w", TypeSendMany, asynq.SkipRetry)
	}
	for _, b := range p.Batches {
		if b.BotID == uuid.Nil || len(b.MessageIDs) == 0 {
			return fmt.Errorf("decode %s payload: empty batch: %w", TypeSendMany, asynq.SkipRetry)
		}
	}
	var (
		mu       sync.Mutex
		again    time.Duration
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, sendManyParallel)
	for _, b := range p.Batches {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			d, err := s.sendBatchOf(ctx, b.BotID, b.MessageIDs)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			if d > 0 && (again == 0 || d < again) {
				again = d
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	if again > 0 {
		return &RetryAfterError{RetryAfter: again, Reason: "messages of the batch left queued"}
	}
	return nil
}

// sendManyParallel is how many bots' batches of one TypeSendMany task are sent at once.
const sendManyParallel = 32

// sendBatchOf sends the messages ids of bot botID, as HandleSend does for one, through
// SendBatch with PriorityInteractive: one permit acquirer at the bot's pace and a few sends
// in flight. The messages are claimed together (contacts.ClaimSends: "sending", attempt
// counted before Telegram is called) and their results recorded every sendManyFlush while
// the batch runs (contacts.FinishSends). It returns how long until the earliest message
// left queued should be tried again (0: none: a rate-limit wait or 429, the daily limit's
// reset, or the backoff of a retryable failure, 1s·2^(attempts-1)), and an error only when
// a retry of the task can help (claiming or loading the bot failed). A deleted bot fails its
// messages ("bot deleted"); results that cannot be recorded are logged and left to the sweep.
func (s *Service) sendBatchOf(ctx context.Context, botID uuid.UUID, ids []uuid.UUID) (time.Duration, error) {
	ms, err := s.contacts.ClaimSends(ctx, ids, time.Now().Add(-s.SendLease()))
	if err != nil {
		return 0, err
	}
	if len(ms) == 0 {
		return 0, nil
	}
	// From here on the claims are ours: every path records an outcome, even if ctx ends.
	dbCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	results := make([]contacts.SendResult, len(ms))
	bot, err := s.BotByID(ctx, botID)
	if err != nil {
		status, text := contacts.StatusQueued, ""
		if errors.Is(err, ErrBotNotFound) {
			status, text = contacts.StatusFailed, "bot deleted"
		}
		for i, m := range ms {
			results[i] = contacts.SendResult{ID: m.ID, Status: status, Attempts: m.Attempts, Error: text, KeepError: text == ""}
			if status == contacts.StatusQueued {
				results[i].Attempts--
			}
		}
		if ferr := s.finishSends(dbCtx, ms, results); ferr != nil {
			return 0, ferr
		}
		if status == contacts.StatusFailed {
			s.log.WarnContext(ctx, "telegram: messages of a deleted bot failed", "bot_app_id", botID.String(), "messages", len(ms))
			return 0, nil
		}
		return 0, fmt.Errorf("load bot %s: %w", botID, err)
	}
	chats := make([]int64, len(ms))
	msgs := make([]Outgoing, len(ms))
	for i, m := range ms {
		chats[i], msgs[i] = m.ChatID, outgoingOf(m)
	}
	var again time.Duration // earliest retry of a message left queued; 0: none
	var mu sync.Mutex
	var pending []contacts.SendResult
	requeue := func(d time.Duration) {
		d = max(d, 100*time.Millisecond)
		if again == 0 || d < again {
			again = d
		}
	}
	onResult := func(i int, out Outcome) {
		r := s.sendResult(ms[i], out)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case out.Status == OutcomeWait:
			requeue(out.RetryAfter)
		case out.Status == OutcomeDeferred:
			requeue(time.Until(out.Until))
		case r.Status == contacts.StatusQueued: // a retryable failure
			requeue(time.Second << min(max(r.Attempts-1, 0), 8))
		}
		pending = append(pending, r)
	}
	// Results are recorded every sendManyFlush while the batch runs, so that a worker killed
	// mid-batch leaves unrecorded only the sends it had in flight or had just finished.
	flush := func() error {
		mu.Lock()
		rs := pending
		pending = nil
		mu.Unlock()
		return s.finishSends(dbCtx, ms, rs)
	}
	done := make(chan struct{})
	flushErr := make(chan error, 1)
	go func() {
		t := time.NewTicker(sendManyFlush)
		defer t.Stop()
		var err error
		for {
			select {
			case <-t.C:
				if err == nil {
					err = flush()
				}
			case <-done:
				flushErr <- err
				return
			}
		}
	}()
	s.SendBatch(ctx, bot, chats, Outgoing{}, BatchOptions{Interactive: true, Messages: msgs, OnResult: onResult})
	close(done)
	err = <-flushErr
	if err == nil {
		err = flush()
	}
	if err != nil {
		// The messages stay "sending"; the sweep takes them back after SendLease.
		s.log.ErrorContext(ctx, "telegram: batch sent but not recorded", "bot_app_id", bot.ID.String(), "messages", len(ms), "error", err)
		return 0, nil
	}
	return again, nil
}
