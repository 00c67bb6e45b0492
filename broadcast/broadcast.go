// Package broadcast owns broadcasts: one message sent by a tenant's bot to a list of its
// contacts, with one broadcast_recipients row per contact that records the delivery.
//
// Flow (DESIGN.md "Broadcast", CONVENTIONS.md §1 (b)): Create validates the audience
// (tenant-scoped) and, in one transaction, stores the broadcast and all its recipients with
// one server-side INSERT … SELECT; it then enqueues the broadcast:run task. HandleRun (the
// worker) claims due recipients in chunks with FOR UPDATE SKIP LOCKED, sends each through
// telegram.Send (which keeps the global, per-bot, per-chat and daily limits shared by all
// workers), writes each chunk's results in one UPDATE, and reschedules itself with a
// *telegram.RetryAfterError until no recipient is left; then the broadcast is completed.
// HandleSweep recovers recipients of crashed workers and runs whose task was lost.
//
// Every recipient is sent at most once in normal operation: a recipient is sent only after
// it was claimed (status "sending"), and its result is written before it can be claimed
// again. Only a worker that dies between the sendMessage call and the write can cause a
// second copy, after the sweep has given its claim back (StuckAfter).
package broadcast

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// Errors returned by this package (apperr kinds: Invalid → 422, NotFound → 404,
// Conflict → 409). A field that breaks a rule is internal/validate's invalid_field with
// Details {"field": <json field>}. ErrUnknownRecipients and ErrRecipientsNotOfBot are a
// different mistake (the ids are well-formed but name no usable contact): as returned by
// Create they name the ids in their message and carry Details
// map[string]any{"field": "recipients", "contact_ids": []string}. ErrUnknownRecipients is a
// 404 like every other id that names nothing of the tenant's (DESIGN.md Security: another
// tenant's id answers 404, the same as a missing one).
var (
	ErrNotFound           = apperr.NotFound("broadcast_not_found", "broadcast not found")
	ErrNotCancellable     = apperr.Conflict("broadcast_not_cancellable", "the broadcast has already ended and cannot be cancelled")
	ErrUnknownRecipients  = apperr.NotFound("unknown_recipients", "some recipients are not contacts of this tenant")
	ErrRecipientsNotOfBot = apperr.Invalid("recipients_not_of_bot", "some recipients are contacts of another bot")
)

// Validation limits of NewBroadcast.
const (
	MaxNameLen    = validate.MaxNameLen
	MaxTextLen    = validate.MaxTextLen // Telegram's sendMessage limit (core.telegram.org/bots/api#sendmessage)
	MaxRecipients = 100_000
	// SyncRecipients is the largest broadcast whose recipient rows Create writes itself;
	// a larger one stores its audience and the worker writes the rows (materialize), so
	// that Create answers within a second or two whatever the size.
	SyncRecipients   = 5_000
	PlatformTelegram = "TELEGRAM"
)

// Broadcast statuses (the lifecycle, control.go): draft → scheduled → running ⇄ paused →
// completed | cancelled | failed. draft is saved without sending (Send schedules it);
// scheduled waits for its SendAt or for a worker; running is being sent; paused stops
// claiming recipients (Pause, TenantPause, auto-pause; Resume); failed means its bot was
// deleted (Error says so). Cancel ends any of the first four.
const (
	StatusDraft     = "draft"
	StatusScheduled = "scheduled"
	StatusRunning   = "running"
	StatusPaused    = "paused"
	StatusCompleted = "completed"
	StatusCancelled = "cancelled"
	StatusFailed    = "failed"
)

// Recipient statuses. queued and deferred wait for their due_at; sending is claimed by a
// worker; sent, failed, cancelled, skipped and expired (RecipientExpired, timing.go) are
// final. skipped is a recipient never sent to because its contact had blocked the bot or
// opted out with /stop when the recipient rows were written (Error holds the reason:
// SkipBlocked or SkipOptedOut); it never counts as pending.
const (
	RecipientQueued    = "queued"
	RecipientSending   = "sending"
	RecipientSent      = "sent"
	RecipientFailed    = "failed"
	RecipientDeferred  = "deferred"
	RecipientCancelled = "cancelled"
	RecipientSkipped   = "skipped"
)

// SkipBlocked is the reason (the Error) of a skipped recipient: its contact's blocked flag
// was set when the recipient rows were written, by Telegram (my_chat_member "kicked", a 403
// "bot was blocked by the user"). A contact that opted out with /stop is skipped with
// SkipOptedOut (timing.go); one that is both is skipped with SkipBlocked. A contact that
// blocks the bot after that is failed at send time by the 403 as before.
const SkipBlocked = "blocked"

// errInterrupted is the error of a recipient given back by the sweep after its worker died
// while sending: the message may have reached Telegram.
const errInterrupted = "a previous attempt was interrupted while calling Telegram; it may have been delivered"

// Broadcast is a row of broadcasts. Times are UTC-comparable timestamps; StartedAt is zero
// until the first run, CompletedAt is zero until the broadcast ends (completed, cancelled
// or failed: it is the time it ended). Total is the number of recipients.
type Broadcast struct {
	bun.BaseModel `bun:"table:broadcasts,alias:b"`

	ID          uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID    uuid.UUID `bun:",type:uuid,notnull"`
	BotID       uuid.UUID `bun:",type:uuid,notnull"`
	Name        string    `bun:",notnull"`
	Platform    string    `bun:",notnull"`
	MessageText string    `bun:",notnull"`
	ParseMode   string    `bun:",notnull"`
	Status      string    `bun:",notnull"`
	Error       string    `bun:",notnull"`
	Total       int       `bun:",notnull"`
	// Materialized is false while the recipients of a large broadcast are still only an
	// audience list that the worker's first run turns into recipient rows.
	Materialized bool `bun:",notnull"`
	// Segment is the segment the recipients were selected by; nil for a list of recipients.
	Segment *Segment `bun:",type:jsonb,nullzero"`
	// Content is the photo or document, keyboard and flags, and whether MessageText is a
	// template (content.go); nil for a broadcast created before content existed.
	Content     *Content  `bun:",type:jsonb,nullzero"`
	CreatedAt   time.Time `bun:",nullzero,notnull,default:now()"`
	UpdatedAt   time.Time `bun:",nullzero,notnull,default:now()"`
	StartedAt   time.Time `bun:",nullzero"`
	CompletedAt time.Time `bun:",nullzero"`
	// Control holds the lifecycle fields (control.go): send_at, pause reason, auto-pause
	// counter, attempt cycle and send rate.
	Control

	// Timing (timing.go). ExpiresAt, when set, is when recipients not yet sent become
	// expired; Window, when set, is the daily send window; AllowPaidBroadcast sends with
	// Telegram's allow_paid_broadcast at the paid pace.
	ExpiresAt          time.Time `bun:",nullzero"`
	Window             *Window   `bun:"send_window,type:jsonb,nullzero"`
	AllowPaidBroadcast bool      `bun:",notnull"`
	// Topic is the name of the tenant's topic the broadcast is about ("" for none; topic.go).
	Topic string `bun:",nullzero"`
}

// Recipient is a row of broadcast_recipients: the delivery of one broadcast to one contact.
// Attempts counts the sendMessage calls made for the recipient: each is counted when the
// recipient is claimed, before Telegram is called, and given back when nothing was sent
// (rate-limit waits, 429 retry_after, deferrals), so that a recipient that may have reached
// Telegram always has a record saying so.
type Recipient struct {
	bun.BaseModel `bun:"table:broadcast_recipients,alias:r"`

	ID                int64     `bun:",pk,autoincrement"`
	BroadcastID       uuid.UUID `bun:",type:uuid,notnull"`
	ContactID         uuid.UUID `bun:",type:uuid,notnull"`
	ChatID            int64     `bun:",notnull"`
	Status            string    `bun:",notnull"`
	Attempts          int       `bun:",notnull"`
	DueAt             time.Time `bun:",nullzero,notnull,default:now()"`
	ClaimedAt         time.Time `bun:",nullzero"`
	Error             string    `bun:",notnull"`
	TelegramMessageID *int64
	SentAt            time.Time `bun:",nullzero"`
	UpdatedAt         time.Time `bun:",nullzero,notnull,default:now()"`
}

// Counts are a broadcast's recipients by status: Pending = queued + sending (not yet
// attempted, or waiting for a retry, a rate-limit slot or the send window), Deferred =
// waiting for the bot's daily limit to reset, Skipped = never sent (contact blocked the bot
// or opted out), Expired = not sent by the broadcast's expires_at, Total = all recipients.
type Counts struct {
	Total, Sent, Failed, Pending, Deferred, Cancelled, Skipped int
	// Expired counts recipients not sent before the broadcast's expiry (status "expired").
	Expired int
}

// NewBroadcast is the input of Create.
type NewBroadcast struct {
	// Name is 1-200 characters (trimmed), no control characters (validate.Name).
	Name string
	// Platform must be "TELEGRAM" (case-insensitive).
	Platform string
	// MessageText is 1-4096 characters, not only whitespace, no control characters other
	// than tab and newline (validate.Text), and parseable in ParseMode by Telegram's
	// formatting rules; with a photo or document it is the caption (0-1024 characters). It
	// is a template: variables such as {first_name|there} are rendered per recipient at
	// send time (telegram.CheckMessage, internal/textvars).
	MessageText string
	// ParseMode is "", "HTML", "MarkdownV2" or "Markdown", case-insensitive (validate.ParseMode);
	// stored in Telegram's spelling.
	ParseMode string
	// Recipients are contact ids of the bot: 1-100000 after duplicates are removed.
	// Exactly one of Recipients (non-nil) and Segment is given.
	Recipients []uuid.UUID
	// Segment selects the recipients among the bot's contacts instead (segment.go); they
	// are resolved once, at create time.
	Segment *Segment
	// BotID is the bot_app_id; nil means the tenant's only bot.
	BotID *uuid.UUID
	// Content is the photo or document, inline keyboard and flags (telegram.CheckMessage).
	Content telegram.Content
	// Schedule holds draft, send_at and max_consecutive_errors (control.go).
	Schedule
	// ExpiresAt (zero: never) is when recipients not yet sent become expired; it must be
	// in the future (and after send_at). See timing.go.
	ExpiresAt time.Time
	// Window (nil: any time) is the daily send window; see Window.
	Window *Window
	// AllowPaidBroadcast sends with Telegram's allow_paid_broadcast (up to 1000 messages/s
	// per bot for a fee in Stars, core.telegram.org/bots/api#sendmessage) at
	// TELEGRAM_PAID_BOT_RATE instead of TELEGRAM_BOT_RATE_LIMIT. Default false.
	AllowPaidBroadcast bool
	// Topic ("" for none) names one of the tenant's topics (GET /topics/): contacts
	// unsubscribed from it are skipped with SkipUnsubscribed. Unknown: invalid_field topic.
	Topic string
}

// Filter selects a page of List: a cursor from a previous page and a limit
// (0 = page.DefaultLimit, at most page.MaxLimit), and optional filters that combine (AND):
// Statuses (any of them; members of Statuses), BotID (broadcasts of that bot),
// CreatedAfter (created_at >= it) and CreatedBefore (created_at < it); zero values select all.
type Filter struct {
	Cursor        string
	Limit         int
	Statuses      []string
	BotID         *uuid.UUID
	CreatedAfter  time.Time
	CreatedBefore time.Time
}

// Deps are the Service's collaborators.
type Deps struct {
	DB       *bun.DB
	Queue    *asynq.Client
	Telegram *telegram.Service
	// Contacts is the contacts service. The run needs nothing from it (telegram.Send marks
	// blocked contacts; Create reads the contacts table in its INSERT … SELECT); may be nil.
	Contacts *contacts.Service
	Log      *slog.Logger
	// MaxRetries is how many times a retryable send failure of one recipient is retried
	// before it is failed (TELEGRAM_MAX_RETRIES); a recipient gets at most MaxRetries+1
	// sendMessage calls. Negative means 0. 0 means no retry.
	MaxRetries int
	// Senders is the most sendMessage calls of one run in flight at once. Default: 16.
	Senders int
	// Now is the clock of the send window, expiry and due checks (timing.go). Default:
	// time.Now. Give the telegram Service the same clock (telegram.Deps.Now).
	Now func() time.Time
}

// Service is the broadcast domain service.
type Service struct {
	db         *bun.DB
	queue      *asynq.Client
	insp       *asynq.Inspector
	tg         *telegram.Service
	log        *slog.Logger
	maxRetries int
	senders    int
	// now is the clock of timing.go (Deps.Now); tests set it.
	now func() time.Time

	// Tunables of the run loop (tests shorten them).
	chunkSize   int           // recipients claimed per chunk
	chunkBudget time.Duration // a chunk stops starting sends after this long
	runBudget   time.Duration // a run stops claiming after this long and reschedules itself
	stuckAfter  time.Duration // a "sending" claim older than this is given back by the sweep
	sweepPage   int           // broadcasts read per sweep query
	// syncRecipients is the largest broadcast whose recipients Create writes (SyncRecipients).
	syncRecipients int
}

// Run loop defaults.
const (
	// ChunkSize is how many due recipients one claim takes.
	ChunkSize = 200
	// ChunkBudget is how long one chunk keeps starting sends; the rows it did not reach are
	// given back. It bounds how long a claim lasts (see Service.ClaimLease).
	ChunkBudget = 10 * time.Second
	// RunBudget is how long one HandleRun keeps claiming before it reschedules itself
	// (well under the task Timeout of 10 min), so that runs of many broadcasts take turns.
	RunBudget = 3 * time.Minute
	// minRetryAfter is the shortest delay HandleRun asks asynq for.
	minRetryAfter = 200 * time.Millisecond
	// maxBackoff caps the delay between retries of one recipient.
	maxBackoff = 5 * time.Minute
)

// New returns a Service built from d (Senders defaults to 16, Log to slog.Default()).
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Senders <= 0 {
		d.Senders = 16
	}
	if d.MaxRetries < 0 {
		d.MaxRetries = 0
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Service{now: d.Now,
		db: d.DB, queue: d.Queue, tg: d.Telegram, log: d.Log,
		maxRetries: d.MaxRetries, senders: d.Senders,
		chunkSize: ChunkSize, chunkBudget: ChunkBudget, runBudget: RunBudget, sweepPage: SweepPage,
		syncRecipients: SyncRecipients,
	}
	if d.Telegram != nil {
		s.insp = d.Telegram.Inspector()
	}
	s.stuckAfter = s.ClaimLease()
	return s
}

// ClaimLease is how long a chunk of recipients can stay claimed ("sending") by a live
// worker: ChunkBudget (the chunk stops starting sends), plus the longest one send can take
// (telegram.Service.SendLease: waiting for a slot and TELEGRAM_REQUEST_TIMEOUT), plus the
// time to write the results. A claim older than this belongs to a worker that died; the
// sweep gives its recipients back. With the defaults: 10s + (15s + 30s + 5s) + 20s = 80s.
func (s *Service) ClaimLease() time.Duration {
	lease := s.chunkBudget + writeTimeout
	if s.tg != nil {
		lease += s.tg.SendLease()
	} else {
		lease += time.Minute
	}
	return lease
}

// validate checks and normalises nb's fields (not the recipients' ownership) and returns the
// deduplicated recipient ids.
func validateNew(nb *NewBroadcast) ([]uuid.UUID, error) {
	var err error
	if err := nb.validateSchedule(); err != nil {
		return nil, err
	}
	if nb.Name, err = validate.Name("name", nb.Name, MaxNameLen); err != nil {
		return nil, err
	}
	if nb.Platform, err = validate.Enum("platform", nb.Platform, PlatformTelegram); err != nil {
		return nil, err
	}
	if err := checkContent(nb); err != nil {
		return nil, err
	}
	return validateAudience(nb.Recipients, nb.Segment)
}

// validateAudience checks that exactly one of recipients and seg is given, validates seg
// (validateSegment) and returns the deduplicated recipient ids (nil with a segment).
func validateAudience(recipients []uuid.UUID, seg *Segment) ([]uuid.UUID, error) {
	if seg != nil {
		if recipients != nil {
			return nil, validate.Field("segment", "give exactly one of recipients and segment")
		}
		return nil, validateSegment(seg)
	}
	if len(recipients) == 0 {
		return nil, validate.Field("recipients", "recipients must list at least one contact id (or give a segment)")
	}
	seen := make(map[uuid.UUID]struct{}, len(recipients))
	ids := make([]uuid.UUID, 0, len(recipients))
	for _, id := range recipients {
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		ids = append(ids, id)
	}
	if len(ids) > MaxRecipients {
		return nil, validate.Field("recipients", "recipients must list at most %d contact ids", MaxRecipients)
	}
	return ids, nil
}

// idsError returns e naming ids in its message (the first 20) and carrying all of them in
// Details {"contact_ids": [...]}.
func idsError(e *apperr.Error, ids []uuid.UUID) error {
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	shown := strs
	more := ""
	if len(shown) > 20 {
		shown = shown[:20]
		more = fmt.Sprintf(" and %d more", len(strs)-20)
	}
	return e.WithMessage("%s: %s%s", e.Message, strings.Join(shown, ", "), more).
		WithDetails(map[string]any{"field": "recipients", "contact_ids": strs})
}

// Create validates nb, stores the broadcast (status scheduled, or draft with nb.Draft) and
// its recipients in one transaction, and enqueues its run (at nb.SendAt when given; a
// draft's run is enqueued by Send). A broadcast of more than SyncRecipients stores its
// validated audience instead, and its first run writes the recipient rows (its counts show
// every recipient pending until then), so that Create stays fast at 100,000 recipients.
// Recipients whose contact has blocked the bot or opted out (/stop) when the rows are
// written are stored as skipped (Error SkipBlocked) and never sent; duplicate ids collapse
// to one recipient. The API answers 202.
//
// With a Segment instead of Recipients, the recipients are the bot's contacts matching it
// at this moment, written by one INSERT … SELECT in the same transaction (a snapshot:
// contacts tagged later are not added), and the broadcast records the segment.
//
// Errors: invalid_field (422) for name, platform, message_text, parse_mode, recipients
// (none, or more than MaxRecipients) and segment (both or neither of recipients and segment,
// a bad part named "segment.attributes[i].op" etc., ErrEmptySegment); the bot lookup's errors unchanged
// (telegram.ErrBotNotFound 404 for another tenant's or a deleted bot,
// telegram.ErrBotRequired 422 invalid_field bot_app_id); ErrUnknownRecipients (404: ids that
// are not contacts of this tenant, another tenant's included) and ErrRecipientsNotOfBot (422:
// contacts of another of the tenant's bots), both naming the ids; apperr.ErrUnavailable (503). A failed enqueue is only
// logged: HandleSweep starts the run within a sweep interval.
func (s *Service) Create(ctx context.Context, tenantID uuid.UUID, nb NewBroadcast) (Broadcast, Counts, error) {
	ids, err := validateNew(&nb)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	if err := validateTiming(&nb, nb.sendAtOrZero(), s.now()); err != nil {
		return Broadcast{}, Counts{}, err
	}
	bot, err := s.tg.BotForTenant(ctx, tenantID, nb.BotID)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	if err := checkTopic(ctx, s.db, tenantID, nb.Topic); err != nil { // topic.go
		return Broadcast{}, Counts{}, err
	}
	if nb.Segment != nil {
		return s.createFromSegment(ctx, tenantID, bot.ID, nb)
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

	b := Broadcast{
		TenantID: tenantID, BotID: bot.ID, Name: nb.Name, Platform: nb.Platform,
		MessageText: nb.MessageText, ParseMode: nb.ParseMode, Status: StatusScheduled, Total: len(ids),
		Materialized: len(ids) <= s.syncRecipients,
		ExpiresAt:    nb.ExpiresAt, Window: nb.Window, AllowPaidBroadcast: nb.AllowPaidBroadcast,
	}
	b.Content = contentOf(nb.Content)
	b.Topic = nb.Topic
	nb.applySchedule(&b)
	if b.Materialized {
		err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
			return insertBroadcast(ctx, tx, &b, ids)
		})
	} else {
		err = insertAudience(ctx, s.db, &b, ids)
	}
	if err != nil {
		return Broadcast{}, Counts{}, apperr.Classify(err)
	}
	s.startRunOf(ctx, b)
	counts, err := countsOfBroadcast(ctx, s.db, b)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	return b, counts, nil
}

// createFromSegment is Create for a segment: the broadcast and its recipients (the
// contacts matching the segment at this moment: a snapshot) in one transaction.
func (s *Service) createFromSegment(ctx context.Context, tenantID, botID uuid.UUID, nb NewBroadcast) (Broadcast, Counts, error) {
	b := Broadcast{
		TenantID: tenantID, BotID: botID, Name: nb.Name, Platform: nb.Platform,
		MessageText: nb.MessageText, ParseMode: nb.ParseMode, Status: StatusScheduled,
		Materialized: true, Segment: nb.Segment,
		ExpiresAt: nb.ExpiresAt, Window: nb.Window, AllowPaidBroadcast: nb.AllowPaidBroadcast,
	}
	b.Content = contentOf(nb.Content)
	b.Topic = nb.Topic
	nb.applySchedule(&b)
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		return insertSegmentBroadcast(ctx, tx, &b)
	})
	if err != nil {
		return Broadcast{}, Counts{}, apperr.Classify(err)
	}
	s.startRunOf(ctx, b)
	counts, err := countsOfBroadcast(ctx, s.db, b)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	return b, counts, nil
}

// Get returns the tenant's broadcast id and its counts. Errors: ErrNotFound (404, also for
// another tenant's), apperr.ErrUnavailable (503).
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Broadcast, Counts, error) {
	b, err := getBroadcast(ctx, s.db, tenantID, id)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	c, err := countsOfBroadcast(ctx, s.db, b)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	return b, c, nil
}

// List returns one page of the tenant's broadcasts, newest first, the counts of each (same
// index), and the cursor of the next page ("" on the last). Errors: page.ErrBadCursor,
// page.ErrBadLimit (422), apperr.ErrUnavailable (503).
func (s *Service) List(ctx context.Context, tenantID uuid.UUID, f Filter) ([]Broadcast, []Counts, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, nil, "", err
	}
	bs, err := listBroadcasts(ctx, s.db, tenantID, f, after, limit)
	if err != nil {
		return nil, nil, "", err
	}
	bs, next := page.Trim(bs, limit, func(b Broadcast) (time.Time, uuid.UUID) { return b.CreatedAt, b.ID })
	ids := make([]uuid.UUID, len(bs))
	for i, b := range bs {
		ids[i] = b.ID
	}
	byID, err := countsOfMany(ctx, s.db, ids)
	if err != nil {
		return nil, nil, "", err
	}
	counts := make([]Counts, len(bs))
	for i, b := range bs {
		counts[i] = byID[b.ID]
		if !b.Materialized {
			counts[i] = unmaterializedCounts(b)
		}
	}
	return bs, counts, next, nil
}

// Cancel stops the tenant's broadcast id: a draft, scheduled, running or paused broadcast
// becomes cancelled (CompletedAt set) and its recipients still queued or deferred become
// cancelled; recipients being sent at that moment keep their result. Cancelling a cancelled broadcast changes
// nothing. Errors: ErrNotFound (404), ErrNotCancellable (409) for a completed or failed one,
// apperr.ErrUnavailable (503).
func (s *Service) Cancel(ctx context.Context, tenantID, id uuid.UUID) (Broadcast, Counts, error) {
	var b Broadcast
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if b, err = lockBroadcast(ctx, tx, tenantID, id); err != nil {
			return err
		}
		switch b.Status {
		case StatusCompleted, StatusFailed:
			return ErrNotCancellable
		case StatusCancelled:
			return nil
		}
		return cancelBroadcast(ctx, tx, &b)
	})
	if err != nil {
		return Broadcast{}, Counts{}, apperr.Classify(err)
	}
	c, err := countsOfBroadcast(ctx, s.db, b)
	if err != nil {
		return Broadcast{}, Counts{}, err
	}
	return b, c, nil
}
