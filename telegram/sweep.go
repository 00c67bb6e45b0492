package telegram

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/internal/apperr"
)

// Sweep settings.
const (
	// SweepAge is how old an unprocessed event or a queued message must be before
	// HandleSweep enqueues its task again.
	SweepAge = 30 * time.Second
	// sweepBatch is the number of rows read per query.
	sweepBatch = 1000
	// sweepMaxEvents bounds the events examined by one Sweep.
	sweepMaxEvents = 20 * sweepBatch
)

// HandleSweep runs Sweep(ctx, SweepAge) (task TypeSweep, registered on a schedule by the
// worker). It is the outbox safety net: an event stored by Ingest whose task was lost (the
// enqueue failed after the INSERT, Redis lost data, a task was archived) or an outbound
// message whose send task was lost gets a task again. Errors: PostgreSQL failures.
func (s *Service) HandleSweep(ctx context.Context, t *asynq.Task) error {
	events, messages, err := s.Sweep(ctx, SweepAge)
	if events > 0 || messages > 0 {
		s.log.Info("telegram: sweep re-enqueued work", "events", events, "messages", messages)
	}
	return err
}

// Sweep enqueues telegram:update again for webhook events still unprocessed that were
// received more than olderThan ago (at most 20,000 per call, oldest first), and
// telegram:send for every outbound message still queued (or sending past SendLease) whose
// row was last updated more than olderThan ago (sweepMessages). Tasks that still exist
// (asynq.ErrTaskIDConflict) are left alone and not counted: events and messages are the
// numbers of tasks actually enqueued. Errors: apperr.ErrUnavailable when PostgreSQL or
// Redis fails (the counts so far are returned with it).
func (s *Service) Sweep(ctx context.Context, olderThan time.Duration) (events, messages int, err error) {
	var lastID int64
	for examined := 0; examined < sweepMaxEvents; {
		var ids []int64
		err := s.db.NewSelect().Model((*WebhookEvent)(nil)).Column("id").
			Where("processed_at IS NULL").
			Where("received_at < now() - ? * interval '1 microsecond'", olderThan.Microseconds()).
			Where("id > ?", lastID).OrderExpr("id").Limit(sweepBatch).Scan(ctx, &ids)
		if err != nil {
			return events, messages, apperr.Classify(fmt.Errorf("sweep events: %w", err))
		}
		for _, id := range ids {
			task, err := NewUpdateTask(id)
			if err != nil {
				return events, messages, err
			}
			n, err := s.enqueueCounted(ctx, task)
			if err != nil {
				return events, messages, err
			}
			events += n
		}
		if len(ids) < sweepBatch {
			break
		}
		examined += len(ids)
		lastID = ids[len(ids)-1]
	}

	n, err := s.sweepMessages(ctx, olderThan)
	messages += n
	if err != nil {
		return events, messages, err
	}
	return events, messages, nil
}

// enqueueCounted enqueues task and reports 1 when it was enqueued, 0 when a task with its
// TaskID exists already. Errors: apperr.ErrUnavailable.
func (s *Service) enqueueCounted(ctx context.Context, task *asynq.Task) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, ingestEnqueueTimeout)
	defer cancel()
	if _, err := s.queue.EnqueueContext(ctx, task); err != nil {
		if errors.Is(err, asynq.ErrTaskIDConflict) {
			return 0, nil
		}
		return 0, apperr.ErrUnavailable.Wrap(fmt.Errorf("enqueue %s: %w", task.Type(), err))
	}
	return 1, nil
}
