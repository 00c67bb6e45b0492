package telegram

import (
	"context"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/internal/apperr"
)

// Sweep settings.
const (
	// SweepAge is how old a queued message must be before HandleSweep enqueues its task
	// again, and how old an unprocessed event must be to count as a backlog.
	SweepAge = 30 * time.Second
	// sweepBatch is the number of rows read per query.
	sweepBatch = 1000
	// sweepMaxEvents bounds the count of stale events.
	sweepMaxEvents = 20 * sweepBatch
)

// HandleSweep runs Sweep(ctx, SweepAge) (task TypeSweep, registered on a schedule by the
// worker). It is the outbox safety net of outbound messages: one whose send task was lost
// gets a task again. It logs a warning when stored events wait for processing longer than
// SweepAge (event processors not running, or falling behind). Errors: PostgreSQL failures.
func (s *Service) HandleSweep(ctx context.Context, t *asynq.Task) error {
	events, messages, err := s.Sweep(ctx, SweepAge)
	if messages > 0 {
		s.log.InfoContext(ctx, "telegram: sweep re-enqueued work", "messages", messages)
	}
	if events > 0 {
		s.log.WarnContext(ctx, "telegram: webhook events wait for processing; are the event processors running?",
			"events", events, "older_than", SweepAge.String())
	}
	return err
}

// Sweep enqueues telegram:send for every outbound message still queued (or sending past
// SendLease) whose row was last updated more than olderThan ago (sweepMessages: all of them,
// page by page; an archived task is replaced); live tasks are left alone and not counted, so
// messages is the number of tasks actually enqueued.
//
// Events need no re-enqueueing: webhook_events is the queue, every unprocessed event is
// claimed by an event processor (ProcessEvents), and one claimed by a processor that died
// is released with its transaction. events is the number of events still unprocessed that
// were received more than olderThan ago (counted up to 20,000), not counting those of bots
// that are disabled or invalid_token (they wait on purpose): a backlog to watch.
// Errors: apperr.ErrUnavailable when PostgreSQL or Redis fails (the counts so far are
// returned with it).
func (s *Service) Sweep(ctx context.Context, olderThan time.Duration) (events, messages int, err error) {
	err = s.db.NewRaw(`SELECT count(*) FROM (SELECT 1 FROM webhook_events WHERE processed_at IS NULL
		AND `+activeBotEventsSQL+` AND received_at < now() - ? * interval '1 microsecond' LIMIT ?) AS stale`,
		olderThan.Microseconds(), sweepMaxEvents).Scan(ctx, &events)
	if err != nil {
		return 0, 0, apperr.Classify(fmt.Errorf("sweep events: %w", err))
	}

	n, err := s.sweepMessages(ctx, olderThan)
	messages += n
	if err != nil {
		return events, messages, err
	}
	return events, messages, nil
}
