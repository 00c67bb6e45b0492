package telegram

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
)

// Usage limits (GET /telegram/v1/bots/{id}/usage/).
const (
	// UsageDefaultDays is the range when from and to are not given: the last 7 UTC days,
	// today included.
	UsageDefaultDays = 7
	// UsageMaxDays is the longest range, in UTC days (from and to included).
	UsageMaxDays = 92
)

// UsageDay is one UTC day of a bot's traffic.
type UsageDay struct {
	// Date is the day's midnight, UTC.
	Date time.Time
	// Sent counts messages Telegram accepted that day (sent_at): single messages and
	// replies (messages) plus broadcast recipients.
	Sent int
	// Failed counts outbound messages that failed for good (messages by created_at,
	// broadcast recipients by updated_at): blocked, chat not found, retries exhausted.
	Failed int
	// Deferred counts broadcast recipients waiting now in status deferred (the daily limit
	// or the send window), by the day they were deferred (updated_at).
	Deferred int
	// Inbound counts messages received from users that day (stored inbound messages).
	Inbound int
}

// Usage returns bot botID's traffic per UTC day from from to to (both included; dates, their
// time of day ignored), every day present (zeros included), oldest first. Zero from and to
// mean the last UsageDefaultDays days up to today (s.now); only from: from up to today; only
// to: the UsageDefaultDays days ending at to. Errors: 422 invalid_field ("from" after "to",
// more than UsageMaxDays days: field "to"), ErrBotNotFound (404; a deleted bot's usage stays
// readable), apperr.ErrUnavailable (503).
//
// It is two GROUP BY queries over indexes: messages_bot_sent_idx and messages_bot_usage_idx
// for messages, and the bot's broadcasts (of the tenant, not completed before from) with
// broadcast_recipients_status_idx for recipients.
func (s *Service) Usage(ctx context.Context, tenantID, botID uuid.UUID, from, to time.Time) ([]UsageDay, error) {
	today := truncDay(s.now())
	switch {
	case from.IsZero() && to.IsZero():
		to = today
		from = to.AddDate(0, 0, -(UsageDefaultDays - 1))
	case to.IsZero():
		to = today
		from = truncDay(from)
	case from.IsZero():
		to = truncDay(to)
		from = to.AddDate(0, 0, -(UsageDefaultDays - 1))
	default:
		from, to = truncDay(from), truncDay(to)
	}
	if from.After(to) {
		return nil, validate.Field("from", "from (%s) must not be after to (%s)", from.Format(time.DateOnly), to.Format(time.DateOnly))
	}
	n := int(to.Sub(from)/(24*time.Hour)) + 1
	if n > UsageMaxDays {
		return nil, validate.Field("to", "the range is %d days; at most %d are allowed", n, UsageMaxDays)
	}
	if err := s.RequireBot(ctx, tenantID, botID); err != nil {
		return nil, err
	}
	end := to.AddDate(0, 0, 1)
	var rows []struct {
		Day  time.Time `bun:"day"`
		Kind string    `bun:"kind"`
		N    int       `bun:"n"`
	}
	err := s.db.NewRaw(`
SELECT (date_trunc('day', sent_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC') AS day, 'sent' AS kind, count(*) AS n
  FROM messages
 WHERE bot_id = ? AND direction = 'outbound' AND status = 'sent' AND sent_at >= ? AND sent_at < ?
 GROUP BY 1
UNION ALL
SELECT (date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), CASE status WHEN 'failed' THEN 'failed' ELSE 'inbound' END, count(*)
  FROM messages
 WHERE bot_id = ? AND status IN ('received', 'failed') AND created_at >= ? AND created_at < ?
 GROUP BY 1, 2
UNION ALL
SELECT (date_trunc('day', (CASE r.status WHEN 'sent' THEN r.sent_at ELSE r.updated_at END) AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'), r.status, count(*)
  FROM broadcasts b JOIN broadcast_recipients r ON r.broadcast_id = b.id
 WHERE b.tenant_id = ? AND b.bot_id = ? AND b.created_at < ? AND (b.completed_at IS NULL OR b.completed_at >= ?)
   AND r.status IN ('sent', 'failed', 'deferred')
   AND (CASE r.status WHEN 'sent' THEN r.sent_at ELSE r.updated_at END) >= ?
   AND (CASE r.status WHEN 'sent' THEN r.sent_at ELSE r.updated_at END) < ?
 GROUP BY 1, 2`,
		botID, from, end,
		botID, from, end,
		tenantID, botID, end, from, from, end).Scan(ctx, &rows)
	if err != nil {
		return nil, apperr.Classify(fmt.Errorf("usage of bot %s: %w", botID, err))
	}
	days := make([]UsageDay, n)
	for i := range days {
		days[i].Date = from.AddDate(0, 0, i)
	}
	for _, r := range rows {
		i := int(r.Day.UTC().Sub(from) / (24 * time.Hour))
		if i < 0 || i >= n {
			continue
		}
		switch r.Kind {
		case "sent":
			days[i].Sent += r.N
		case "failed":
			days[i].Failed += r.N
		case "deferred":
			days[i].Deferred += r.N
		case "inbound":
			days[i].Inbound += r.N
		}
	}
	return days, nil
}

// truncDay is t's UTC midnight.
func truncDay(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}
