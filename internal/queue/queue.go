// Package queue holds the one helper botfleet uses to enqueue asynq tasks that carry a
// TaskID (CONVENTIONS.md §19).
package queue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
)

// EnqueueTimeout bounds one Enqueue, which runs detached from the caller's cancellation.
const EnqueueTimeout = 5 * time.Second

// Enqueue enqueues task, whose options must include asynq.Queue(queueName) and
// asynq.TaskID(taskID), on a context detached from ctx's cancellation (bounded by
// EnqueueTimeout), so that a client hanging up never leaves stored work without its task.
//
// A TaskID conflict is resolved by looking the task up with insp (nil: the conflict is
// taken as success): a live task (pending, scheduled, active, retry, aggregating) already
// covers the work, so enqueued is false and err nil; an archived or completed task is not
// live, and would block the id for as long as it is kept (asynq issue #492), so it is
// deleted and the task enqueued again. Errors: Redis failures.
//
// opts are added to the task's own options (e.g. a different TaskID, which must then be
// taskID).
func Enqueue(ctx context.Context, c *asynq.Client, insp *asynq.Inspector, task *asynq.Task, queueName, taskID string, opts ...asynq.Option) (enqueued bool, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), EnqueueTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		_, err := c.EnqueueContext(ctx, task, opts...)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, asynq.ErrTaskIDConflict) {
			return false, fmt.Errorf("enqueue %s: %w", task.Type(), err)
		}
		if insp == nil || attempt > 0 {
			return false, nil
		}
		info, err := insp.GetTaskInfo(queueName, taskID)
		if err != nil {
			if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
				continue // gone meanwhile: enqueue again
			}
			return false, fmt.Errorf("look up task %s: %w", taskID, err)
		}
		switch info.State {
		case asynq.TaskStateArchived, asynq.TaskStateCompleted:
			if err := insp.DeleteTask(queueName, taskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
				return false, fmt.Errorf("delete %s task %s: %w", info.State, taskID, err)
			}
		default:
			return false, nil
		}
	}
}
