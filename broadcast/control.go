package broadcast

// The broadcast lifecycle (issue 7, "Control and visibility"):
//
//	draft ──Send──▶ scheduled ──(send_at reached, a worker runs it)──▶ running ──▶ completed
//	                    │  ▲                                            │  ▲
//	                    ▼  │ Resume (send_at in the future)      Pause  ▼  │ Resume, RetryFailed
//	                    paused ◀────────────────────────────────────────┘
//	draft, scheduled, running, paused ──Cancel──▶ cancelled
//	scheduled, running ──(bot deleted)──▶ failed
//	completed, cancelled, failed, paused ──RetryFailed──▶ running (failed recipients only, cycle+1)
//
// Every other transition is a 409 whose code names the current state ("broadcast_completed",
// …; stateConflict). A paused broadcast's runs stop claiming recipients: the sends in flight
// finish and are recorded, the rest stay queued. Auto-pause (afterWrite) pauses a running
// broadcast after MaxConsecutiveErrors consecutive failed recipients with the same bot-wide
// error (failureKind).

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/queue"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// Auto-pause limits (NewBroadcast.MaxConsecutiveErrors).
const (
	// DefaultMaxConsecutiveErrors is the auto-pause threshold when none is given.
	DefaultMaxConsecutiveErrors = 50
	// MaxMaxConsecutiveErrors is the largest threshold accepted (the smallest is 1).
	MaxMaxConsecutiveErrors = 10_000
)

// Errors of the lifecycle (409 apperr.Conflict). Invalid transitions other than these are
// stateConflict errors whose code names the current state.
var (
	// ErrNotEditable answers PUT on a broadcast that is neither a draft nor scheduled;
	// Details {"status": <current status>}.
	ErrNotEditable = apperr.Conflict("broadcast_not_editable", "only a draft or scheduled broadcast can be edited")
	// ErrNothingFailed answers RetryFailed when no recipient of the broadcast has failed.
	ErrNothingFailed = apperr.Conflict("broadcast_nothing_failed", "no recipient of this broadcast has failed")
)

// stateConflict is the 409 of action on a broadcast in status: code "broadcast_<status>"
// (e.g. "broadcast_completed"), a message naming the states that allow it, and Details
// {"status": status}.
func stateConflict(action, status string, allowed ...string) error {
	return apperr.Conflict("broadcast_"+status, "").
		WithMessage("cannot %s a %s broadcast (only %s)", action, status, strings.Join(allowed, " or ")).
		WithDetails(map[string]any{"status": status})
}

// Control is the lifecycle part of a Broadcast (embedded; columns of broadcasts).
type Control struct {
	// SendAt is when the broadcast may start; zero means at once.
	SendAt time.Time `bun:",nullzero"`
	// PauseReason says why the broadcast was paused: "" for a pause through the API, the
	// auto-pause reason ("401 Unauthorized after 50 consecutive failures"), or the reason
	// given to Pause. Cleared by Resume and RetryFailed.
	PauseReason string `bun:",notnull"`
	// PausedAt is when it was last paused; zero when it is not paused.
	PausedAt time.Time `bun:",nullzero"`
	// MaxConsecutiveErrors is the auto-pause threshold (1-10000, default 50).
	MaxConsecutiveErrors int `bun:",notnull,default:50"`
	// ErrorStreak counts the consecutive failed recipients whose failure kind is
	// ErrorStreakKind, across runs and workers; a sent recipient resets it.
	ErrorStreak     int    `bun:",notnull"`
	ErrorStreakKind string `bun:",notnull"`
	// Cycle is the attempt cycle: 1, plus one per RetryFailed.
	Cycle int `bun:",notnull,default:1"`
	// RateAt, RateSent and RatePrev are the send-rate counter: recipients sent in the 60 s
	// window starting at RateAt, and in the window before it (see Rate).
	RateAt   time.Time `bun:",nullzero"`
	RateSent int       `bun:",notnull"`
	RatePrev int       `bun:",notnull"`
}

// rateWindow is the window of the send-rate counter.
const rateWindow = 60 * time.Second

// Rate returns the broadcast's recipients sent per second over about the last minute at
// now (a sliding estimate from two 60 s counters written once per result batch; 0 when
// nothing was sent in the last two minutes). startedAt shortens the span of a broadcast
// that started less than a minute ago.
func (c Control) Rate(now, startedAt time.Time) float64 {
	if c.RateAt.IsZero() {
		return 0
	}
	elapsed := now.Sub(c.RateAt)
	prev, cur := float64(c.RatePrev), float64(c.RateSent)
	switch {
	case elapsed >= 2*rateWindow:
		return 0
	case elapsed >= rateWindow:
		prev, cur, elapsed = cur, 0, elapsed-rateWindow
	case elapsed < 0:
		elapsed = 0
	}
	frac := float64(rateWindow-elapsed) / float64(rateWindow)
	span := rateWindow
	if !startedAt.IsZero() && now.Sub(startedAt) < span {
		span = max(now.Sub(startedAt), time.Second)
	}
	return (prev*frac + cur) / span.Seconds()
}

// ETA is when a running broadcast is expected to have sent its pending recipients at its
// current Rate; nil when it is not running, nothing is pending or the rate is 0.
func ETA(b Broadcast, n Counts, now time.Time) *time.Time {
	if b.Status != StatusRunning || n.Pending == 0 {
		return nil
	}
	rate := b.Rate(now, b.StartedAt)
	if rate <= 0 {
		return nil
	}
	t := now.Add(time.Duration(float64(n.Pending) / rate * float64(time.Second))).UTC().Truncate(time.Second)
	return &t
}

// Schedule is the lifecycle part of NewBroadcast (embedded).
type Schedule struct {
	// Draft: true saves the broadcast as a draft (never sent until Send); false or nil
	// schedules it. In Update, nil keeps the current state (draft or scheduled).
	Draft *bool
	// SendAt: the broadcast is not sent before this time; nil or a time in the past means
	// at once (stored as now).
	SendAt *time.Time
	// MaxConsecutiveErrors is the auto-pause threshold: 1-10000; nil means
	// DefaultMaxConsecutiveErrors.
	MaxConsecutiveErrors *int
}

// validateSchedule checks MaxConsecutiveErrors. Errors: invalid_field max_consecutive_errors.
func (sc Schedule) validateSchedule() error {
	if sc.MaxConsecutiveErrors != nil {
		return validate.IntRange("max_consecutive_errors", int64(*sc.MaxConsecutiveErrors), 1, MaxMaxConsecutiveErrors)
	}
	return nil
}

// applySchedule sets b's lifecycle fields from sc for a new broadcast: status draft or scheduled,
// SendAt (a past time becomes now), the threshold and cycle 1.
func (sc Schedule) applySchedule(b *Broadcast) {
	if sc.Draft != nil && *sc.Draft {
		b.Status = StatusDraft
	} else if b.Status == "" || b.Status == StatusDraft && sc.Draft != nil {
		b.Status = StatusScheduled
	}
	b.SendAt = time.Time{}
	if sc.SendAt != nil {
		b.SendAt = sc.SendAt.UTC()
		if now := time.Now().UTC(); b.SendAt.Before(now) {
			b.SendAt = now
		}
	}
	b.MaxConsecutiveErrors = DefaultMaxConsecutiveErrors
	if sc.MaxConsecutiveErrors != nil {
		b.MaxConsecutiveErrors = *sc.MaxConsecutiveErrors
	}
	if b.Cycle == 0 {
		b.Cycle = 1
	}
}

// startRunOf enqueues the run of b unless it is a draft: at once, or at b.SendAt
// (asynq ProcessAt). Failures are logged and left to HandleSweep.
func (s *Service) startRunOf(ctx context.Context, b Broadcast) {
	if s.queue == nil || b.Status == StatusDraft {
		return
	}
	if err := s.enqueueRunAt(ctx, b.ID, b.SendAt, false); err != nil {
		s.log.WarnContext(ctx, "broadcast: enqueue run failed; the sweep will retry", "broadcast_id", b.ID, "error", err)
	}
}

// enqueueRunAt enqueues the run task of broadcast id to be processed at (at once when at
// is zero or past). With replace, a run task already waiting (scheduled for the old send_at,
// or retrying later) is deleted first so that the new time counts; an active one is left
// (it reads the broadcast again when it claims, and a run that starts early reschedules
// itself, see earlyRun).
func (s *Service) enqueueRunAt(ctx context.Context, id uuid.UUID, at time.Time, replace bool) error {
	if s.queue == nil {
		return nil
	}
	if replace && s.insp != nil {
		if err := s.insp.DeleteTask(QueueBroadcast, runTaskID(id)); err != nil &&
			!errors.Is(err, asynq.ErrTaskNotFound) && !errors.Is(err, asynq.ErrQueueNotFound) {
			s.log.InfoContext(ctx, "broadcast: run task not replaced", "broadcast_id", id, "error", err)
		}
	}
	t, err := NewRunTask(id)
	if err != nil {
		return err
	}
	var opts []asynq.Option
	if at.After(time.Now()) {
		opts = append(opts, asynq.ProcessAt(at))
	}
	_, err = queue.Enqueue(ctx, s.queue, s.insp, t, QueueBroadcast, runTaskID(id), opts...)
	return err
}

// maxEarlyWait is the longest a run that started before its broadcast's send_at asks to
// wait before looking again (so that a send_at moved earlier by an Update that could not
// replace an active run task is honoured within it).
const maxEarlyWait = time.Minute

// earlyRun returns the *telegram.RetryAfterError of a run of scheduled broadcast b that
// started before b.SendAt (nil when it may start): the run reschedules itself.
func earlyRun(b Broadcast) error {
	if b.Status != StatusScheduled {
		return nil
	}
	wait := time.Until(b.SendAt)
	if wait <= 0 {
		return nil
	}
	return &telegram.RetryAfterError{
		RetryAfter: min(wait, maxEarlyWait),
		Reason:     fmt.Sprintf("broadcast %s is scheduled for %s", b.ID, b.SendAt.UTC().Format(time.RFC3339)),
	}
}

// Update replaces the content, audience and schedule of the tenant's draft or scheduled
// broadcast id with nb, validated exactly as by Create (same errors), and answers it with
// its counts. The recipients are selected again (the broadcast's rows are rewritten in one
// transaction, keeping its id and created_at). nb.Draft nil keeps the state; true makes it a
// draft, false schedules it. A scheduled broadcast's run is moved to the new SendAt.
// Errors: Create's, ErrNotFound (404), ErrNotEditable (409, Details {"status"}) for any
// other state, apperr.ErrUnavailable (503).
func (s *Service) Update(ctx context.Context, tenantID, id uuid.UUID, nb NewBroadcast) (Broadcast, Counts, error) {
	ids, err := validateNew(&nb)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	if err := validateTiming(&nb, nb.sendAtOrZero(), s.now()); err != nil {
		return Broadcast{}, Counts{}, err
	}
	bot, err := s.tg.BotForTenant(ctx, tenantID, nb.BotID)
	if err != nil {
		if apperr.KindOf(err) == apperr.KindNotFound {
			// Another tenant's broadcast id must look missing whatever the body says.
			if _, gerr := getBroadcast(ctx, s.db, tenantID, id); gerr != nil {
				return Broadcast{}, Counts{}, gerr
			}
		}
		return Broadcast{}, Counts{}, err
	}
	if nb.Segment == nil {
		if _, err := getBroadcast(ctx, s.db, tenantID, id); err != nil {
			return Broadcast{}, Counts{}, err
		}
		unknown, otherBot, err := foreignRecipients(ctx, s.db, tenantID, bot.ID, ids)
		if err != nil {
			return Broadcast{}, Counts{}, err
		}
		if len(unknown) > 0 {
			return Broadcast{}, Counts{}, idsError(ErrUnknownRecipients, unknown)
		}
		if len(otherBot) > 0 {
			return Broadcast{}, Counts{}, idsError(ErrRecipientsNotOfBot, otherBot)
		}
	}
	var b Broadcast
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		old, err := lockBroadcast(ctx, tx, tenantID, id)
		if err != nil {
			return err
		}
		if old.Status != StatusDraft && old.Status != StatusScheduled {
			return ErrNotEditable.WithMessage("only a draft or scheduled broadcast can be edited; this one is %s", old.Status).
				WithDetails(map[string]any{"status": old.Status})
		}
		if err := checkTopic(ctx, tx, tenantID, nb.Topic); err != nil { // topic.go
			return err
		}
		if _, err := tx.NewDelete().Model((*Broadcast)(nil)).Where("id = ?", id).Exec(ctx); err != nil {
			return fmt.Errorf("replace broadcast: %w", err)
		}
		b = Broadcast{
			ID: old.ID, TenantID: tenantID, BotID: bot.ID, Name: nb.Name, Platform: nb.Platform,
			MessageText: nb.MessageText, ParseMode: nb.ParseMode, Status: old.Status,
			Total: len(ids), Segment: nb.Segment, CreatedAt: old.CreatedAt, Materialized: true,
			ExpiresAt: nb.ExpiresAt, Window: nb.Window, AllowPaidBroadcast: nb.AllowPaidBroadcast,
		}
		b.Content = contentOf(nb.Content)
		b.Topic = nb.Topic
		nb.applySchedule(&b)
		switch {
		case nb.Segment != nil:
			return insertSegmentBroadcast(ctx, tx, &b)
		case len(ids) <= s.syncRecipients:
			return insertBroadcast(ctx, tx, &b, ids)
		default:
			return insertAudience(ctx, tx, &b, ids)
		}
	})
	if err != nil {
		return Broadcast{}, Counts{}, apperr.Classify(err)
	}
	if b.Status == StatusScheduled {
		if err := s.enqueueRunAt(ctx, b.ID, b.SendAt, true); err != nil {
			s.log.WarnContext(ctx, "broadcast: enqueue run failed; the sweep will retry", "broadcast_id", b.ID, "error", err)
		}
	}
	return s.withCounts(ctx, b)
}

// withCounts answers b with its counts.
func (s *Service) withCounts(ctx context.Context, b Broadcast) (Broadcast, Counts, error) {
	c, err := countsOfBroadcast(ctx, s.db, b)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	return b, c, nil
}

// transition runs change on the tenant's broadcast id locked FOR UPDATE in a transaction and
// answers the broadcast (as change left it) with its counts.
func (s *Service) transition(ctx context.Context, tenantID, id uuid.UUID, change func(ctx context.Context, tx bun.Tx, b *Broadcast) error) (Broadcast, Counts, error) {
	var b Broadcast
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if b, err = lockBroadcast(ctx, tx, tenantID, id); err != nil {
			return err
		}
		return change(ctx, tx, &b)
	})
	if err != nil {
		return Broadcast{}, Counts{}, apperr.Classify(err)
	}
	return s.withCounts(ctx, b)
}

// setStatus writes b's status with the extra SET clauses (bun query, args) and reloads b.
func setStatus(ctx context.Context, tx bun.Tx, b *Broadcast, status string, sets ...string) error {
	q := tx.NewUpdate().Model(b).Set("status = ?", status).Set("updated_at = now()")
	for _, s := range sets {
		q = q.Set(s)
	}
	if _, err := q.WherePK().Returning("*").Exec(ctx); err != nil {
		return fmt.Errorf("set broadcast %s: %w", status, err)
	}
	return nil
}

// Send schedules the tenant's draft broadcast id: it becomes scheduled and is sent at its
// SendAt (at once when none or past: SendAt becomes now). Errors: ErrNotFound (404), a
// stateConflict 409 ("broadcast_<status>") when it is not a draft, apperr.ErrUnavailable.
func (s *Service) Send(ctx context.Context, tenantID, id uuid.UUID) (Broadcast, Counts, error) {
	b, c, err := s.transition(ctx, tenantID, id, func(ctx context.Context, tx bun.Tx, b *Broadcast) error {
		if b.Status != StatusDraft {
			return stateConflict("send", b.Status, StatusDraft)
		}
		return setStatus(ctx, tx, b, StatusScheduled, "send_at = GREATEST(send_at, now())")
	})
	if err == nil {
		if err := s.enqueueRunAt(ctx, b.ID, b.SendAt, true); err != nil {
			s.log.WarnContext(ctx, "broadcast: enqueue run failed; the sweep will retry", "broadcast_id", b.ID, "error", err)
		}
	}
	return b, c, err
}

// TenantPause pauses the tenant's running or scheduled broadcast id (POST
// /broadcast/{id}/pause): its runs stop claiming recipients; the sends in flight finish and
// are recorded; everything not yet sent stays pending until Resume. Pausing a paused
// broadcast changes nothing. Errors: ErrNotFound (404), a stateConflict 409 for a draft or
// an ended broadcast, apperr.ErrUnavailable (503).
func (s *Service) TenantPause(ctx context.Context, tenantID, id uuid.UUID) (Broadcast, Counts, error) {
	return s.transition(ctx, tenantID, id, func(ctx context.Context, tx bun.Tx, b *Broadcast) error {
		switch b.Status {
		case StatusPaused:
			return nil
		case StatusRunning, StatusScheduled:
			return setStatus(ctx, tx, b, StatusPaused, "paused_at = now()", "pause_reason = ''")
		}
		return stateConflict("pause", b.Status, StatusRunning, StatusScheduled)
	})
}

// Pause pauses broadcast id whatever its tenant (for other packages: e.g. a bot whose token
// was revoked pauses its broadcasts) with reason as its PauseReason: a running or scheduled
// broadcast becomes paused; its runs stop claiming. Errors: ErrNotFound, a stateConflict
// 409 when it is in another state (already paused included), apperr.ErrUnavailable.
func (s *Service) Pause(ctx context.Context, id uuid.UUID, reason string) error {
	res, err := s.db.NewUpdate().Model((*Broadcast)(nil)).
		Set("status = ?", StatusPaused).Set("pause_reason = ?", reason).
		Set("paused_at = now()").Set("updated_at = now()").
		Where("id = ?", id).Where("status IN (?, ?)", StatusRunning, StatusScheduled).Exec(ctx)
	if err != nil {
		return apperr.Classify(fmt.Errorf("pause broadcast: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 1 {
		s.log.InfoContext(ctx, "broadcast: paused", "broadcast_id", id, "reason", reason)
		return nil
	}
	b, err := broadcastByID(ctx, s.db, id)
	if err != nil {
		return err
	}
	return stateConflict("pause", b.Status, StatusRunning, StatusScheduled)
}

// PauseBotBroadcasts pauses every running or scheduled broadcast of bot botID with reason
// (e.g. "bot disabled", "401 Unauthorized: the token was revoked") and returns how many it
// paused. Errors: apperr.ErrUnavailable.
func (s *Service) PauseBotBroadcasts(ctx context.Context, botID uuid.UUID, reason string) (int, error) {
	res, err := s.db.NewUpdate().Model((*Broadcast)(nil)).
		Set("status = ?", StatusPaused).Set("pause_reason = ?", reason).
		Set("paused_at = now()").Set("updated_at = now()").
		Where("bot_id = ?", botID).Where("status IN (?, ?)", StatusRunning, StatusScheduled).Exec(ctx)
	if err != nil {
		return 0, apperr.Classify(fmt.Errorf("pause bot broadcasts: %w", err))
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// Resume resumes the tenant's paused broadcast id: it becomes running (scheduled when its
// SendAt is still ahead), its pause reason and consecutive-error count are cleared, and its
// run is enqueued. Resuming a running or scheduled broadcast changes nothing. Errors:
// ErrNotFound (404), a stateConflict 409 for a draft or an ended broadcast,
// apperr.ErrUnavailable (503).
func (s *Service) Resume(ctx context.Context, tenantID, id uuid.UUID) (Broadcast, Counts, error) {
	resumed := false
	b, c, err := s.transition(ctx, tenantID, id, func(ctx context.Context, tx bun.Tx, b *Broadcast) error {
		switch b.Status {
		case StatusRunning, StatusScheduled:
			return nil
		case StatusPaused:
			resumed = true
			status := StatusRunning
			if b.SendAt.After(time.Now()) || b.StartedAt.IsZero() {
				status = StatusScheduled
			}
			return setStatus(ctx, tx, b, status, "pause_reason = ''", "paused_at = NULL",
				"error_streak = 0", "error_streak_kind = ''")
		}
		return stateConflict("resume", b.Status, StatusPaused)
	})
	if err == nil && resumed {
		if err := s.enqueueRunAt(ctx, b.ID, b.SendAt, false); err != nil {
			s.log.WarnContext(ctx, "broadcast: enqueue run failed; the sweep will retry", "broadcast_id", b.ID, "error", err)
		}
	}
	return b, c, err
}

// RetryFailed sends the tenant's broadcast id again to its failed recipients only, as a new
// attempt cycle: Cycle+1 on the broadcast; each failed recipient's current attempt
// (cycle, status, attempts, error, time) is appended to its history, and it is queued again
// with 0 attempts in the new cycle. The broadcast becomes running (CompletedAt and its error
// and pause reason cleared) and its run is enqueued. Allowed on a completed, cancelled,
// failed or paused broadcast (a paused one is thereby resumed: its other pending recipients
// are sent too). Errors: ErrNotFound (404), a stateConflict 409 for a draft,
// scheduled or running one, ErrNothingFailed (409) when no recipient has failed,
// apperr.ErrUnavailable (503).
func (s *Service) RetryFailed(ctx context.Context, tenantID, id uuid.UUID) (Broadcast, Counts, error) {
	b, c, err := s.transition(ctx, tenantID, id, func(ctx context.Context, tx bun.Tx, b *Broadcast) error {
		switch b.Status {
		case StatusCompleted, StatusCancelled, StatusFailed, StatusPaused:
		default:
			return stateConflict("retry the failed recipients of", b.Status,
				StatusCompleted, StatusCancelled, StatusFailed, StatusPaused)
		}
		cycle := b.Cycle + 1
		res, err := tx.NewRaw(`UPDATE broadcast_recipients SET
	history = COALESCE(history, '[]'::jsonb) || jsonb_build_array(jsonb_build_object(
		'cycle', cycle, 'status', status, 'attempts', attempts, 'error', error, 'at', updated_at)),
	status = ?, attempts = 0, error = '', due_at = now(), claimed_at = NULL, cycle = ?, updated_at = now()
WHERE broadcast_id = ? AND status = ?`, RecipientQueued, cycle, b.ID, RecipientFailed).Exec(ctx)
		if err != nil {
			return fmt.Errorf("retry failed recipients: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return ErrNothingFailed
		}
		return setStatus(ctx, tx, b, StatusRunning, fmt.Sprintf("cycle = %d", cycle), "completed_at = NULL",
			"error = ''", "pause_reason = ''", "paused_at = NULL", "error_streak = 0", "error_streak_kind = ''",
			"started_at = COALESCE(started_at, now())")
	})
	if err == nil {
		if err := s.enqueueRunAt(ctx, b.ID, time.Time{}, false); err != nil {
			s.log.WarnContext(ctx, "broadcast: enqueue run failed; the sweep will retry", "broadcast_id", b.ID, "error", err)
		}
	}
	return b, c, err
}

// perRecipientErrors are fragments (lower case) of Telegram descriptions that concern one
// chat, not the bot or the message: they never count toward the auto-pause
// (core.telegram.org/bots/api#making-requests; the texts Telegram answers for a chat that
// does not exist or cannot be written to).
var perRecipientErrors = []string{
	"chat not found", "user not found", "peer_id_invalid", "group chat was upgraded",
	"have no rights", "not enough rights", "chat_write_forbidden", "deactivated", "kicked",
	"blocked", "topic_closed", "chat_restricted", "bot can't initiate conversation",
}

// failureKind is the auto-pause kind of a failed send (the recipient ends "failed"): ""
// when the failure concerns that recipient only (403 of any kind: the user blocked the bot
// or is deactivated; 400 chat not found, user not found, a migrated group, missing rights:
// perRecipientErrors), else Telegram's error code and description ("401 Unauthorized",
// "400 Bad Request: can't parse entities: …", "500 Internal Server Error"), or the
// description alone when Telegram did not answer (timeouts after the last retry). Equal
// kinds are "the same kind of error".
func failureKind(out telegram.Outcome) string {
	if out.Status == telegram.OutcomeBlocked || out.ErrorCode == 403 {
		return ""
	}
	desc := strings.TrimSpace(out.Err)
	lower := strings.ToLower(desc)
	for _, frag := range perRecipientErrors {
		if strings.Contains(lower, frag) {
			return ""
		}
	}
	if desc == "" {
		desc = "send failed"
	}
	if len(desc) > 200 {
		desc = desc[:200]
	}
	if out.ErrorCode != 0 {
		return fmt.Sprintf("%d %s", out.ErrorCode, desc)
	}
	return desc
}

// streakFlushEvery is how many buffered results, the newest a failure that counts toward
// the auto-pause, make sendChunk write its batch at once (instead of flushEvery), so that the
// auto-pause stops a broken bot within about this many sends of its threshold.
const streakFlushEvery = 10

// streakOf summarises written results rs (in completion order) for the auto-pause counter:
// reset is true when the counter's old value no longer matters (a sent recipient, or a
// change of kind, happened in rs); kind and n are the trailing run of failures of one kind
// (n = 0: none). Results without a kind (not failed, or per-recipient failures) are neutral
// except sent ones, which reset.
func streakOf(rs []result) (reset bool, kind string, n int) {
	for _, r := range rs {
		switch {
		case r.Sent:
			reset, kind, n = true, "", 0
		case r.Status != RecipientFailed || r.Kind == "":
		case !reset && n == 0:
			kind, n = r.Kind, 1
		case kind == r.Kind:
			n++
		default:
			reset, kind, n = true, r.Kind, 1
		}
	}
	return reset, kind, n
}

// afterWrite records written results rs of broadcast id in the broadcast row with one
// statement (a read only when rs sent nothing and failed nothing that counts): the send-rate
// counter, and the consecutive-error counter, which pauses a running broadcast when it
// reaches MaxConsecutiveErrors (PauseReason "<kind> after <n> consecutive failures"). It
// reports whether the broadcast is still running (a run stops starting sends otherwise).
func (s *Service) afterWrite(ctx context.Context, id uuid.UUID, rs []result) (bool, error) {
	sent := 0
	for _, r := range rs {
		if r.Sent {
			sent++
		}
	}
	reset, kind, n := streakOf(rs)
	var status, reason string
	if sent == 0 && !reset && n == 0 {
		err := s.db.NewRaw("SELECT status, pause_reason FROM broadcasts WHERE id = ?", id).Scan(ctx, &status, &reason)
		if err != nil {
			return true, apperr.Classify(fmt.Errorf("read broadcast status: %w", err))
		}
		return status == StatusRunning, nil
	}
	// streak is the new error_streak (SET expressions all see the row before the update).
	streak, sargs := "error_streak", []any{}
	switch {
	case reset:
		streak, sargs = "?::integer", []any{n}
	case n > 0:
		streak, sargs = "(CASE WHEN error_streak_kind = ? THEN error_streak + ? ELSE ? END)", []any{kind, n, n}
	}
	newKind, kargs := "error_streak_kind", []any{}
	if reset || n > 0 {
		newKind, kargs = "?", []any{kind}
	}
	pausing := "(" + streak + " >= max_consecutive_errors AND status = ? AND " + streak + " > 0)"
	pargs := append(append(append([]any{}, sargs...), StatusRunning), sargs...)
	var args []any
	add := func(a ...any) { args = append(args, a...) }
	q := `UPDATE broadcasts SET
	rate_prev = CASE WHEN ?::integer = 0 THEN rate_prev
		WHEN rate_at IS NULL OR now() - rate_at >= interval '120 seconds' THEN 0
		WHEN now() - rate_at >= interval '60 seconds' THEN rate_sent ELSE rate_prev END,
	rate_sent = CASE WHEN ?::integer = 0 THEN rate_sent
		WHEN rate_at IS NULL OR now() - rate_at >= interval '60 seconds' THEN ? ELSE rate_sent + ? END,
	rate_at = CASE WHEN ?::integer = 0 THEN rate_at
		WHEN rate_at IS NULL OR now() - rate_at >= interval '120 seconds' THEN now()
		WHEN now() - rate_at >= interval '60 seconds' THEN rate_at + interval '60 seconds' ELSE rate_at END,
	error_streak = ` + streak + `,
	error_streak_kind = ` + newKind + `,
	status = CASE WHEN ` + pausing + ` THEN ? ELSE status END,
	pause_reason = CASE WHEN ` + pausing + ` THEN ? || ' after ' || ` + streak + ` || ' consecutive failures' ELSE pause_reason END,
	paused_at = CASE WHEN ` + pausing + ` THEN now() ELSE paused_at END,
	updated_at = CASE WHEN ` + pausing + ` THEN now() ELSE updated_at END
WHERE id = ?
RETURNING status, pause_reason`
	add(sent, sent, sent, sent, sent)
	add(sargs...)
	add(kargs...)
	add(pargs...)
	add(StatusPaused)
	add(pargs...)
	add(kind)
	add(sargs...)
	add(pargs...)
	add(pargs...)
	add(id)
	if err := s.db.NewRaw(q, args...).Scan(ctx, &status, &reason); err != nil {
		if database.IsNoRows(err) {
			return false, nil
		}
		return true, apperr.Classify(fmt.Errorf("record batch: %w", err))
	}
	if status == StatusPaused && n > 0 && strings.HasPrefix(reason, kind+" after ") {
		s.log.WarnContext(ctx, "broadcast: paused after consecutive failures", "broadcast_id", id, "reason", reason)
	}
	return status == StatusRunning, nil
}

// recordBatch is afterWrite on a context that outlives the run's (the results are
// written); a failure is logged and reported as still running.
func (s *Service) recordBatch(ctx context.Context, id uuid.UUID, rs []result) bool {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	running, err := s.afterWrite(wctx, id, rs)
	if err != nil {
		s.log.WarnContext(ctx, "broadcast: record batch failed", "broadcast_id", id.String(), "error", err)
	}
	return running
}

// PauseReasonBotInactive starts the pause_reason of a broadcast paused because its bot is
// not active (disabled by the tenant, or invalid_token after Telegram answered 401 to its
// token), e.g. "bot not active: bot disabled". ResumeBotBroadcasts resumes exactly those.
const PauseReasonBotInactive = "bot not active: "

// pauseForBot pauses running broadcast id because its bot is not active (reason says why,
// after PauseReasonBotInactive). A broadcast that is no longer running is left as it is.
func (s *Service) pauseForBot(ctx context.Context, id uuid.UUID, reason string) error {
	err := s.Pause(context.WithoutCancel(ctx), id, PauseReasonBotInactive+reason)
	if err != nil && apperr.KindOf(err) == apperr.KindConflict {
		return nil
	}
	return err
}

// ResumeBotBroadcasts resumes the broadcasts of bot botID that were paused because the bot
// was not active (pause_reason starting with PauseReasonBotInactive), once it is active
// again: they run again from where they stopped. Broadcasts paused by the tenant or by
// auto-pause stay paused. It returns how many it resumed. Errors: apperr.ErrUnavailable.
func (s *Service) ResumeBotBroadcasts(ctx context.Context, botID uuid.UUID) (int, error) {
	var rows []struct {
		ID     uuid.UUID `bun:",type:uuid"`
		SendAt time.Time `bun:",nullzero"`
	}
	err := s.db.NewUpdate().Model((*Broadcast)(nil)).
		Set("status = CASE WHEN send_at > now() OR started_at IS NULL THEN ? ELSE ? END", StatusScheduled, StatusRunning).
		Set("pause_reason = ''").Set("paused_at = NULL").
		Set("error_streak = 0").Set("error_streak_kind = ''").Set("updated_at = now()").
		Where("bot_id = ?", botID).Where("status = ?", StatusPaused).
		Where("starts_with(pause_reason, ?)", PauseReasonBotInactive).
		Returning("id, send_at").Scan(ctx, &rows)
	if err != nil {
		return 0, apperr.Classify(fmt.Errorf("resume bot broadcasts: %w", err))
	}
	for _, r := range rows {
		if err := s.enqueueRunAt(ctx, r.ID, r.SendAt, false); err != nil {
			s.log.WarnContext(ctx, "broadcast: enqueue resumed run failed; the sweep starts it", "broadcast_id", r.ID, "error", err)
		}
	}
	return len(rows), nil
}

// resumeActiveBots resumes (as ResumeBotBroadcasts) every broadcast paused because its bot
// was not active whose bot is active again, however it became so (PUT status, a token
// rotation, validate), so that the sweep's runnable pass starts them. It returns how many.
func resumeActiveBots(ctx context.Context, db *bun.DB) (int, error) {
	res, err := db.NewRaw(`UPDATE broadcasts AS b
SET status = CASE WHEN b.send_at > now() OR b.started_at IS NULL THEN ? ELSE ? END,
    pause_reason = '', paused_at = NULL, error_streak = 0, error_streak_kind = '', updated_at = now()
FROM bots
WHERE bots.id = b.bot_id AND bots.status = ? AND bots.deleted_at IS NULL
  AND b.status = ? AND starts_with(b.pause_reason, ?)`,
		StatusScheduled, StatusRunning, telegram.BotActive, StatusPaused, PauseReasonBotInactive).Exec(ctx)
	if err != nil {
		return 0, apperr.Classify(fmt.Errorf("resume broadcasts of active bots: %w", err))
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
