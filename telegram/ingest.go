package telegram

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/metrics"
)

// UpdateTypes are the fields of Telegram's Update object (core.telegram.org/bots/api#update,
// Bot API 9.x as generated in gotgbot v2.0.0-rc.36) in the order Ingest looks for them; the
// first one present is the event's update_type ("unknown" when none is).
var UpdateTypes = []string{
	"message", "edited_message", "channel_post", "edited_channel_post",
	"callback_query", "inline_query", "chosen_inline_result",
	"my_chat_member", "chat_member", "chat_join_request",
	"pre_checkout_query", "shipping_query", "purchased_paid_media",
	"poll", "poll_answer", "message_reaction", "message_reaction_count",
	"business_connection", "business_message", "edited_business_message", "deleted_business_messages",
	"guest_message", "chat_boost", "removed_chat_boost", "managed_bot", "subscription",
}

// UpdateTypeUnknown is the update_type of an update with none of the UpdateTypes fields.
const UpdateTypeUnknown = "unknown"

// ingestStoreTimeout bounds the work of one Ingest. The work is detached from the request's
// cancellation (a client that hangs up must not abort a batch that holds other requests'
// rows), so it is bounded here instead.
const ingestStoreTimeout = 10 * time.Second

// ingestEnqueueTimeout bounds one asynq enqueue made by this package (enqueueTask).
const ingestEnqueueTimeout = 5 * time.Second

// Ingest stores one webhook delivery of bot botID (DESIGN.md "Inbound update";
// core.telegram.org/bots/api#setwebhook). The API answers 200 when it returns nil, and
// Telegram redelivers on anything else, so nil is returned only once the update is durable:
// committed in webhook_events, which is the processing queue (see ProcessEvents; no task is
// enqueued, so Redis plays no part in the acknowledgement).
//
// secret is the X-Telegram-Bot-Api-Secret-Token header, compared in constant time with the
// SHA-256 stored for the bot (or with the next secret's while a token rotation or webhook
// repair registers it, Bot.WebhookSecretNextHash); body is the raw request body (the API layer bounds its size).
// The bot's tenant, secret hash and deletion come from the bot cache (botcache.go).
//
// Concurrent calls are group-committed: their rows go to PostgreSQL together in one
// multi-row INSERT ... ON CONFLICT (bot_id, update_id) DO NOTHING (see ingestBatcher); each
// caller gets the outcome of its own row.
//
// Errors: ErrBotNotFound (404) for an unknown or deleted bot; ErrBadSecret (401) for a
// missing or wrong secret, nothing stored; apperr.ErrMalformed (400) unless body is a JSON
// object with a positive integer update_id, or when PostgreSQL refuses the row's data
// (a data exception such as a \u0000 escape, which jsonb rejects: a retry would fail the
// same way); apperr.ErrUnavailable (503) when PostgreSQL fails, so that Telegram retries. A
// redelivered update_id is stored once and acknowledged (nil) whether or not it has been
// processed.
func (s *Service) Ingest(ctx context.Context, botID uuid.UUID, secret string, body []byte) (err error) {
	defer func() { observeIngest(err) }() // metrics by outcome (metrics.go)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ingestStoreTimeout)
	defer cancel()

	bot, err := s.in.bots.Get(ctx, botID)
	if err != nil {
		if errors.Is(err, ErrBotNotFound) {
			return ErrBotNotFound
		}
		return apperr.ErrUnavailable.Wrap(fmt.Errorf("look up bot: %w", err))
	}
	if !bot.DeletedAt.IsZero() {
		return ErrBotNotFound
	}
	h := sha256.Sum256([]byte(secret))
	// The next secret is accepted too while a rotation or repair registers it (lifecycle.go).
	if secret == "" || subtle.ConstantTimeCompare(h[:], bot.WebhookSecretHash) != 1 &&
		(len(bot.WebhookSecretNextHash) == 0 || subtle.ConstantTimeCompare(h[:], bot.WebhookSecretNextHash) != 1) {
		return ErrBadSecret
	}

	updateID, updateType, err := parseUpdate(body)
	if err != nil {
		return err
	}
	err = s.in.ingest.store(ctx, &ingestRow{
		tenantID: bot.TenantID, botID: botID, updateID: updateID, updateType: updateType, payload: body,
	})
	switch {
	case err == nil:
		return nil
	case isDataException(err):
		return apperr.ErrMalformed.WithMessage("the update cannot be stored: %s", pgMessage(err))
	default:
		s.log.WarnContext(ctx, "telegram: storing an update failed; Telegram will redeliver",
			"bot_app_id", botID.String(), "update_id", updateID, "error", err)
		return apperr.ErrUnavailable.Wrap(fmt.Errorf("store event: %w", err))
	}
}

// parseUpdate checks that body is a JSON object in valid UTF-8 (RFC 8259 §8.1; nested at most
// encoding/json's 10000 levels) with a positive integer update_id and no \u0000 escape
// (jsonb cannot store one), and returns the update_id with the update's type. Telegram never
// sends anything else, so the rest is refused before it reaches PostgreSQL, where one bad row
// would fail a whole group-commit batch. Errors: apperr.ErrMalformed.
func parseUpdate(body []byte) (int64, string, error) {
	if !utf8.Valid(body) {
		return 0, "", apperr.ErrMalformed.WithMessage("the update is not valid UTF-8")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return 0, "", apperr.ErrMalformed.WithMessage("the update is not a JSON object")
	}
	if hasNULEscape(body) {
		return 0, "", apperr.ErrMalformed.WithMessage(`the update holds a \u0000 escape, which cannot be stored`)
	}
	raw, ok := fields["update_id"]
	if !ok {
		return 0, "", apperr.ErrMalformed.WithMessage("update_id is missing")
	}
	id, err := strconv.ParseInt(string(bytes.TrimSpace(raw)), 10, 64)
	if err != nil || id <= 0 {
		return 0, "", apperr.ErrMalformed.WithMessage("update_id must be a positive integer")
	}
	for _, t := range UpdateTypes {
		if _, ok := fields[t]; ok {
			return id, t, nil
		}
	}
	return id, UpdateTypeUnknown, nil
}

// hasNULEscape reports whether the JSON text body (already known to be valid JSON) holds a
// \u0000 escape. In valid JSON a backslash only occurs inside a string, where it starts an
// escape sequence, so skipping each sequence whole is enough to tell "\\u0000" (a backslash
// followed by the text u0000) from "\u0000".
func hasNULEscape(body []byte) bool {
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' {
			continue
		}
		if i+5 < len(body) && body[i+1] == 'u' && string(body[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character
	}
	return false
}

// enqueueTask enqueues task, detached from ctx's cancellation and bounded by
// ingestEnqueueTimeout; asynq.ErrTaskIDConflict (the task exists already) is success.
func (s *Service) enqueueTask(ctx context.Context, task *asynq.Task) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), ingestEnqueueTimeout)
	defer cancel()
	if _, err := s.queue.EnqueueContext(ctx, task); err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		return fmt.Errorf("enqueue %s: %w", task.Type(), err)
	}
	return nil
}

// isDataException reports a PostgreSQL data exception (SQLSTATE class 22): the input itself
// is unacceptable, retrying cannot help.
func isDataException(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && len(pgErr.Code) == 5 && pgErr.Code[:2] == "22"
}

func pgMessage(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Message
	}
	return "invalid data"
}

// Group commit of the webhook (ingestBatcher).
const (
	// IngestMaxBatch is the most webhook rows one INSERT carries.
	IngestMaxBatch = 100
	// IngestFlushers is how many group-commit INSERTs may be in flight at once. A request that
	// finds a free flusher is written at once (a lone request waits for nobody); while every
	// flusher is busy, arriving rows gather into the next batch.
	IngestFlushers = 2
)

// ingestRow is one Ingest waiting for its row to be committed.
type ingestRow struct {
	tenantID   uuid.UUID
	botID      uuid.UUID
	updateID   int64
	updateType string
	payload    []byte
	done       chan error // receives the row's outcome once
}

type ingestKey struct {
	botID    uuid.UUID
	updateID int64
}

// ingestBatcher group-commits webhook rows: concurrent Ingest calls append their row to a
// pending list, and up to IngestFlushers goroutines (started on demand, gone when idle)
// write the list in INSERTs of up to IngestMaxBatch rows. One INSERT statement in
// autocommit is one transaction, so a row is durable when its INSERT returns; each caller
// is then given its own row's outcome. A batch that fails with a data exception (one bad
// row) is retried row by row so that only the bad row's caller gets the error.
type ingestBatcher struct {
	db       *bun.DB
	log      *slog.Logger
	onStored func() // called after rows were inserted

	maxFlushers int // IngestFlushers

	mu       sync.Mutex
	pending  []*ingestRow
	flushers int

	// Counters since start: INSERT statements of batches (not counting the row-by-row
	// retries), rows in them, and batches retried row by row.
	batches, rows, fallbacks atomic.Int64
}

func newIngestBatcher(db *bun.DB, log *slog.Logger, onStored func()) *ingestBatcher {
	return &ingestBatcher{db: db, log: log, onStored: onStored, maxFlushers: IngestFlushers}
}

// store queues r and waits until its row is committed (nil: inserted, or the same
// (bot_id, update_id) was stored before), refused, or ctx ends (the row may still be
// written then; Telegram's redelivery finds it).
func (b *ingestBatcher) store(ctx context.Context, r *ingestRow) error {
	r.done = make(chan error, 1)
	b.mu.Lock()
	b.pending = append(b.pending, r)
	start := b.flushers < b.maxFlushers
	if start {
		b.flushers++
	}
	b.mu.Unlock()
	if start {
		go b.run()
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run writes pending rows until none is left.
func (b *ingestBatcher) run() {
	for {
		b.mu.Lock()
		if len(b.pending) == 0 {
			b.flushers--
			b.mu.Unlock()
			return
		}
		n := min(len(b.pending), IngestMaxBatch)
		batch := make([]*ingestRow, n)
		copy(batch, b.pending)
		rest := copy(b.pending, b.pending[n:])
		clear(b.pending[rest:])
		b.pending = b.pending[:rest]
		b.mu.Unlock()
		b.flush(batch)
	}
}

// flush writes batch and answers every row's caller.
func (b *ingestBatcher) flush(batch []*ingestRow) {
	ctx, cancel := context.WithTimeout(context.Background(), ingestStoreTimeout)
	defer cancel()
	// Telegram may deliver the same update twice at once: write it once, answer both.
	uniq := batch[:0:0]
	var dups map[ingestKey][]*ingestRow
	seen := make(map[ingestKey]struct{}, len(batch))
	for _, r := range batch {
		k := ingestKey{r.botID, r.updateID}
		if _, ok := seen[k]; ok {
			if dups == nil {
				dups = map[ingestKey][]*ingestRow{}
			}
			dups[k] = append(dups[k], r)
			continue
		}
		seen[k] = struct{}{}
		uniq = append(uniq, r)
	}
	answer := func(r *ingestRow, err error) {
		r.done <- err
		for _, d := range dups[ingestKey{r.botID, r.updateID}] {
			d.done <- err
		}
	}

	b.batches.Add(1)
	b.rows.Add(int64(len(uniq)))
	inserted, err := b.insert(ctx, uniq)
	if err != nil && isDataException(err) && len(uniq) > 1 {
		b.fallbacks.Add(1)
		b.log.DebugContext(ctx, "telegram: a webhook batch has a bad row; writing its rows one by one", "rows", len(uniq))
		for _, r := range uniq {
			n, err := b.insert(ctx, []*ingestRow{r})
			metrics.WebhookBatch(n, 1+len(dups[ingestKey{r.botID, r.updateID}]), err)
			inserted += n
			answer(r, err)
		}
	} else {
		metrics.WebhookBatch(inserted, len(batch), err)
		for _, r := range uniq {
			answer(r, err)
		}
	}
	if inserted > 0 && b.onStored != nil {
		b.onStored()
	}
}

// insert writes rows in one INSERT ... ON CONFLICT (bot_id, update_id) DO NOTHING and
// returns how many were new. The SQL is built directly (values escaped by bun's dialect,
// as bun does for every query): a batch is up to IngestMaxBatch payloads of a few KB.
func (b *ingestBatcher) insert(ctx context.Context, rows []*ingestRow) (int64, error) {
	size := 128
	for _, r := range rows {
		size += len(r.payload) + 128
	}
	d := b.db.Dialect()
	q := make([]byte, 0, size)
	q = append(q, "INSERT INTO webhook_events (tenant_id, bot_id, update_id, update_type, payload) VALUES "...)
	for i, r := range rows {
		if i > 0 {
			q = append(q, ',')
		}
		q = append(q, '(')
		q = appendUUID(q, r.tenantID)
		q = append(q, ',')
		q = appendUUID(q, r.botID)
		q = append(q, ',')
		q = strconv.AppendInt(q, r.updateID, 10)
		q = append(q, ',')
		q = d.AppendString(q, r.updateType)
		q = append(q, ',')
		q = d.AppendString(q, string(r.payload))
		q = append(q, "::jsonb)"...)
	}
	q = append(q, " ON CONFLICT (bot_id, update_id) DO NOTHING"...)
	res, err := b.db.ExecContext(ctx, string(q))
	if err != nil {
		return 0, err
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// appendUUID appends id as a quoted SQL literal ('xxxxxxxx-...').
func appendUUID(b []byte, id uuid.UUID) []byte {
	b = append(b, '\'')
	var buf [36]byte
	hexUUID(buf[:], id)
	b = append(b, buf[:]...)
	return append(b, '\'')
}

// hexUUID writes the canonical 36-character form of id into dst.
func hexUUID(dst []byte, id uuid.UUID) {
	const hexDigits = "0123456789abcdef"
	j := 0
	for i, c := range id {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			dst[j] = '-'
			j++
		}
		dst[j] = hexDigits[c>>4]
		dst[j+1] = hexDigits[c&0x0f]
		j += 2
	}
}
