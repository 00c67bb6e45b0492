package broadcast

import (
	"encoding/json"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// Task types and queue of this package (asynq "domain:verb").
const (
	TypeRun        = "broadcast:run"   // send a broadcast's due recipients (HandleRun)
	TypeSweep      = "broadcast:sweep" // recover stuck recipients and lost runs (HandleSweep)
	QueueBroadcast = "broadcast"
)

// RunPayload is the payload of TypeRun.
type RunPayload struct {
	BroadcastID uuid.UUID `json:"broadcast_id"`
}

// NewRunTask returns the run task of broadcast id: TaskID "broadcast:run:<id>" (one
// scheduled run per broadcast; a duplicate enqueue is asynq.ErrTaskIDConflict), queue
// "broadcast", MaxRetry 25 (only real failures count: HandleRun's *telegram.RetryAfterError
// re-runs are not failures), Timeout 10 min (a run stops claiming after RunBudget).
func NewRunTask(id uuid.UUID) (*asynq.Task, error) {
	b, err := json.Marshal(RunPayload{BroadcastID: id})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeRun, b,
		asynq.TaskID(runTaskID(id)),
		asynq.Queue(QueueBroadcast), asynq.MaxRetry(25), asynq.Timeout(10*time.Minute)), nil
}

// runTaskID is the TaskID of broadcast id's run task.
func runTaskID(id uuid.UUID) string { return TypeRun + ":" + id.String() }

// NewSweepTask returns the periodic sweep task (queue "broadcast", no retry: the next tick
// sweeps again, Timeout 2 min).
func NewSweepTask() *asynq.Task {
	return asynq.NewTask(TypeSweep, nil, asynq.Queue(QueueBroadcast), asynq.MaxRetry(0), asynq.Timeout(2*time.Minute))
}

// RegisterTasks registers HandleRun and HandleSweep on mux.
func (s *Service) RegisterTasks(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeRun, s.HandleRun)
	mux.HandleFunc(TypeSweep, s.HandleSweep)
}
