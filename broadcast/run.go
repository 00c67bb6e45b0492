package broadcast

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

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/queue"
	"github.com/botfleet/botfleet/telegram"
)

// errBotDeleted is the error of a broadcast (and of its unsent recipients) whose bot was
// deleted before it completed.
const errBotDeleted = "bot deleted"

// writeTimeout bounds the writes that record sends already made; they run even when the
// task's context has ended (shutdown, timeout) so that no sent message is forgotten.
// A write still failing after it (a PostgreSQL outage) leaves the chunk "sending" until the
// sweep gives it back, which may send those recipients again.
const writeTimeout = 20 * time.Second

// HandleRun runs broadcast:run for the broadcast in the payload (RunPayload); a bad payload
// is not retried (asynq.SkipRetry).
//
// A queued or running broadcast is marked running (StartedAt once). The run then claims up
// to ChunkSize due recipients at a time (FOR UPDATE SKIP LOCKED, status sending), sends them
// through telegram.Send with Deps.Senders goroutines, and writes the chunk's results in one
// statement:
//
//   - OutcomeSent: sent, with telegram_message_id and sent_at.
//   - OutcomeWait: queued again, due after RetryAfter; attempts unchanged. The run stops
//     claiming: the bot is paused (429) or its rate slots are far away.
//   - OutcomeDeferred: deferred until Outcome.Until (the next UTC midnight); the run stops,
//     and every other recipient of the broadcast due before then is deferred with it.
//   - OutcomeRetry: attempts+1; beyond Deps.MaxRetries failed with the error, else queued
//     again, due after 1s·2^(attempts-1) (at most 5 min).
//   - OutcomeBlocked, OutcomeFailed: failed with the error (Send marked a blocked contact).
//
// Timing (timing.go), checked with the service clock before each claim: at or after the
// broadcast's ExpiresAt the recipients still waiting become expired and the broadcast
// completes (no claim after it); outside its send Window nothing is claimed and the run asks
// to run again at the next opening; a chunk stops starting sends at the window's closing or
// the expiry. The wait asked for never goes past ExpiresAt.
//
// The run stops when nothing is due, after RunBudget, when the broadcast is cancelled, or
// when ctx ends (recipients not yet sent are given back). If no recipient is left it marks
// the broadcast completed and returns nil; otherwise it returns a *telegram.RetryAfterError
// until the earliest due recipient (at least 200 ms), which the worker turns into a
// re-run without counting a failure. A broadcast that is a draft, paused, cancelled,
// completed, failed or gone is a no-op; a scheduled one whose SendAt is ahead returns a
// *telegram.RetryAfterError until then (at most a minute: earlyRun); a run whose broadcast
// is paused or cancelled while it sends stops starting sends at its next result batch
// and returns nil; one whose bot was deleted becomes failed ("bot deleted") with its
// unsent recipients. Database errors are returned as they are (asynq retries them).
func (s *Service) HandleRun(ctx context.Context, t *asynq.Task) error {
	var p RunPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.BroadcastID == uuid.Nil {
		return fmt.Errorf("decode %s payload: %w", TypeRun, asynq.SkipRetry)
	}
	return s.run(ctx, p.BroadcastID)
}

// run is HandleRun for broadcast id.
func (s *Service) run(ctx context.Context, id uuid.UUID) error {
	log := s.log.With("broadcast_id", id.String())
	b, err := broadcastByID(ctx, s.db, id)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			log.WarnContext(ctx, "broadcast: run of an unknown broadcast ignored")
			return nil
		}
		return err
	}
	logging.Add(ctx, slog.String(logging.KeyTenantID, b.TenantID.String()), slog.String(logging.KeyBotAppID, b.BotID.String()))
	switch b.Status {
	case StatusCancelled, StatusCompleted, StatusFailed, StatusDraft, StatusPaused:
		return nil
	}
	if err := earlyRun(b); err != nil {
		return err // started before its send_at: reschedules itself (control.go)
	}
	bot, err := s.tg.BotByID(ctx, b.BotID)
	if err != nil {
		if apperr.KindOf(err) != apperr.KindNotFound {
			return err
		}
		log.WarnContext(ctx, "broadcast: bot deleted, broadcast failed", "bot_app_id", b.BotID.String())
		return failBroadcast(context.WithoutCancel(ctx), s.db, id, errBotDeleted)
	}
	if bot.Status != "" && bot.Status != telegram.BotActive {
		// A disabled bot, or one whose token Telegram rejected, sends nothing: its broadcast
		// pauses (nothing dropped) and resumes when the bot is active again.
		return s.pauseForBot(ctx, id, "bot "+bot.Status)
	}
	if ok, err := markRunning(ctx, s.db, id); err != nil || !ok {
		return apperr.Classify(err)
	}
	if !b.Materialized {
		start := time.Now()
		if err := materialize(ctx, s.db, id); err != nil {
			return err
		}
		log.InfoContext(ctx, "broadcast: recipients written", "total", b.Total, "took", time.Since(start))
	}

	msg, tpl := messageOf(b) // tpl: the text has variables, rendered per recipient (content.go)
	msg.AllowPaidBroadcast = b.AllowPaidBroadcast
	deadline := time.Now().Add(s.runBudget)
	var waitUntil time.Time // the bot asked us to wait (Wait outcome) until then
	sent := 0
	for ctx.Err() == nil && time.Now().Before(deadline) {
		// Expiry and send window (timing.go): an expired broadcast never claims again, a
		// closed window waits for its opening.
		chunkEnd := minTime(deadline, time.Now().Add(s.chunkBudget))
		g := gateOf(b, s.now())
		if g.expired {
			n, err := expireRecipients(ctx, s.db, id)
			if err != nil {
				return err
			}
			log.InfoContext(ctx, "broadcast: expired", "expired", n, "sent", sent)
			break
		}
		if !g.openAt.IsZero() {
			if u := s.realTime(g.openAt); u.After(waitUntil) {
				waitUntil = u
			}
			break
		}
		if !g.stopAt.IsZero() {
			chunkEnd = minTime(chunkEnd, s.realTime(g.stopAt))
		}
		rows, running, err := claim(ctx, s.db, id, s.chunkSize, tpl != nil, s.now())
		if err != nil {
			return err
		}
		if !running {
			log.InfoContext(ctx, "broadcast: run stopped, broadcast no longer running", "sent", sent)
			return nil
		}
		if len(rows) == 0 {
			break
		}
		cr, err := s.sendChunk(ctx, id, bot, msg, tpl, rows, chunkEnd)
		sent += cr.sent
		if err != nil {
			// The rows not recorded stay "sending" until the sweep gives them back
			// (ClaimLease); those already sent will then be sent again.
			log.ErrorContext(ctx, "broadcast: write results failed", "recipients", len(rows), "sent", cr.sent, "error", err)
			return err
		}
		if cr.stopped {
			log.InfoContext(ctx, "broadcast: run stopped, broadcast no longer running", "sent", sent)
			return nil
		}
		if cr.botInactive != "" {
			return s.pauseForBot(ctx, id, cr.botInactive)
		}
		if cr.waitUntil.After(waitUntil) {
			waitUntil = cr.waitUntil
		}
		if !cr.deferUntil.IsZero() || !cr.waitUntil.IsZero() {
			break
		}
	}

	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	done, err := s.completeAndEmit(fctx, b) // callbacks.go: broadcast.completed
	if err != nil {
		return err
	}
	if done {
		log.InfoContext(ctx, "broadcast: completed", "sent", sent)
		return nil
	}
	left, err := remaining(fctx, s.db, id)
	if err != nil {
		return err
	}
	if left.Waiting == 0 {
		// Cancelled meanwhile, or only recipients claimed by another run (which completes
		// the broadcast) or by a dead worker (HandleSweep gives them back and re-runs).
		return nil
	}
	wait := minRetryAfter
	if left.DueAt != nil {
		wait = max(wait, left.DueAt.Sub(s.now())) // due by the service clock, as claimed
	}
	wait = max(wait, time.Until(waitUntil))
	if !b.ExpiresAt.IsZero() {
		wait = max(min(wait, b.ExpiresAt.Sub(s.now())), minRetryAfter) // expire on time
	}
	return &telegram.RetryAfterError{
		RetryAfter: wait,
		Reason:     fmt.Sprintf("broadcast %s: %d recipients waiting (sent %d in this run)", id, left.Waiting, sent),
	}
}

// writeResultsRetrying writes results (and the daily-limit deferral, see writeResults),
// retrying for up to writeTimeout (even after ctx has ended): the messages are sent, and a
// lost write would send them again.
func (s *Service) writeResultsRetrying(ctx context.Context, id uuid.UUID, rs []result, deferUntil time.Time) error {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	delay := 250 * time.Millisecond
	for {
		err := s.writeResults(wctx, id, rs, deferUntil)
		if err == nil {
			return nil
		}
		s.log.WarnContext(ctx, "broadcast: write results failed, retrying", "broadcast_id", id.String(), "error", err)
		select {
		case <-wctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 4*time.Second)
	}
}

// chunkResult is what sendChunk did with a chunk.
type chunkResult struct {
	sent       int
	waitUntil  time.Time // latest end of a bot-wide wait (429 pause, slots too far), zero if none
	deferUntil time.Time // the daily limit resets then, zero if it was not hit
	stopped    bool      // the broadcast stopped running (paused, cancelled) during the chunk
	// botInactive is the reason when a send found the bot not active (disabled, or its
	// token rejected by a 401): the run pauses the broadcast.
	botInactive string
}

// sendChunk sends msg to the claimed rows of broadcast id through telegram.SendBatch (one
// permit acquirer, up to s.senders sends in flight, the bot's pace shared by all workers)
// and records each row's result as soon as it is known, in small batches (flushEvery rows or
// flushInterval), so that a worker killed mid-chunk leaves unrecorded only the sends that
// were in flight or just finished: only those can be sent twice after the sweep gives the
// chunk back. SendBatch stops starting sends when ctx ends, the chunk's deadline passes, the
// bot is paused or its daily limit is used up; the rows it did not attempt are given back:
// deferred to the reset, or queued after the wait. A send that has started always finishes
// and is recorded. The error is that of a write that failed even after writeTimeout.
//
// With tpl (the text has variables) each row gets its own text rendered from its contact's
// values (personalise); a row whose rendered text does not fit (over 4,096 characters, 1,024
// for a caption) is failed with the reason, without a call to Telegram.
func (s *Service) sendChunk(ctx context.Context, id uuid.UUID, bot telegram.Bot, msg telegram.Outgoing, tpl *telegram.MessageTemplate, rows []claimed, deadline time.Time) (chunkResult, error) {
	var (
		mu  sync.Mutex
		cr  chunkResult
		buf []result
	)
	var msgs []telegram.Outgoing
	if tpl != nil {
		var bad []string
		msgs, bad = personalise(tpl, msg, rows)
		if bad != nil {
			keep, keepMsgs := rows[:0:0], msgs[:0:0]
			for i, r := range rows {
				if bad[i] != "" {
					// Not sent: the attempt counted by the claim is given back.
					buf = append(buf, result{ID: r.ID, Status: RecipientFailed, Attempts: max(r.Attempts-1, 0), ChatID: r.ChatID, Error: bad[i]})
					continue
				}
				keep, keepMsgs = append(keep, r), append(keepMsgs, msgs[i])
			}
			rows, msgs = keep, keepMsgs
		}
	}
	chats := make([]int64, len(rows))
	for i, r := range rows {
		chats[i] = r.ChatID
	}
	ready := make(chan struct{}, 1)
	// bctx stops SendBatch early when a written batch shows the broadcast no longer
	// running (paused, auto-paused or cancelled: afterWrite); started sends still finish.
	bctx, stopBatch := context.WithCancel(ctx)
	defer stopBatch()
	onResult := func(i int, out telegram.Outcome) {
		res := s.resultOf(rows[i], out)
		mu.Lock()
		buf = append(buf, res)
		switch out.Status {
		case telegram.OutcomeSent:
			cr.sent++
		case telegram.OutcomeWait:
			if out.BotInactive && cr.botInactive == "" {
				cr.botInactive = out.Err
			}
			// A busy chat only delays its own recipient; a pause or far slots stop the run.
			if out.RetryAfter > 0 && !out.ChatBusy {
				if u := time.Now().Add(out.RetryAfter); u.After(cr.waitUntil) {
					cr.waitUntil = u
				}
			}
		case telegram.OutcomeDeferred:
			if res.DueAt.After(cr.deferUntil) {
				cr.deferUntil = res.DueAt
			}
		}
		full := len(buf) >= flushEvery || res.Kind != "" && len(buf) >= streakFlushEvery
		mu.Unlock()
		if full {
			select {
			case ready <- struct{}{}:
			default:
			}
		}
	}
	take := func() []result {
		mu.Lock()
		defer mu.Unlock()
		out := buf
		buf = nil
		return out
	}
	done := make(chan struct{})
	var writeErr error
	var flushed sync.WaitGroup
	flushed.Go(func() {
		t := time.NewTicker(flushInterval)
		defer t.Stop()
		for {
			select {
			case <-ready:
			case <-t.C:
			case <-done:
				return
			}
			if rs := take(); len(rs) > 0 && writeErr == nil {
				writeErr = s.writeResultsRetrying(ctx, id, rs, time.Time{})
				if writeErr == nil && !s.recordBatch(ctx, id, rs) {
					mu.Lock()
					cr.stopped = true
					mu.Unlock()
					stopBatch()
				}
			}
		}
	})
	if len(chats) > 0 {
		s.tg.SendBatch(bctx, bot, chats, msg, telegram.BatchOptions{Concurrency: s.senders, Deadline: deadline, Messages: msgs, OnResult: onResult})
	}
	close(done)
	flushed.Wait()
	if writeErr != nil {
		return cr, writeErr
	}
	// The last results; with the daily limit hit, every other recipient due before the
	// reset is deferred with them.
	if rs := take(); len(rs) > 0 || !cr.deferUntil.IsZero() {
		if err := s.writeResultsRetrying(ctx, id, rs, cr.deferUntil); err != nil {
			return cr, err
		}
		s.recordBatch(ctx, id, rs)
	}
	return cr, nil
}

// Result flushing of sendChunk: a batch is written when it has flushEvery rows or every
// flushInterval, whichever comes first.
const (
	flushEvery    = 100
	flushInterval = 500 * time.Millisecond
)

// resultOf maps the Outcome of sending to claimed recipient r to the row to write. The claim
// counted an attempt (r.Attempts includes it); outcomes that sent nothing give it back.
func (s *Service) resultOf(r claimed, out telegram.Outcome) result {
	res := result{ID: r.ID, Attempts: r.Attempts, ChatID: r.ChatID, Error: out.Err}
	if out.ChatID != 0 {
		res.ChatID = out.ChatID
	}
	switch out.Status {
	case telegram.OutcomeSent:
		mid := out.MessageID
		res.Status, res.MessageID, res.Sent, res.Error = RecipientSent, &mid, true, ""
	case telegram.OutcomeWait:
		// Not an attempt: 429 retry_after and rate-limit waits are not retries.
		res.Status, res.KeepError = RecipientQueued, true
		res.Attempts = max(r.Attempts-1, 0)
		res.DueInMS = max(out.RetryAfter, 0).Milliseconds()
	case telegram.OutcomeDeferred:
		res.Status, res.DueAt = RecipientDeferred, out.Until
		res.Attempts = max(r.Attempts-1, 0)
		if res.DueAt.IsZero() {
			res.DueAt = telegram.NextUTCMidnight(s.now())
		}
	case telegram.OutcomeBlocked, telegram.OutcomeFailed:
		res.Status = RecipientFailed
	default: // OutcomeRetry, and anything unknown is treated as retryable
		if res.Attempts > s.maxRetries {
			res.Status = RecipientFailed
		} else {
			res.Status = RecipientQueued
			res.DueInMS = backoff(res.Attempts).Milliseconds()
		}
	}
	if res.Status == RecipientFailed && res.Error == "" {
		res.Error = "send failed"
	}
	if res.Status == RecipientFailed {
		res.Kind = failureKind(out) // auto-pause (control.go)
	}
	return res
}

// backoff is the delay before retry number attempts (≥ 1): 1s·2^(attempts-1), at most
// maxBackoff.
func backoff(attempts int) time.Duration {
	if attempts < 1 {
		attempts = 1
	}
	if attempts > 20 {
		return maxBackoff
	}
	return min(time.Second<<(attempts-1), maxBackoff)
}

// HandleSweep runs broadcast:sweep (periodic): recipients stuck in "sending" for more than
// the claim lease (ClaimLease: their worker died) are queued again (cancelled or failed in a
// cancelled or failed broadcast) and their broadcast gets a new run at once, and every queued or running broadcast with a recipient due
// now, or with nothing left to send, gets its run enqueued, paging through all of them. A
// live run task is left alone; an archived one (its retries ran out, e.g. during a long
// PostgreSQL outage) is replaced (queue.Enqueue), so no broadcast stays stuck. It returns
// the first enqueue error after trying them all.
func (s *Service) HandleSweep(ctx context.Context, _ *asynq.Task) error {
	if s.queue == nil {
		return errors.New("broadcast: sweep needs Deps.Queue")
	}
	released, err := releaseStuck(ctx, s.db, s.stuckAfter)
	if err != nil {
		return err
	}
	var firstErr error
	for _, id := range released {
		// The run that held these recipients died with its worker; asynq recovers its task
		// only after its own lease and recoverer interval (up to 1.5 min). Start another run
		// now: runs of one broadcast never send a recipient twice (they claim with SKIP LOCKED).
		s.log.WarnContext(ctx, "broadcast: released recipients of a dead worker; starting a new run", "broadcast_id", id.String())
		t, err := NewRunTask(id)
		if err != nil {
			return err
		}
		rescueID := fmt.Sprintf("%s:rescue:%d", runTaskID(id), time.Now().UnixNano())
		if _, err := queue.Enqueue(ctx, s.queue, s.insp, t, QueueBroadcast, rescueID, asynq.TaskID(rescueID)); err != nil && firstErr == nil {
			firstErr = err
		}
	}
	if n, err := resumeActiveBots(ctx, s.db); err != nil {
		return err
	} else if n > 0 {
		s.log.InfoContext(ctx, "broadcast: bots active again, their paused broadcasts resumed", "broadcasts", n)
	}
	after := uuid.Nil
	for {
		ids, err := runnable(ctx, s.db, after, s.sweepPage)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if err := s.enqueueRun(ctx, id); err != nil {
				s.log.WarnContext(ctx, "broadcast: sweep could not enqueue run", "broadcast_id", id.String(), "error", err)
				if firstErr == nil {
					firstErr = err
				}
			}
		}
		if len(ids) < s.sweepPage {
			return firstErr
		}
		after = ids[len(ids)-1]
	}
}

// SweepPage is how many broadcasts HandleSweep reads per query.
const SweepPage = 500

// enqueueRun enqueues the run task of broadcast id (queue.Enqueue: a live task is kept, an
// archived or completed one replaced).
func (s *Service) enqueueRun(ctx context.Context, id uuid.UUID) error {
	t, err := NewRunTask(id)
	if err != nil {
		return err
	}
	_, err = queue.Enqueue(ctx, s.queue, s.insp, t, QueueBroadcast, runTaskID(id))
	return err
}

// minTime returns the earlier of a and b.
func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
