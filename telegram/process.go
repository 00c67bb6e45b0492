package telegram

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

// Texts of the built-in command replies (see BotCommands).
const (
	// StopReplyText answers /stop.
	StopReplyText = "You will no longer receive messages from us. Send /start to subscribe again."
)

// StartReplyText returns the answer to /start: a greeting by the sender's first name
// ("there" when Telegram gave none) and the bot's name as the tenant registered it.
func StartReplyText(firstName, botName string) string {
	if strings.TrimSpace(firstName) == "" {
		firstName = "there"
	}
	return fmt.Sprintf("Hi %s! 👋 Welcome to %s. Send /help to see what I can do.", firstName, botName)
}

// HelpReplyText returns the answer to /help: one line per entry of BotCommands.
func HelpReplyText() string {
	var b strings.Builder
	b.WriteString("Here is what I can do:")
	for _, c := range BotCommands {
		fmt.Fprintf(&b, "\n/%s - %s", c.Command, c.Description)
	}
	return b.String()
}

// Event processing settings (ProcessEvents).
const (
	// EventBatchSize is the most events one processing transaction claims.
	EventBatchSize = 200
	// EventPollInterval is how long an idle event processor waits before it looks for
	// events again; Ingest in the same process wakes it sooner.
	EventPollInterval = 25 * time.Millisecond

	// eventBatchTimeout bounds one batch's transaction.
	eventBatchTimeout = 60 * time.Second
	// eventShutdownGrace is how long a batch in progress may still run once its processor's
	// context is cancelled; after that its transaction is rolled back (nothing is lost).
	eventShutdownGrace = 5 * time.Second
	// eventBackoffMin and eventBackoffMax bound the wait after a failed batch
	// (PostgreSQL unreachable), doubling in between.
	eventBackoffMin = 100 * time.Millisecond
	eventBackoffMax = 5 * time.Second
	// eventTxAttempts is how many times a batch's transaction is tried when PostgreSQL
	// aborts it for a deadlock or a serialization failure.
	eventTxAttempts = 3
	// maxCallbacksInFlight bounds the answerCallbackQuery calls of one process in flight.
	maxCallbacksInFlight = 64
	// sendManyMax is the most replies in one telegram:send-many task.
	sendManyMax = 200
	// replyEnqueuers is how many telegram:send-many enqueues of a batch's replies run at once.
	replyEnqueuers = 8
)

// Process errors stored in webhook_events.process_error for events that were skipped or
// failed for good. An event handled normally has "".
const (
	processErrBotDeleted = "bot deleted"
)

// RunEventProcessors runs n event processors (ProcessEvents; n < 1 means 1) until ctx is
// done, then waits for them and returns nil. Run it in every worker process: processors in
// any number of processes share the work through row locks.
func (s *Service) RunEventProcessors(ctx context.Context, n int) error {
	var wg sync.WaitGroup
	for range max(n, 1) {
		wg.Go(func() { _ = s.ProcessEvents(ctx) })
	}
	wg.Wait()
	return nil
}

// ProcessEvents is one event processor: it processes stored webhook events (webhook_events,
// the queue Ingest writes to) until ctx is done and then returns nil.
//
// Each iteration claims up to EventBatchSize unprocessed events, oldest first, of bots that
// are active or deleted (the events of a disabled or invalid_token bot stay unprocessed
// until it is active again: activeBotEventsSQL), in one
// transaction (SELECT ... FOR UPDATE SKIP LOCKED: processors never wait for each other),
// processes them in bulk in that transaction (see processBatch), commits, and only then
// enqueues the replies' telegram:send tasks and answers callback queries. A full batch is
// followed at once by the next claim; otherwise the processor waits EventPollInterval or
// until Ingest in this process stores events.
//
// Nothing is lost: a processor that dies mid-batch takes its transaction with it, so
// PostgreSQL releases the claimed events and another processor claims them. When
// PostgreSQL is unreachable the processor backs off (100 ms doubling to 5 s) and tries
// again. When a batch fails for another reason (a poison event), its events are processed
// one at a time and the one that fails is marked processed with a "failed: ..."
// process_error, so one bad event never blocks the queue.
func (s *Service) ProcessEvents(ctx context.Context) error {
	backoff := time.Duration(0)
	idle := false
	for ctx.Err() == nil {
		if idle && !s.eventsWaiting(ctx) {
			s.waitForEvents(ctx, EventPollInterval)
			continue
		}
		res, err := s.processNext(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			backoff = min(max(2*backoff, eventBackoffMin), eventBackoffMax)
			s.log.WarnContext(ctx, "telegram: event processing failed; retrying", "error", err, "retry_in", backoff.String())
			s.waitForEvents(ctx, backoff)
			continue
		}
		backoff = 0
		switch {
		case res.claimed >= EventBatchSize && res.processed > 0:
			idle = false // more may be waiting: claim again at once
		case res.claimed > 0 && res.processed == 0:
			// Everything claimed waits for another processor's batch of the same chats.
			idle = false
			s.waitForEvents(ctx, EventPollInterval)
		default:
			idle = res.claimed == 0
			if res.claimed < EventBatchSize {
				s.waitForEvents(ctx, EventPollInterval)
			}
		}
	}
	return nil
}

// ProcessPending processes stored events until none is left to claim and returns how
// many it processed. It is ProcessEvents without the waiting, for tests and tools.
func (s *Service) ProcessPending(ctx context.Context) (int, error) {
	total := 0
	for {
		res, err := s.processNext(ctx)
		total += res.processed
		if err != nil {
			return total, err
		}
		if res.claimed == 0 || res.processed == 0 {
			return total, nil
		}
	}
}

// waitForEvents waits d, or less when Ingest in this process stores events or ctx ends.
func (s *Service) waitForEvents(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.in.wake:
	case <-t.C:
	}
}

// eventsWaiting reports whether an unprocessed event may be claimable: one cheap query
// instead of a claim transaction (three round trips) when the processor has been idle.
// It answers true on errors, so that the claim reports them.
func (s *Service) eventsWaiting(ctx context.Context) bool {
	ok, err := s.db.NewSelect().Model((*WebhookEvent)(nil)).Where("processed_at IS NULL").Where(activeBotEventsSQL).Exists(ctx)
	return ok || err != nil
}

// batchResult is what one claim did: events claimed, processed (marked processed, also as
// skipped or failed) and deferred (left for later: an earlier event of the same chat was
// being processed elsewhere).
type batchResult struct {
	claimed, processed, deferred int
}

// postCommit is the work of a batch that must wait for its commit.
type postCommit struct {
	replies   []replyRef
	callbacks []callbackRef
}

type replyRef struct {
	id    uuid.UUID
	botID uuid.UUID
}

type callbackRef struct {
	bot  Bot
	id   string
	text string      // answer text ("" for none): topics.go
	edit *markupEdit // keyboard to update after the answer: topics.go
}

// batchContext returns the context of one batch: detached from ctx so that a shutdown
// does not abort a batch that is about to commit, but cancelled eventShutdownGrace after ctx
// ends, and bounded by eventBatchTimeout.
func batchContext(ctx context.Context) (context.Context, context.CancelFunc) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), eventBatchTimeout)
	stop := context.AfterFunc(ctx, func() {
		t := time.AfterFunc(eventShutdownGrace, cancel)
		context.AfterFunc(bctx, func() { t.Stop() })
	})
	return bctx, func() { stop(); cancel() }
}

// processNext claims and processes one batch; see ProcessEvents.
func (s *Service) processNext(ctx context.Context) (batchResult, error) {
	bctx, cancel := batchContext(ctx)
	defer cancel()
	var ids []int64
	res, post, err := s.runBatch(bctx, func(ctx context.Context, tx bun.Tx) ([]WebhookEvent, error) {
		evs, err := claimEvents(ctx, tx.NewSelect().Where("processed_at IS NULL").Where(activeBotEventsSQL).OrderExpr("id").
			Limit(EventBatchSize).For("UPDATE SKIP LOCKED"))
		ids = ids[:0]
		for _, ev := range evs {
			ids = append(ids, ev.ID)
		}
		return evs, err
	}, true)
	if err == nil {
		s.afterCommit(bctx, post)
		return res, nil
	}
	if s.retryable(bctx, err) || len(ids) == 0 {
		return batchResult{}, err
	}
	s.log.WarnContext(ctx, "telegram: event batch failed; processing its events one by one", "events", len(ids), "error", err)
	return s.processOneByOne(bctx, ids)
}

// processOneByOne processes events ids one transaction each, in order, and marks the one
// whose processing fails (other than for connectivity) processed with a "failed: ..."
// process_error.
func (s *Service) processOneByOne(ctx context.Context, ids []int64) (batchResult, error) {
	var total batchResult
	for _, id := range ids {
		res, post, err := s.runBatch(ctx, func(ctx context.Context, tx bun.Tx) ([]WebhookEvent, error) {
			return claimEvents(ctx, tx.NewSelect().Where("id = ?", id).Where("processed_at IS NULL").For("UPDATE SKIP LOCKED"))
		}, true)
		if err == nil {
			s.afterCommit(ctx, post)
		} else {
			if s.retryable(ctx, err) {
				return total, err
			}
			s.log.ErrorContext(ctx, "telegram: event processing failed for good", "event_id", id, "error", err)
			if merr := s.markFailed(ctx, id, err); merr != nil {
				return total, merr
			}
			res = batchResult{claimed: 1, processed: 1}
		}
		total.claimed += res.claimed
		total.processed += res.processed
		total.deferred += res.deferred
	}
	return total, nil
}

// retryable reports whether a failed batch should be retried as a whole later rather than
// split: ctx ended (shutdown) or PostgreSQL could not be reached.
func (s *Service) retryable(ctx context.Context, err error) bool {
	return ctx.Err() != nil || apperr.KindOf(err) == apperr.KindUnavailable
}

// runBatch runs claim and processBatch in one transaction, retried up to eventTxAttempts
// times on a deadlock or serialization failure.
func (s *Service) runBatch(ctx context.Context, claim func(context.Context, bun.Tx) ([]WebhookEvent, error), deferBusy bool) (batchResult, postCommit, error) {
	var res batchResult
	var post postCommit
	var err error
	for attempt := 1; ; attempt++ {
		err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			evs, err := claim(ctx, tx)
			if err != nil {
				return err
			}
			res, post, err = s.processBatch(ctx, tx, evs, deferBusy)
			return err
		})
		if err == nil || attempt >= eventTxAttempts || !isTxConflict(err) {
			break
		}
	}
	if err != nil {
		return batchResult{}, postCommit{}, apperr.Classify(err)
	}
	return res, post, nil
}

// isTxConflict reports a deadlock (40P01) or serialization failure (40001): PostgreSQL
// aborted the transaction because of a concurrent one; running it again may succeed.
func isTxConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// claimEvents scans the events selected by q (a SELECT on webhook_events).
func claimEvents(ctx context.Context, q *bun.SelectQuery) ([]WebhookEvent, error) {
	var evs []WebhookEvent
	err := q.Model(&evs).Column("id", "tenant_id", "bot_id", "update_id", "update_type", "payload", "received_at").Scan(ctx)
	if err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("claim events: %w", err))
	}
	return evs, nil
}

// afterCommit enqueues the replies' sends as telegram:send-many tasks, each carrying the
// replies of many bots (a batch per bot, at most sendManyMax messages per task:
// HandleSendMany sends the bots' batches at once, so that a processed batch of updates costs
// a task or two rather than one per reply), replyEnqueuers at a time (a failure stops the
// rest: the messages stay queued in PostgreSQL, where the sweep finds them), and answers the
// callback queries in the background (best effort).
func (s *Service) afterCommit(ctx context.Context, post postCommit) {
	var tasks []*asynq.Task
	byBot := map[uuid.UUID][]uuid.UUID{}
	var order []uuid.UUID
	for _, r := range post.replies {
		if _, ok := byBot[r.botID]; !ok {
			order = append(order, r.botID)
		}
		byBot[r.botID] = append(byBot[r.botID], r.id)
	}
	var batches []SendManyBatch
	size := 0
	flushTask := func() {
		if len(batches) == 0 {
			return
		}
		task, err := NewSendManyTask(batches...)
		if err != nil { // json.Marshal of UUIDs cannot fail
			panic(err)
		}
		tasks = append(tasks, task)
		batches, size = nil, 0
	}
	for _, botID := range order {
		ids := byBot[botID]
		for len(ids) > 0 {
			n := min(len(ids), sendManyMax-size)
			batches = append(batches, SendManyBatch{BotID: botID, MessageIDs: ids[:n]})
			size += n
			ids = ids[n:]
			if size >= sendManyMax {
				flushTask()
			}
		}
	}
	flushTask()
	var failed atomic.Bool
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(replyEnqueuers, len(tasks)) {
		wg.Go(func() {
			for !failed.Load() {
				i := int(next.Add(1)) - 1
				if i >= len(tasks) {
					return
				}
				if err := s.enqueueTask(ctx, tasks[i]); err != nil {
					if !failed.Swap(true) {
						s.log.WarnContext(ctx, "telegram: enqueue replies failed; the sweep will retry", "error", err)
					}
					return
				}
			}
		})
	}
	wg.Wait()
	for _, cb := range post.callbacks {
		s.in.callbacks <- struct{}{}
		go func() {
			defer func() { <-s.in.callbacks }()
			s.finishCallback(context.WithoutCancel(ctx), cb, s.log.With("bot_app_id", cb.bot.ID.String())) // topics.go
		}()
	}
}

// HandleUpdate processes one stored webhook event (task TypeUpdate, payload UpdatePayload).
// It is kept for telegram:update tasks enqueued before the events table became the queue
// (ProcessEvents): new events get no task. It processes the event as ProcessEvents would,
// alone in its transaction, unless it is processed already.
//
// Errors: a bad task payload is asynq.SkipRetry; PostgreSQL connectivity errors are returned
// as is so that asynq retries. Other errors are retried too, and on the task's last attempt
// (or outside asynq) they are recorded as the event's process_error and asynq.SkipRetry is
// returned.
func (s *Service) HandleUpdate(ctx context.Context, t *asynq.Task) error {
	var p UpdatePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.EventID <= 0 {
		return fmt.Errorf("decode: %w", asynq.SkipRetry)
	}
	log := s.log.With("event_id", p.EventID)
	_, post, err := s.runBatch(ctx, func(ctx context.Context, tx bun.Tx) ([]WebhookEvent, error) {
		return claimEvents(ctx, tx.NewSelect().Where("id = ?", p.EventID).Where("processed_at IS NULL").For("UPDATE"))
	}, false)
	if err != nil {
		if s.retryable(ctx, err) {
			return fmt.Errorf("process event %d: %w", p.EventID, err)
		}
		retried, ok1 := asynq.GetRetryCount(ctx)
		maxRetry, ok2 := asynq.GetMaxRetry(ctx)
		if ok1 && ok2 && retried < maxRetry {
			return fmt.Errorf("process event %d: %w", p.EventID, err)
		}
		log.ErrorContext(ctx, "telegram: processing failed for good", "error", err)
		if merr := s.markFailed(ctx, p.EventID, err); merr != nil {
			return fmt.Errorf("process event %d: %w (and recording it failed: %v)", p.EventID, err, merr)
		}
		return fmt.Errorf("process event %d: %v: %w", p.EventID, err, asynq.SkipRetry)
	}
	s.afterCommit(ctx, post)
	return nil
}

func mustSendTask(id uuid.UUID) *asynq.Task {
	task, err := NewSendTask(id)
	if err != nil { // json.Marshal of a struct with a UUID cannot fail
		panic(err)
	}
	return task
}

// answerCallback answers callback query id so that the user's client stops its progress
// indicator (core.telegram.org/bots/api#answercallbackquery). Best effort: a failure is
// logged only.
func (s *Service) answerCallback(ctx context.Context, bot Bot, id string, log *slog.Logger) {
	api, err := s.apiBotFor(bot)
	if err != nil {
		log.ErrorContext(ctx, "telegram: open bot token", "error", err)
		return
	}
	if _, err := api.AnswerCallbackQueryWithContext(ctx, id, nil); err != nil {
		log.WarnContext(ctx, "telegram: answerCallbackQuery failed", "error", safeTelegramError(err))
	}
}

// markFailed records cause as the process_error of event id and marks it processed.
func (s *Service) markFailed(ctx context.Context, id int64, cause error) error {
	msg := cause.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	_, err := s.db.NewUpdate().Model((*WebhookEvent)(nil)).
		Set("processed_at = now()").Set("process_error = ?", "failed: "+msg).
		Where("id = ?", id).Where("processed_at IS NULL").Exec(context.WithoutCancel(ctx))
	return apperr.Classify(err)
}

// Kinds of event plans.
const (
	planSkip = iota
	planMessage
	planEdited
	planCallback
	planMember
)

// chatKey is a contact: a chat of a bot.
type chatKey struct {
	botID  uuid.UUID
	chatID int64
}

// eventPlan is what processing one event will do, decided from its payload alone.
type eventPlan struct {
	ev      *WebhookEvent
	bot     *Bot
	kind    int
	procErr string // process_error of a skipped event
	key     chatKey
	ident   contacts.Identity
	seen    time.Time
	msg     *gotgbot.Message           // planMessage
	cbID    string                     // planCallback
	cbData  string                     // planCallback: callback_data
	cbMsgID int64                      // planCallback: message_id of the message with the button (0: none)
	setMenu bool                       // planMessage: /settings (topics.go)
	member  *gotgbot.ChatMemberUpdated // planMember
	block   bool                       // planMember: the new blocked state
	botChat *BotChat                   // my_chat_member in a group or channel (kind planSkip): saveBotChats
}

// contactState follows one contact through a batch.
type contactState struct {
	contact  contacts.Contact
	blocked  bool
	optedOut bool // /stop sets it, /start clears it
	changed  bool // blocked or optedOut changed at least once (sets blocked_at like SetBlocked)
}

// processBatch processes evs inside tx, in bulk:
//   - bots come from the bot cache; events of a deleted bot are marked "bot deleted";
//   - each payload is decoded into a gotgbot.Update; an undecodable one is skipped
//     ("skipped: cannot decode update: ..."), as is a type that is not handled;
//   - with deferBusy, events of a chat that has an earlier unprocessed event outside evs
//     (claimed by another processor right now) are left unprocessed for a later claim, so
//     that a chat's updates take effect in order even across processors;
//   - the rest are taken in update order per bot (update_id, core.telegram.org/bots/api#update),
//     so that /stop then /start ends subscribed;
//   - contacts are upserted with one multi-row INSERT ... ON CONFLICT (several events of a
//     chat merged into one row, the latest identity winning, as one upsert after the other
//     would leave it); inbound messages and replies are inserted with one INSERT; blocked
//     changes with one UPDATE; the events are marked processed with one UPDATE.
//
// The semantics per update are those of DESIGN.md "Inbound update":
//   - message: upserts the contact of the chat (identity from `from`), records the inbound
//     message (text or caption) and answers the commands of BotCommands: /start greets by
//     first name and clears the contact's opted_out and blocked (it can be reached: it just
//     wrote), /help lists the commands, /stop sets opted_out (broadcasts skip the contact
//     with reason "opted_out"; POST /messages/ refuses it) and confirms; the texts are the
//     bot's reply templates (welcome, help, stop, tenant-defined commands, unknown_command:
//     templates.go) or the built-in defaults. Commands addressed to
//     another bot ("/start@other_bot") and plain text get no reply. Replies are queued
//     outbound messages (kind "reply"), sent by the telegram:send task after the commit:
//     Telegram is never called inside the transaction. /settings answers with the
//     notification topics keyboard (topics.go; one query, only for /settings).
//   - edited_message: upserts the contact.
//   - callback_query: upserts the contact and, after the commit, answers the query. A
//     /settings button ("topic:<id>") switches that subscription in the transaction and the
//     answer updates the keyboard (topics.go).
//   - my_chat_member in a private chat: new status "kicked" blocks the contact (the user
//     blocked the bot), "member" unblocks it; other statuses are skipped. In a group,
//     supergroup or channel it records the bot's status and rights in bot_chats
//     (saveBotChats, chats.go), as does a group's migration to a supergroup.
//
// Errors abort the transaction: connectivity errors are apperr.ErrUnavailable.
func (s *Service) processBatch(ctx context.Context, tx bun.Tx, evs []WebhookEvent, deferBusy bool) (batchResult, postCommit, error) {
	res := batchResult{claimed: len(evs)}
	var post postCommit
	if len(evs) == 0 {
		return res, post, nil
	}
	plans, err := s.planEvents(ctx, evs)
	if err != nil {
		return res, post, err
	}
	if deferBusy {
		if plans, res.deferred, err = deferBusyChats(ctx, tx, evs, plans); err != nil {
			return res, post, err
		}
	}
	res.processed = len(plans)
	slices.SortStableFunc(plans, func(a, b *eventPlan) int {
		if c := bytes.Compare(a.ev.BotID[:], b.ev.BotID[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.ev.UpdateID, b.ev.UpdateID)
	})

	// Contacts, one upsert for the batch.
	var ups []contacts.TelegramUpsert
	for _, p := range plans {
		if p.kind != planSkip {
			ups = append(ups, contacts.TelegramUpsert{TenantID: p.ev.TenantID, BotID: p.ev.BotID, Identity: p.ident, SeenAt: p.seen,
				Inbound: p.kind == planMessage})
		}
	}
	cs, err := s.contacts.UpsertManyFromTelegram(ctx, tx, ups)
	if err != nil {
		return res, post, err
	}
	states := make(map[chatKey]*contactState, len(cs))
	for _, c := range cs {
		states[chatKey{c.BotID, c.TelegramChatID}] = &contactState{contact: c, blocked: c.Blocked, optedOut: c.OptedOut}
	}

	// Reply templates of the batch's bots: cached, or one query for those not cached.
	tpls, err := s.templatesFor(ctx, tx, plans)
	if err != nil {
		return res, post, err
	}

	// Walk the events in order: messages, replies, blocked changes, callbacks.
	var msgs, settings []contacts.Message
	for _, p := range plans {
		if p.kind == planSkip {
			continue
		}
		st := states[p.key]
		if st == nil {
			return res, post, fmt.Errorf("contact of chat %d of bot %s missing after upsert", p.key.chatID, p.key.botID)
		}
		switch p.kind {
		case planMessage:
			reply, replyMode, err := s.onMessage(ctx, tx, p, st, tpls[p.ev.BotID])
			if err != nil {
				return res, post, err
			}
			updateID := p.ev.UpdateID
			text := p.msg.Text
			if text == "" {
				text = p.msg.Caption
			}
			msgs = append(msgs, contacts.Message{
				TenantID: p.ev.TenantID, BotID: p.ev.BotID, ContactID: &st.contact.ID, ChatID: p.msg.Chat.Id,
				Direction: contacts.DirectionInbound, Kind: contacts.KindInbound, Status: contacts.StatusReceived,
				Text: text, UpdateID: &updateID, Inbox: InboxFlag(p.bot, text),
				Media: mediaOf(p.msg), // media.go
			})
			if reply != "" {
				out := contacts.Message{
					ID: contacts.NewMessageID(), TenantID: p.ev.TenantID, BotID: p.ev.BotID, ContactID: &st.contact.ID, ChatID: p.msg.Chat.Id,
					Direction: contacts.DirectionOutbound, Kind: contacts.KindReply, Status: contacts.StatusQueued, Text: reply,
					ParseMode: replyMode,
				}
				if p.setMenu { // topics.go
					if err := s.settingsReply(ctx, tx, &out); err != nil {
						return res, post, err
					}
					settings = append(settings, out)
				}
				msgs = append(msgs, out)
				post.replies = append(post.replies, replyRef{id: out.ID, botID: p.ev.BotID})
			}
		case planCallback:
			cb := callbackRef{bot: *p.bot, id: p.cbID}
			if isTopicCallback(p.cbData) { // topics.go
				if err := s.onTopicCallback(ctx, tx, p, st, &cb); err != nil {
					return res, post, err
				}
			}
			post.callbacks = append(post.callbacks, cb)
		case planMember:
			if st.blocked != p.block {
				st.blocked, st.changed = p.block, true
			}
			s.log.InfoContext(ctx, "telegram: contact membership changed", "bot_app_id", p.ev.BotID.String(), "update_id", p.ev.UpdateID,
				"chat_id", p.key.chatID, "blocked", p.block)
		}
	}
	if err := s.contacts.InsertMessages(ctx, tx, msgs); err != nil {
		return res, post, err
	}
	if err := saveReplyContent(ctx, tx, settings); err != nil { // topics.go
		return res, post, err
	}
	if err := s.contacts.TouchConversations(ctx, tx, msgs); err != nil { // team inbox: contacts/inbox.go
		return res, post, err
	}
	var changes []contacts.BlockedChange
	for _, c := range cs {
		if st := states[chatKey{c.BotID, c.TelegramChatID}]; st.changed {
			changes = append(changes, contacts.BlockedChange{ContactID: c.ID, BotID: c.BotID, Blocked: st.blocked, OptedOut: st.optedOut})
		}
	}
	if _, err := s.contacts.SetBlockedMany(ctx, tx, changes); err != nil {
		return res, post, err
	}
	if err := s.emitBatchEvents(ctx, tx, msgs, cs, states); err != nil { // callbacks.go
		return res, post, err
	}
	if err := saveBotChats(ctx, tx, plans); err != nil { // chats.go
		return res, post, err
	}
	if err := markProcessed(ctx, tx, plans); err != nil {
		return res, post, err
	}
	return res, post, nil
}

// onMessage applies the commands of message plan p to its contact's state and returns the
// reply text ("" for none) and its parse mode: the bot's reply template of the command
// rendered for the contact, or the built-in default (commandReply, templates_cache.go).
// Account linking (/start <link token>, /link, /status: linkCommand, linking.go) may run a
// query in tx; other messages cost none.
func (s *Service) onMessage(ctx context.Context, tx bun.Tx, p *eventPlan, st *contactState, tpls *botTemplates) (string, string, error) {
	cmd, args, ok := parseCommand(p.msg, p.bot.Username)
	if !ok {
		return "", "", nil
	}
	switch cmd {
	case "start":
		if st.blocked || st.optedOut {
			st.blocked, st.optedOut, st.changed = false, false, true
			s.log.Info("telegram: contact resubscribed with /start", "bot_app_id", p.ev.BotID.String(),
				"update_id", p.ev.UpdateID, "chat_id", p.key.chatID)
		}
	case "stop":
		if !st.optedOut {
			st.optedOut, st.changed = true, true
		}
		s.log.Info("telegram: contact opted out with /stop", "bot_app_id", p.ev.BotID.String(),
			"update_id", p.ev.UpdateID, "chat_id", p.key.chatID)
	case SettingsCommand: // topics.go: processBatch attaches the keyboard
		p.setMenu = true
		return SettingsReplyText, "", nil
	}
	if text, mode, handled, err := s.linkCommand(ctx, tx, p, st, cmd, args, tpls); handled || err != nil {
		return text, mode, err
	}
	text, mode := s.commandReply(p, &st.contact, cmd, tpls)
	return text, mode, nil
}

// planEvents decides what each event will do (see processBatch).
func (s *Service) planEvents(ctx context.Context, evs []WebhookEvent) ([]*eventPlan, error) {
	bots := map[uuid.UUID]*Bot{}
	plans := make([]*eventPlan, 0, len(evs))
	updates := make([]gotgbot.Update, len(evs))
	for i := range evs {
		ev := &evs[i]
		bot, ok := bots[ev.BotID]
		if !ok {
			b, err := s.in.bots.Get(ctx, ev.BotID)
			switch {
			case err == nil && b.DeletedAt.IsZero():
				bot = &b
			case err == nil, errors.Is(err, ErrBotNotFound):
			default:
				return nil, err
			}
			bots[ev.BotID] = bot
		}
		p := &eventPlan{ev: ev, bot: bot}
		plans = append(plans, p)
		if bot == nil {
			p.procErr = processErrBotDeleted
			continue
		}
		u := &updates[i]
		if err := json.Unmarshal(ev.Payload, u); err != nil {
			// Permanent: the same bytes will never decode. Keep the raw payload, move on.
			s.log.WarnContext(ctx, "telegram: undecodable update", "bot_app_id", ev.BotID.String(), "update_id", ev.UpdateID, "error", err)
			p.procErr = "skipped: cannot decode update: " + err.Error()
			continue
		}
		planUpdate(p, u)
	}
	return plans, nil
}

// maxUpdateDate is the latest Unix time taken from an update's date field (9999-12-31): a
// later one is not a real date, and PostgreSQL could not store it (the event's whole batch
// would fail), so the time of processing is used instead.
const maxUpdateDate = 253402300799

// planUpdate fills p from its decoded update u.
func planUpdate(p *eventPlan, u *gotgbot.Update) {
	contact := func(chat gotgbot.Chat, from *gotgbot.User, date int64) {
		p.key = chatKey{p.ev.BotID, chat.Id}
		p.ident = contacts.Identity{ChatID: chat.Id}
		if from != nil {
			p.ident.UserID, p.ident.Username, p.ident.FirstName, p.ident.LastName, p.ident.LanguageCode =
				from.Id, from.Username, from.FirstName, from.LastName, from.LanguageCode
		}
		p.seen = time.Now()
		if date > 0 && date <= maxUpdateDate {
			p.seen = time.Unix(date, 0)
		}
	}
	switch {
	case u.Message != nil:
		p.kind, p.msg = planMessage, u.Message
		contact(u.Message.Chat, u.Message.From, u.Message.Date)
	case u.EditedMessage != nil:
		p.kind = planEdited
		contact(u.EditedMessage.Chat, u.EditedMessage.From, u.EditedMessage.Date)
	case u.CallbackQuery != nil:
		cq := u.CallbackQuery
		chat := gotgbot.Chat{Id: cq.From.Id, Type: gotgbot.ChatTypePrivate}
		if cq.Message != nil {
			chat = cq.Message.GetChat()
		}
		p.kind, p.cbID, p.cbData = planCallback, cq.Id, cq.Data
		if cq.Message != nil {
			p.cbMsgID = cq.Message.GetMessageId()
		}
		contact(chat, &cq.From, 0)
	case u.MyChatMember != nil:
		cm := u.MyChatMember
		if cm.Chat.Type != gotgbot.ChatTypePrivate {
			// A group, supergroup or channel: recorded in bot_chats (chats.go), no contact.
			bc, procErr := botChatOf(p.ev.TenantID, p.ev.BotID, cm)
			if procErr != "" {
				p.procErr = procErr
				return
			}
			p.botChat = &bc
			return
		}
		if cm.NewChatMember == nil {
			p.procErr = "skipped: my_chat_member without new_chat_member"
			return
		}
		switch status := cm.NewChatMember.GetStatus(); status {
		case "kicked":
			p.block = true
		case "member":
			p.block = false
		default:
			p.procErr = "skipped: my_chat_member status " + status + " is not handled"
			return
		}
		p.kind, p.member = planMember, cm
		contact(cm.Chat, &cm.From, cm.Date)
	default:
		p.procErr = "skipped: update type " + p.ev.UpdateType + " is not handled"
	}
}

// eventChatSQL extracts an event's chat id (as text) from its payload, with the precedence
// of planUpdate: message, edited_message, callback_query (its message's chat, else its
// sender), my_chat_member.
const eventChatSQL = `COALESCE(payload->'message'->'chat'->>'id', payload->'edited_message'->'chat'->>'id',
	payload->'callback_query'->'message'->'chat'->>'id', payload->'callback_query'->'from'->>'id',
	payload->'my_chat_member'->'chat'->>'id')`

// deferBusyChats removes from plans the events of chats that have an unprocessed event
// with a smaller id outside evs. Such an event is being processed by another processor
// right now (a claim takes the oldest unlocked events, so it would otherwise be in evs), or
// was committed late; processing the later events first could apply a chat's updates out of
// order (a /start before the /stop that preceded it). The deferred events stay unprocessed;
// their locks go with this transaction and a later claim takes them. It returns the plans
// kept and the number deferred.
func deferBusyChats(ctx context.Context, tx bun.Tx, evs []WebhookEvent, plans []*eventPlan) ([]*eventPlan, int, error) {
	maxID := int64(0)
	ids := make([]int64, 0, len(evs))
	botSet := map[uuid.UUID]struct{}{}
	for _, p := range plans {
		if p.kind != planSkip {
			botSet[p.ev.BotID] = struct{}{}
		}
	}
	for _, ev := range evs {
		ids = append(ids, ev.ID)
		maxID = max(maxID, ev.ID)
	}
	if len(botSet) == 0 {
		return plans, 0, nil
	}
	bots := make([]uuid.UUID, 0, len(botSet))
	for id := range botSet {
		bots = append(bots, id)
	}
	var busy []struct {
		BotID uuid.UUID
		Chat  *string
	}
	err := tx.NewRaw(`SELECT bot_id, `+eventChatSQL+` AS chat FROM webhook_events
		WHERE processed_at IS NULL AND id < ? AND id NOT IN (?) AND bot_id IN (?)`,
		maxID, bun.List(ids), bun.List(bots)).Scan(ctx, &busy)
	if err != nil && !database.IsNoRows(err) {
		return nil, 0, apperr.Classify(fmt.Errorf("find busy chats: %w", err))
	}
	if len(busy) == 0 {
		return plans, 0, nil
	}
	busyKeys := make(map[chatKey]struct{}, len(busy))
	for _, b := range busy {
		if b.Chat == nil {
			continue
		}
		if chat, err := strconv.ParseInt(*b.Chat, 10, 64); err == nil {
			busyKeys[chatKey{b.BotID, chat}] = struct{}{}
		}
	}
	kept := plans[:0]
	deferred := 0
	for _, p := range plans {
		if _, ok := busyKeys[p.key]; ok && p.kind != planSkip {
			deferred++
			continue
		}
		kept = append(kept, p)
	}
	return kept, deferred, nil
}

// markProcessed marks the events of plans processed, with their process_error, in one
// UPDATE.
func markProcessed(ctx context.Context, tx bun.Tx, plans []*eventPlan) error {
	if len(plans) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString("UPDATE webhook_events AS e SET processed_at = now(), process_error = v.err FROM (VALUES ")
	args := make([]any, 0, 2*len(plans))
	for i, p := range plans {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?::bigint, ?::text)")
		args = append(args, p.ev.ID, p.procErr)
		observeLag(p.ev) // metrics.go
	}
	q.WriteString(") AS v (id, err) WHERE e.id = v.id")
	if _, err := tx.NewRaw(q.String(), args...).Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("mark events processed: %w", err))
	}
	return nil
}

// parseCommand returns the command of msg, lower-cased and without its "/" and "@botname"
// suffix, and the rest of the text (a /start deep-link payload, for example). ok is false
// when msg is not a command (no bot_command entity at offset 0) or names another bot
// (core.telegram.org/bots/features#commands).
func parseCommand(msg *gotgbot.Message, botUsername string) (cmd, args string, ok bool) {
	text := msg.Text
	if !strings.HasPrefix(text, "/") {
		return "", "", false
	}
	hasEntity := false
	for _, e := range msg.Entities {
		if e.Type == "bot_command" && e.Offset == 0 {
			hasEntity = true
			break
		}
	}
	if !hasEntity {
		return "", "", false
	}
	token, rest, _ := strings.Cut(text, " ")
	if i := strings.IndexAny(token, "\n\t"); i >= 0 {
		token, rest = token[:i], token[i+1:]+" "+rest
	}
	cmd = token[1:]
	if name, target, found := strings.Cut(cmd, "@"); found {
		if !strings.EqualFold(target, botUsername) {
			return "", "", false
		}
		cmd = name
	}
	if cmd == "" {
		return "", "", false
	}
	return strings.ToLower(cmd), strings.TrimSpace(rest), true
}
