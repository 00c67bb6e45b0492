package broadcast

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
)

// RecipientStatuses are the recipient statuses a ?status= filter accepts (the Recipient*
// constants), in their stored spelling.
var RecipientStatuses = []string{RecipientQueued, RecipientSending, RecipientSent, RecipientFailed, RecipientDeferred, RecipientCancelled, RecipientSkipped, RecipientExpired}

// Statuses are the broadcast statuses a list ?status= filter accepts (the Status* constants).
var Statuses = []string{StatusDraft, StatusScheduled, StatusRunning, StatusPaused, StatusCompleted, StatusCancelled, StatusFailed}

// ExportPage is how many recipient rows EachRecipient reads per query: the CSV export holds
// at most this many rows in memory whatever the broadcast's size.
const ExportPage = 1000

// RecipientFilter selects a page of Recipients: Status ("" = all; else one of
// RecipientStatuses, case-insensitive), a cursor from a previous page and a limit
// (0 = page.DefaultLimit, at most page.MaxLimit).
type RecipientFilter struct {
	Status string
	Cursor string
	Limit  int
}

// RecipientRow is one recipient as the API shows it. Error is the last error ("" when
// none); TelegramMessageID is nil until sent; SentAt is zero until sent. A recipient of a
// broadcast not yet materialized (see Broadcast.Materialized) is shown from the stored
// audience with the status its counts give it (queued, or cancelled/failed with the
// broadcast), 0 attempts and the broadcast's UpdatedAt.
type RecipientRow struct {
	ContactID         uuid.UUID `bun:"contact_id,type:uuid"`
	ChatID            int64     `bun:"chat_id"`
	Status            string    `bun:"status"`
	Attempts          int       `bun:"attempts"`
	Error             string    `bun:"error"`
	TelegramMessageID *int64    `bun:"telegram_message_id"`
	SentAt            time.Time `bun:"sent_at,nullzero"`
	UpdatedAt         time.Time `bun:"updated_at"`
	// Cycle is the attempt cycle of the current status (1 until a retry-failed; 0 for a
	// recipient not written yet) and History the earlier cycles' last attempts as a JSON
	// array (control.go RetryFailed); nil when none.
	Cycle   int             `bun:"cycle"`
	History json.RawMessage `bun:"history,type:jsonb"`
}

// ValidateRecipientStatus normalises a ?status= value of the recipients: "" (all) or one of
// RecipientStatuses, case-insensitive. Errors: invalid_field (422) naming field.
func ValidateRecipientStatus(field, s string) (string, error) {
	if s == "" {
		return "", nil
	}
	return validate.Enum(field, s, RecipientStatuses...)
}

// ValidateStatuses normalises a comma list of broadcast statuses (each one of Statuses,
// case-insensitive; duplicates collapse). "" gives nil (all). Errors: invalid_field (422)
// naming field, also for an empty member ("queued,").
func ValidateStatuses(field, s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	var out []string
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		st, err := validate.Enum(field, part, Statuses...)
		if err != nil {
			return nil, err
		}
		if !seen[st] {
			seen[st] = true
			out = append(out, st)
		}
	}
	return out, nil
}

// Recipients returns one page of the recipients of the tenant's broadcast id, ordered by
// contact id (so that pages stay stable while statuses change), and the cursor of the next
// page ("" on the last). Errors: ErrNotFound (404, also for another tenant's broadcast),
// invalid_field status (422), page.ErrBadCursor, page.ErrBadLimit (422),
// apperr.ErrUnavailable (503).
func (s *Service) Recipients(ctx context.Context, tenantID, id uuid.UUID, f RecipientFilter) ([]RecipientRow, string, error) {
	status, err := ValidateRecipientStatus("status", f.Status)
	if err != nil {
		return nil, "", err
	}
	limit, err := page.Limit(f.Limit)
	if err != nil {
		return nil, "", err
	}
	after, err := page.DecodeUUID(f.Cursor)
	if err != nil {
		return nil, "", err
	}
	b, err := getBroadcast(ctx, s.db, tenantID, id)
	if err != nil {
		return nil, "", err
	}
	rows, err := s.recipientsPage(ctx, b, status, after, limit+1)
	if err != nil {
		return nil, "", err
	}
	if len(rows) <= limit {
		return rows, "", nil
	}
	rows = rows[:limit]
	return rows, page.EncodeUUID(rows[limit-1].ContactID), nil
}

// EachRecipient calls fn with the recipients of the tenant's broadcast id (status "" = all,
// else one of RecipientStatuses), in contact id order, ExportPage rows at a time, each page
// read by its own keyset query, so that memory stays flat whatever the size. It checks the
// broadcast and status before the first call: errors returned before fn was called are
// those of Recipients; later ones are fn's, or apperr.ErrUnavailable.
func (s *Service) EachRecipient(ctx context.Context, tenantID, id uuid.UUID, status string, fn func([]RecipientRow) error) error {
	status, err := ValidateRecipientStatus("status", status)
	if err != nil {
		return err
	}
	b, err := getBroadcast(ctx, s.db, tenantID, id)
	if err != nil {
		return err
	}
	var after *uuid.UUID
	for {
		rows, err := s.recipientsPage(ctx, b, status, after, ExportPage)
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			return nil
		}
		if err := fn(rows); err != nil {
			return err
		}
		if len(rows) < ExportPage {
			return nil
		}
		last := rows[len(rows)-1].ContactID
		after = &last
	}
}

// recipientsPage reads up to n recipients of b with contact id after after (nil: from the
// first). Before b is materialized they come from its audience; when the worker
// materializes it meanwhile (the audience is gone), b is read again and the rows answer.
func (s *Service) recipientsPage(ctx context.Context, b Broadcast, status string, after *uuid.UUID, n int) ([]RecipientRow, error) {
	if !b.Materialized {
		rows, err := audiencePage(ctx, s.db, b, status, after, n)
		if err != nil || len(rows) > 0 {
			return rows, err
		}
		fresh, err := getBroadcast(ctx, s.db, b.TenantID, b.ID)
		if err != nil || !fresh.Materialized {
			return nil, err
		}
	}
	var rows []RecipientRow
	q := s.db.NewSelect().Model((*Recipient)(nil)).
		Column("contact_id", "chat_id", "status", "attempts", "error", "telegram_message_id", "sent_at", "updated_at", "cycle", "history").
		Where("broadcast_id = ?", b.ID)
	if status != "" {
		q = q.Where("status = ?", status)
	}
	if after != nil {
		q = q.Where("contact_id > ?", *after)
	}
	if err := q.Order("contact_id").Limit(int64(n)).Scan(ctx, &rows); err != nil {
		return nil, apperr.Classify(fmt.Errorf("list recipients: %w", err))
	}
	return rows, nil
}

// audiencePage reads up to n recipients of the not yet materialized b from its audience:
// the contacts that are still the bot's (materialize leaves out the others), with the
// status of unmaterializedCounts. It reads a page of audience ids (sorted in the database),
// then those contacts by primary key, and reads on when contacts deleted since Create left
// the page short, so that a short page means the end.
func audiencePage(ctx context.Context, idb bun.IDB, b Broadcast, status string, after *uuid.UUID, n int) ([]RecipientRow, error) {
	st := RecipientQueued
	switch b.Status {
	case StatusCancelled:
		st = RecipientCancelled
	case StatusFailed:
		st = RecipientFailed
	}
	if status != "" && status != st {
		return nil, nil
	}
	afterID := uuid.Nil
	if after != nil {
		afterID = *after
	}
	var rows []RecipientRow
	for len(rows) < n {
		var ids []uuid.UUID
		err := idb.NewRaw(`SELECT u.id FROM broadcasts b, unnest(b.audience) AS u(id)
WHERE b.id = ? AND NOT b.materialized AND u.id > ?
ORDER BY u.id LIMIT ?`, b.ID, afterID, n-len(rows)).Scan(ctx, &ids)
		if err != nil {
			return nil, apperr.Classify(fmt.Errorf("list audience: %w", err))
		}
		if len(ids) == 0 {
			return rows, nil
		}
		var page []RecipientRow
		err = idb.NewRaw(`SELECT c.id AS contact_id, cb.telegram_chat_id AS chat_id, ? AS status, 0 AS attempts,
       '' AS error, NULL::bigint AS telegram_message_id, NULL::timestamptz AS sent_at, ?::timestamptz AS updated_at
FROM contacts c JOIN contact_bots cb ON cb.contact_id = c.id
WHERE c.id = ANY(?::uuid[]) AND c.tenant_id = ? AND cb.bot_id = ?
ORDER BY c.id`, st, b.UpdatedAt, uuidArray(ids), b.TenantID, b.BotID).Scan(ctx, &page)
		if err != nil {
			return nil, apperr.Classify(fmt.Errorf("list audience contacts: %w", err))
		}
		rows = append(rows, page...)
		afterID = ids[len(ids)-1]
	}
	return rows, nil
}
