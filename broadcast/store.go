package broadcast

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
)

// uuidArray formats ids as a PostgreSQL array literal; use it as `?::uuid[]`.
func uuidArray(ids []uuid.UUID) any {
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	return pgdialect.Array(strs)
}

// foreignRecipients returns the ids that are not contacts of tenantID (unknown) and those
// that are contacts not linked to botID (otherBot: the person never wrote to that bot), in
// one query that returns nothing in the common case.
func foreignRecipients(ctx context.Context, idb bun.IDB, tenantID, botID uuid.UUID, ids []uuid.UUID) (unknown, otherBot []uuid.UUID, err error) {
	var rows []struct {
		ID    uuid.UUID `bun:"id,type:uuid"`
		Known bool      `bun:"known"`
	}
	err = idb.NewRaw(`SELECT u.id, c.id IS NOT NULL AS known
FROM unnest(?::uuid[]) AS u(id)
LEFT JOIN contacts c ON c.id = u.id AND c.tenant_id = ?
LEFT JOIN contact_bots cb ON cb.contact_id = c.id AND cb.bot_id = ?
WHERE cb.bot_id IS NULL`, uuidArray(ids), tenantID, botID).Scan(ctx, &rows)
	if err != nil && !database.IsNoRows(err) {
		return nil, nil, apperr.Classify(fmt.Errorf("look up recipients: %w", err))
	}
	for _, r := range rows {
		if !r.Known {
			unknown = append(unknown, r.ID)
		} else {
			otherBot = append(otherBot, r.ID)
		}
	}
	return unknown, otherBot, nil
}

// insertAudience inserts broadcast b (not materialized) with its audience ids: the worker's
// first run writes the recipient rows (materialize). b.ID, when set, is kept (Update).
func insertAudience(ctx context.Context, idb bun.IDB, b *Broadcast, ids []uuid.UUID) error {
	b.Materialized = false
	_, err := idb.NewInsert().Model(b).Value("audience", "?::uuid[]", uuidArray(ids)).Returning("*").Exec(ctx)
	if err != nil {
		return fmt.Errorf("insert broadcast: %w", err)
	}
	return nil
}

// materialize writes the recipient rows of broadcast id from its audience, in one
// server-side INSERT … SELECT (blocked contacts stored as skipped, contacts deleted since
// Create left out and Total corrected), and marks it materialized. It is a no-op for a
// materialized broadcast, so concurrent runs are safe.
func materialize(ctx context.Context, db *bun.DB, id uuid.UUID) error {
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var done bool
		if err := tx.NewRaw("SELECT materialized FROM broadcasts WHERE id = ? FOR UPDATE", id).Scan(ctx, &done); err != nil {
			return fmt.Errorf("lock broadcast: %w", err)
		}
		if done {
			return nil
		}
		res, err := tx.NewRaw(`INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id, status, error)
SELECT b.id, c.id, cb.telegram_chat_id, `+recipientStatusSQL+`, `+recipientErrorSQL+`
FROM broadcasts b, unnest(b.audience) AS u(id)
JOIN contacts c ON c.id = u.id
JOIN contact_bots cb ON cb.contact_id = c.id
WHERE b.id = ? AND c.tenant_id = b.tenant_id AND cb.bot_id = b.bot_id
ON CONFLICT (broadcast_id, contact_id) DO NOTHING`, id).Exec(ctx)
		if err != nil {
			return fmt.Errorf("insert recipients: %w", err)
		}
		n, _ := res.RowsAffected()
		_, err = tx.NewRaw("UPDATE broadcasts SET materialized = true, audience = NULL, total = ?, updated_at = now() WHERE id = ?", n, id).Exec(ctx)
		return err
	})
	return apperr.Classify(err)
}

// insertBroadcast inserts b and one recipient per contact in ids (all of them contacts of
// b's tenant and bot) with one INSERT … SELECT. Blocked contacts are stored as skipped.
// b.Total is corrected when a contact vanished in the meantime.
func insertBroadcast(ctx context.Context, tx bun.Tx, b *Broadcast, ids []uuid.UUID) error {
	if _, err := tx.NewInsert().Model(b).Returning("*").Exec(ctx); err != nil {
		return fmt.Errorf("insert broadcast: %w", err)
	}
	res, err := tx.NewRaw(`INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id, status, error)
SELECT ?, c.id, cb.telegram_chat_id, `+recipientStatusSQL+`, `+recipientErrorSQL+`
FROM contacts c JOIN contact_bots cb ON cb.contact_id = c.id JOIN broadcasts b ON b.id = ?
WHERE c.tenant_id = ? AND cb.bot_id = ? AND c.id = ANY(?::uuid[])`,
		b.ID, b.ID, b.TenantID, b.BotID, uuidArray(ids)).Exec(ctx)
	if err != nil {
		return fmt.Errorf("insert recipients: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && int(n) != b.Total {
		b.Total = int(n)
		if _, err := tx.NewUpdate().Model(b).Column("total").WherePK().Exec(ctx); err != nil {
			return fmt.Errorf("update total: %w", err)
		}
	}
	return nil
}

// getBroadcast returns the tenant's broadcast id. Errors: ErrNotFound.
func getBroadcast(ctx context.Context, idb bun.IDB, tenantID, id uuid.UUID) (Broadcast, error) {
	var b Broadcast
	err := idb.NewSelect().Model(&b).Where("b.tenant_id = ?", tenantID).Where("b.id = ?", id).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Broadcast{}, ErrNotFound
		}
		return Broadcast{}, apperr.Classify(fmt.Errorf("get broadcast: %w", err))
	}
	return b, nil
}

// broadcastByID returns broadcast id whatever its tenant (worker use). Errors: ErrNotFound.
func broadcastByID(ctx context.Context, idb bun.IDB, id uuid.UUID) (Broadcast, error) {
	var b Broadcast
	if err := idb.NewSelect().Model(&b).Where("b.id = ?", id).Scan(ctx); err != nil {
		if database.IsNoRows(err) {
			return Broadcast{}, ErrNotFound
		}
		return Broadcast{}, apperr.Classify(fmt.Errorf("get broadcast: %w", err))
	}
	return b, nil
}

// lockBroadcast returns the tenant's broadcast id locked FOR UPDATE. Errors: ErrNotFound.
func lockBroadcast(ctx context.Context, tx bun.Tx, tenantID, id uuid.UUID) (Broadcast, error) {
	var b Broadcast
	err := tx.NewSelect().Model(&b).Where("b.tenant_id = ?", tenantID).Where("b.id = ?", id).For("UPDATE").Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Broadcast{}, ErrNotFound
		}
		return Broadcast{}, fmt.Errorf("lock broadcast: %w", err)
	}
	return b, nil
}

// statusForShare returns the status of broadcast id locked FOR SHARE, so that Cancel (FOR
// UPDATE) and a run's claim or write never interleave. Errors: ErrNotFound.
func statusForShare(ctx context.Context, tx bun.Tx, id uuid.UUID) (string, error) {
	var status string
	err := tx.NewSelect().Model((*Broadcast)(nil)).Column("status").Where("id = ?", id).For("SHARE").Scan(ctx, &status)
	if err != nil {
		if database.IsNoRows(err) {
			return "", ErrNotFound
		}
		return "", fmt.Errorf("read broadcast status: %w", err)
	}
	return status, nil
}

// cancelBroadcast marks b (locked) cancelled and its queued and deferred recipients cancelled.
func cancelBroadcast(ctx context.Context, tx bun.Tx, b *Broadcast) error {
	_, err := tx.NewUpdate().Model(b).
		Set("status = ?", StatusCancelled).Set("updated_at = now()").Set("completed_at = now()").
		WherePK().Returning("*").Exec(ctx)
	if err != nil {
		return fmt.Errorf("cancel broadcast: %w", err)
	}
	_, err = tx.NewUpdate().Model((*Recipient)(nil)).
		Set("status = ?", RecipientCancelled).Set("updated_at = now()").
		Where("broadcast_id = ?", b.ID).Where("status IN (?, ?)", RecipientQueued, RecipientDeferred).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("cancel recipients: %w", err)
	}
	return nil
}

// listBroadcasts returns the tenant's broadcasts matching f's filters newest first after a,
// limit+1 of them (page.Newest).
func listBroadcasts(ctx context.Context, idb bun.IDB, tenantID uuid.UUID, f Filter, a *page.After, limit int) ([]Broadcast, error) {
	var bs []Broadcast
	q := idb.NewSelect().Model(&bs).Where("b.tenant_id = ?", tenantID)
	if len(f.Statuses) > 0 {
		q = q.Where("b.status = ANY(?::text[])", pgdialect.Array(f.Statuses))
	}
	if f.BotID != nil {
		q = q.Where("b.bot_id = ?", *f.BotID)
	}
	if !f.CreatedAfter.IsZero() {
		q = q.Where("b.created_at >= ?", f.CreatedAfter)
	}
	if !f.CreatedBefore.IsZero() {
		q = q.Where("b.created_at < ?", f.CreatedBefore)
	}
	if err := page.Newest(q, "b", a, limit).Scan(ctx); err != nil {
		return nil, apperr.Classify(fmt.Errorf("list broadcasts: %w", err))
	}
	return bs, nil
}

// statusCount is one row of the recipients grouped by status.
type statusCount struct {
	BroadcastID uuid.UUID `bun:"broadcast_id,type:uuid"`
	Status      string    `bun:"status"`
	N           int       `bun:"n"`
}

func (c *Counts) add(status string, n int) {
	c.Total += n
	switch status {
	case RecipientQueued, RecipientSending:
		c.Pending += n
	case RecipientSent:
		c.Sent += n
	case RecipientFailed:
		c.Failed += n
	case RecipientDeferred:
		c.Deferred += n
	case RecipientCancelled:
		c.Cancelled += n
	case RecipientSkipped:
		c.Skipped += n
	case RecipientExpired:
		c.Expired += n
	}
}

// countsOfBroadcast returns the counts of b: from its recipient rows, or, before they are
// written (not materialized), all pending (cancelled or failed with the broadcast).
func countsOfBroadcast(ctx context.Context, idb bun.IDB, b Broadcast) (Counts, error) {
	if b.Materialized {
		return countsOf(ctx, idb, b.ID)
	}
	return unmaterializedCounts(b), nil
}

// unmaterializedCounts are the counts of a broadcast whose recipients are not written yet.
func unmaterializedCounts(b Broadcast) Counts {
	c := Counts{Total: b.Total}
	switch b.Status {
	case StatusCancelled:
		c.Cancelled = b.Total
	case StatusFailed:
		c.Failed = b.Total
	default:
		c.Pending = b.Total
	}
	return c
}

// countsOf returns the counts of broadcast id.
func countsOf(ctx context.Context, idb bun.IDB, id uuid.UUID) (Counts, error) {
	m, err := countsOfMany(ctx, idb, []uuid.UUID{id})
	if err != nil {
		return Counts{}, err
	}
	return m[id], nil
}

// countsOfMany returns the counts of each of ids (zero Counts for one without recipients).
func countsOfMany(ctx context.Context, idb bun.IDB, ids []uuid.UUID) (map[uuid.UUID]Counts, error) {
	m := make(map[uuid.UUID]Counts, len(ids))
	if len(ids) == 0 {
		return m, nil
	}
	var rows []statusCount
	err := idb.NewSelect().Model((*Recipient)(nil)).
		Column("broadcast_id", "status").ColumnExpr("count(*) AS n").
		Where("broadcast_id = ANY(?::uuid[])", uuidArray(ids)).
		GroupExpr("broadcast_id, status").Scan(ctx, &rows)
	if err != nil {
		return nil, apperr.Classify(fmt.Errorf("count recipients: %w", err))
	}
	for _, r := range rows {
		c := m[r.BroadcastID]
		c.add(r.Status, r.N)
		m[r.BroadcastID] = c
	}
	return m, nil
}

// markRunning moves broadcast id from scheduled (or running) to running and sets started_at
// once. It reports false when the broadcast is in another status (cancelled or paused
// meanwhile).
func markRunning(ctx context.Context, idb bun.IDB, id uuid.UUID) (bool, error) {
	res, err := idb.NewUpdate().Model((*Broadcast)(nil)).
		Set("status = ?", StatusRunning).Set("started_at = COALESCE(started_at, now())").Set("updated_at = now()").
		Where("id = ?", id).Where("status IN (?, ?)", StatusScheduled, StatusRunning).Exec(ctx)
	if err != nil {
		return false, fmt.Errorf("mark running: %w", err)
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// claimed is a recipient taken by a run. The contact's values are read only for a template
// with variables (claim's withContact), by the claim query itself.
type claimed struct {
	ID       int64 `bun:"id"`
	ChatID   int64 `bun:"chat_id"`
	Attempts int   `bun:"attempts"`

	FirstName  string              `bun:"first_name"`
	LastName   string              `bun:"last_name"`
	Username   string              `bun:"username"`
	Attributes contacts.Attributes `bun:"attributes,type:jsonb"`
}

// claim takes up to limit due recipients of running broadcast id (status queued or deferred,
// due_at <= now, the service clock (timing.go), oldest due first) and marks them sending, counting an attempt before
// Telegram is called (a recipient that may have been sent always has a record saying so;
// outcomes that sent nothing give the attempt back). Rows locked by another run are
// skipped. It reports false, claiming nothing, when the broadcast is no longer running.
// With withContact the same statement also returns each recipient's contact values
// (first_name, last_name, username, attributes) for personalised text; without it the
// contacts table is not read.
func claim(ctx context.Context, db *bun.DB, id uuid.UUID, limit int, withContact bool, now time.Time) ([]claimed, bool, error) {
	var rows []claimed
	running := true
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		status, err := statusForShare(ctx, tx, id)
		if err != nil {
			return err
		}
		if status != StatusRunning {
			running = false
			return nil
		}
		// ORDER BY due_at, id follows broadcast_recipients_due_idx (broadcast_id, due_at, id),
		// so a claim reads about limit index entries however many recipients are due.
		return tx.NewRaw(`WITH cl AS (UPDATE broadcast_recipients AS r
SET status = ?, attempts = r.attempts + 1, claimed_at = now(), updated_at = now()
WHERE r.id IN (
	SELECT id FROM broadcast_recipients
	WHERE broadcast_id = ? AND status IN (?, ?) AND due_at <= ?
	ORDER BY due_at, id
	LIMIT ?
	FOR UPDATE SKIP LOCKED)
RETURNING r.id, r.chat_id, r.attempts, r.contact_id)
SELECT cl.id, cl.chat_id, cl.attempts, COALESCE(c.first_name, '') AS first_name, COALESCE(c.last_name, '') AS last_name,
       COALESCE(c.telegram_username, '') AS username, COALESCE(c.attributes, '{}') AS attributes
FROM cl LEFT JOIN contacts c ON ? AND c.id = cl.contact_id`,
			RecipientSending, id, RecipientQueued, RecipientDeferred, now, limit, withContact).Scan(ctx, &rows)
	})
	if err != nil {
		return nil, false, apperr.Classify(fmt.Errorf("claim recipients: %w", err))
	}
	return rows, running, nil
}

// result is the outcome of one claimed recipient, written back by writeResults.
type result struct {
	ID     int64  `bun:"id"`
	Status string `bun:"status"`
	// Attempts is the new attempt count.
	Attempts int `bun:"attempts"`
	// DueAt is an absolute due time (a deferral); zero means DueInMS.
	DueAt time.Time `bun:"due_at,nullzero"`
	// DueInMS is the due time relative to the database's now(), in milliseconds.
	DueInMS int64 `bun:"due_in_ms"`
	// Error replaces the recipient's error unless KeepError.
	Error     string `bun:"error"`
	KeepError bool   `bun:"keep_error"`
	// MessageID is Telegram's message_id of a sent message.
	MessageID *int64 `bun:"telegram_message_id"`
	// ChatID is the chat the message went to (it changes after a migrate_to_chat_id).
	ChatID int64 `bun:"chat_id"`
	Sent   bool  `bun:"sent"`
	// Kind is the failure kind of a failed recipient for the auto-pause (failureKind);
	// not written.
	Kind string `bun:"-"`
}

// writeResults writes results with one UPDATE … FROM (VALUES …), the broadcast row locked
// FOR SHARE for the statement (so that it never interleaves with Cancel): in a cancelled or
// failed broadcast the recipients that would wait again (queued, deferred) become cancelled
// or failed. With deferUntil set (the bot's daily limit is used up), every other recipient of
// a running broadcast that would be due before it is deferred to it as well, in the same
// transaction.
func (s *Service) writeResults(ctx context.Context, id uuid.UUID, rs []result, deferUntil time.Time) error {
	if deferUntil.IsZero() {
		return apperr.Classify(updateResults(ctx, s.db, id, rs))
	}
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := updateResults(ctx, tx, id, rs); err != nil {
			return err
		}
		_, err := tx.NewRaw(`UPDATE broadcast_recipients SET status = ?, due_at = ?, updated_at = now()
WHERE broadcast_id = ? AND status IN (?, ?) AND due_at < ?
  AND EXISTS (SELECT 1 FROM broadcasts WHERE id = ? AND status NOT IN (?, ?))`,
			RecipientDeferred, deferUntil, id, RecipientQueued, RecipientDeferred, deferUntil,
			id, StatusCancelled, StatusFailed).Exec(ctx)
		if err != nil {
			return fmt.Errorf("defer recipients: %w", err)
		}
		return nil
	})
	return apperr.Classify(err)
}

// updateResults is writeResults' UPDATE on idb; a sent recipient keeps errInterrupted (an
// earlier attempt may have been delivered), and a row that is no longer "sending" (taken
// back by the sweep) is left alone.
func updateResults(ctx context.Context, idb bun.IDB, id uuid.UUID, rs []result) error {
	if len(rs) == 0 {
		return nil
	}
	_, err := idb.NewUpdate().
		With("_b", idb.NewRaw("SELECT status FROM broadcasts WHERE id = ? FOR SHARE", id)).
		With("_data", idb.NewValues(&rs)).
		Model((*Recipient)(nil)).TableExpr("_data").TableExpr("_b").
		Set("status = CASE WHEN _b.status IN (?, ?) AND _data.status IN (?, ?) THEN (CASE WHEN _b.status = ? THEN ? ELSE ? END) ELSE _data.status END",
			StatusCancelled, StatusFailed, RecipientQueued, RecipientDeferred, StatusFailed, RecipientFailed, RecipientCancelled).
		Set("attempts = _data.attempts").
		Set("due_at = COALESCE(_data.due_at, now() + _data.due_in_ms * interval '1 millisecond')").
		Set("error = CASE WHEN _data.keep_error OR (_data.sent AND r.error = ?) THEN r.error ELSE _data.error END", errInterrupted).
		Set("telegram_message_id = COALESCE(_data.telegram_message_id, r.telegram_message_id)").
		Set("chat_id = _data.chat_id").
		Set("sent_at = CASE WHEN _data.sent THEN now() ELSE r.sent_at END").
		Set("claimed_at = NULL").
		Set("updated_at = now()").
		Where("r.id = _data.id").Where("r.status = ?", RecipientSending).
		Exec(ctx)
	if err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// leftover describes what a broadcast still has to send.
type leftover struct {
	// Open counts recipients in queued, deferred or sending.
	Open int `bun:"open"`
	// Waiting counts recipients in queued or deferred.
	Waiting int `bun:"waiting"`
	// DueInMS is the time from the database's now() to the earliest due_at of a waiting
	// recipient, in milliseconds (negative when one is due already).
	DueInMS *float64 `bun:"due_in_ms"`
	// DueAt is the earliest due_at of a waiting recipient (nil when none).
	DueAt *time.Time `bun:"due_at"`
}

// remaining returns what broadcast id still has to send.
func remaining(ctx context.Context, idb bun.IDB, id uuid.UUID) (leftover, error) {
	var l leftover
	err := idb.NewRaw(`SELECT
	count(*) AS open,
	count(*) FILTER (WHERE status IN (?, ?)) AS waiting,
	extract(epoch FROM min(due_at) FILTER (WHERE status IN (?, ?)) - now()) * 1000 AS due_in_ms,
	min(due_at) FILTER (WHERE status IN (?, ?)) AS due_at
FROM broadcast_recipients
WHERE broadcast_id = ? AND status IN (?, ?, ?)`,
		RecipientQueued, RecipientDeferred, RecipientQueued, RecipientDeferred, RecipientQueued, RecipientDeferred,
		id, RecipientQueued, RecipientDeferred, RecipientSending).Scan(ctx, &l)
	if err != nil {
		return leftover{}, apperr.Classify(fmt.Errorf("remaining recipients: %w", err))
	}
	return l, nil
}

// complete marks running broadcast id completed when it has no open recipient left; it
// reports whether it did.
func complete(ctx context.Context, idb bun.IDB, id uuid.UUID) (bool, error) {
	res, err := idb.NewRaw(`UPDATE broadcasts SET status = ?, completed_at = now(), updated_at = now()
WHERE id = ? AND status = ? AND NOT EXISTS (
	SELECT 1 FROM broadcast_recipients WHERE broadcast_id = ? AND status IN (?, ?, ?))`,
		StatusCompleted, id, StatusRunning, id, RecipientQueued, RecipientDeferred, RecipientSending).Exec(ctx)
	if err != nil {
		return false, apperr.Classify(fmt.Errorf("complete broadcast: %w", err))
	}
	n, _ := res.RowsAffected()
	return n == 1, nil
}

// failBroadcast marks scheduled or running broadcast id failed with reason and fails its queued
// and deferred recipients with the same reason.
func failBroadcast(ctx context.Context, db *bun.DB, id uuid.UUID, reason string) error {
	err := db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res, err := tx.NewUpdate().Model((*Broadcast)(nil)).
			Set("status = ?", StatusFailed).Set("error = ?", reason).
			Set("completed_at = now()").Set("updated_at = now()").
			Where("id = ?", id).Where("status IN (?, ?)", StatusScheduled, StatusRunning).Exec(ctx)
		if err != nil {
			return fmt.Errorf("fail broadcast: %w", err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.NewUpdate().Model((*Recipient)(nil)).
			Set("status = ?", RecipientFailed).Set("error = ?", reason).Set("updated_at = now()").
			Where("broadcast_id = ?", id).Where("status IN (?, ?)", RecipientQueued, RecipientDeferred).Exec(ctx)
		if err != nil {
			return fmt.Errorf("fail recipients: %w", err)
		}
		return nil
	})
	return apperr.Classify(err)
}

// releaseStuck gives back recipients claimed (sending) more than age ago (by the database's
// clock), whose worker presumably died: queued again in a scheduled, running or paused broadcast,
// cancelled or failed in a cancelled or failed one, with their attempt still counted and
// errInterrupted as error (the send may have reached Telegram). It returns the broadcasts
// it released recipients of.
func releaseStuck(ctx context.Context, idb bun.IDB, age time.Duration) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	err := idb.NewRaw(`WITH released AS (
UPDATE broadcast_recipients AS r
SET status = CASE b.status WHEN ? THEN ? WHEN ? THEN ? ELSE ? END,
    error = CASE WHEN b.status = ? THEN b.error ELSE ? END,
    claimed_at = NULL, updated_at = now()
FROM broadcasts b
WHERE b.id = r.broadcast_id AND r.status = ? AND r.claimed_at < now() - ? * interval '1 millisecond'
RETURNING r.broadcast_id)
SELECT DISTINCT broadcast_id FROM released`,
		StatusCancelled, RecipientCancelled, StatusFailed, RecipientFailed, RecipientQueued,
		StatusFailed, errInterrupted, RecipientSending, age.Milliseconds()).Scan(ctx, &ids)
	if err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("release stuck recipients: %w", err))
	}
	return ids, nil
}

// runnable returns up to limit scheduled (with send_at reached) or running broadcasts with
// an id after afterID (uuid.Nil: from the start), ordered by id, that have a recipient due
// now, or nothing left to send (so that their run completes them), or that have expired
// (expires_at passed: their run expires the recipients left). Callers page with the last id
// returned. Drafts and paused broadcasts are never runnable.
func runnable(ctx context.Context, idb bun.IDB, afterID uuid.UUID, limit int) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	err := idb.NewRaw(`SELECT b.id FROM broadcasts b
WHERE b.status IN (?, ?) AND b.id > ? AND (b.send_at IS NULL OR b.send_at <= now()) AND (
	EXISTS (SELECT 1 FROM broadcast_recipients r
	        WHERE r.broadcast_id = b.id AND r.status IN (?, ?) AND r.due_at <= now())
	OR NOT EXISTS (SELECT 1 FROM broadcast_recipients r
	        WHERE r.broadcast_id = b.id AND r.status IN (?, ?, ?))
	OR b.expires_at <= now())
ORDER BY b.id
LIMIT ?`,
		StatusScheduled, StatusRunning, afterID, RecipientQueued, RecipientDeferred,
		RecipientQueued, RecipientDeferred, RecipientSending, limit).Scan(ctx, &ids)
	if err != nil {
		return nil, apperr.Classify(fmt.Errorf("find runnable broadcasts: %w", err))
	}
	return ids, nil
}
