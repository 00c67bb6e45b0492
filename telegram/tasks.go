package telegram

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
)

// Task types of this package (asynq "domain:verb").
const (
	TypeUpdate = "telegram:update" // process one stored webhook event
	TypeSend   = "telegram:send"   // send one outbound message (reply or POST /messages/)
	// TypeSendMany sends several outbound messages of one or more bots (a batch of replies).
	TypeSendMany = "telegram:send-many"
	TypeSweep    = "telegram:sweep" // re-enqueue stored-but-unprocessed events and stale queued messages
)

// Queues used by this package. Updates go first so that replies stay snappy.
const (
	QueueUpdates  = "updates"
	QueueOutbound = "outbound"
	QueueDefault  = "default"
)

// UpdatePayload is the payload of TypeUpdate: the webhook_events row id.
type UpdatePayload struct {
	EventID int64 `json:"event_id"`
}

// SendPayload is the payload of TypeSend: the messages row id.
type SendPayload struct {
	MessageID uuid.UUID `json:"message_id"`
}

// NewUpdateTask returns the task that processes webhook event eventID. Its TaskID is
// "telegram:update:<id>" so that duplicates collapse while the task is retained.
func NewUpdateTask(eventID int64) (*asynq.Task, error) {
	b, err := json.Marshal(UpdatePayload{EventID: eventID})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeUpdate, b,
		asynq.TaskID(fmt.Sprintf("%s:%d", TypeUpdate, eventID)),
		asynq.Queue(QueueUpdates), asynq.MaxRetry(10), asynq.Timeout(60*time.Second),
		asynq.Retention(10*time.Minute)), nil
}

// NewSendTask returns the task that sends message id. Attempts are counted in PostgreSQL
// (TELEGRAM_MAX_RETRIES), so asynq's MaxRetry is only a backstop above it.
func NewSendTask(id uuid.UUID) (*asynq.Task, error) {
	b, err := json.Marshal(SendPayload{MessageID: id})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeSend, b,
		asynq.TaskID(sendTaskID(id)),
		asynq.Queue(QueueOutbound), asynq.MaxRetry(50), asynq.Timeout(2*time.Minute),
		asynq.Retention(10*time.Minute)), nil
}

// SendManyPayload is the payload of TypeSendMany: outbound messages, in one batch per bot.
type SendManyPayload struct {
	Batches []SendManyBatch `json:"batches"`
}

// SendManyBatch is the outbound messages of one bot in a TypeSendMany task.
type SendManyBatch struct {
	BotID      uuid.UUID   `json:"bot_app_id"`
	MessageIDs []uuid.UUID `json:"message_ids"`
}

// NewSendManyTask returns the task that sends batches (HandleSendMany: the bots' batches at
// once, each at its bot's pace), queue outbound. It has no TaskID: sending is idempotent per
// message (ClaimSends), and the sweep enqueues a telegram:send task for any message left
// queued. MaxRetry is a backstop: attempts are counted per message (TELEGRAM_MAX_RETRIES).
func NewSendManyTask(batches ...SendManyBatch) (*asynq.Task, error) {
	b, err := json.Marshal(SendManyPayload{Batches: batches})
	if err != nil {
		return nil, err
	}
	return asynq.NewTask(TypeSendMany, b, asynq.Queue(QueueOutbound), asynq.MaxRetry(50), asynq.Timeout(2*time.Minute)), nil
}

// sendTaskID is the TaskID of message id's send task.
func sendTaskID(id uuid.UUID) string { return TypeSend + ":" + id.String() }

// NewSweepTask returns the periodic sweep task.
func NewSweepTask() *asynq.Task {
	return asynq.NewTask(TypeSweep, nil, asynq.Queue(QueueDefault), asynq.MaxRetry(0), asynq.Timeout(5*time.Minute))
}

// RegisterTasks registers this package's task handlers on mux.
func (s *Service) RegisterTasks(mux *asynq.ServeMux) {
	mux.HandleFunc(TypeUpdate, s.HandleUpdate)
	mux.HandleFunc(TypeSend, s.HandleSend)
	mux.HandleFunc(TypeSendMany, s.HandleSendMany)
	mux.HandleFunc(TypeSweep, s.HandleSweep)
	mux.HandleFunc(TypeHealthCheck, s.HandleHealthCheck) // health.go
}
