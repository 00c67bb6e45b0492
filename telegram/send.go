package telegram

// STUB: helper-4 replaces this file and writes limits.go.

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/config"
)

// Outgoing is one message to send.
type Outgoing struct {
	Text      string
	ParseMode string
}

// OutcomeStatus classifies the result of Send.
type OutcomeStatus string

// Outcomes of Send.
const (
	OutcomeSent     OutcomeStatus = "sent"
	OutcomeRetry    OutcomeStatus = "retry"
	OutcomeWait     OutcomeStatus = "wait"
	OutcomeBlocked  OutcomeStatus = "blocked"
	OutcomeFailed   OutcomeStatus = "failed"
	OutcomeDeferred OutcomeStatus = "deferred"
)

// Outcome is the result of Send.
type Outcome struct {
	Status     OutcomeStatus
	MessageID  int64
	ChatID     int64
	RetryAfter time.Duration
	Until      time.Time
	Err        string
}

// NewMessage is the input of CreateMessage.
type NewMessage struct {
	BotID     uuid.UUID
	ContactID uuid.UUID
	Text      string
	ParseMode string
}

// Send sends msg to chatID through bot, keeping every limit.
func (s *Service) Send(ctx context.Context, bot Bot, chatID int64, msg Outgoing) Outcome {
	return Outcome{Status: OutcomeFailed, Err: "not implemented"}
}

// CreateMessage validates and queues a single message.
func (s *Service) CreateMessage(ctx context.Context, tenantID uuid.UUID, nm NewMessage) (contacts.Message, error) {
	return contacts.Message{}, errNotImplementedYet
}

// GetMessage returns the tenant's message.
func (s *Service) GetMessage(ctx context.Context, tenantID, id uuid.UUID) (contacts.Message, error) {
	return s.contacts.GetMessage(ctx, tenantID, id)
}

// HandleSend sends one queued message (task TypeSend).
func (s *Service) HandleSend(ctx context.Context, t *asynq.Task) error { return errNotImplementedYet }

// LimiterConfig configures a Limiter.
type LimiterConfig struct {
	GlobalRate   config.Rate
	BotRate      config.Rate
	ChatInterval time.Duration
}

// Limiter holds the send limits shared by all workers in Redis.
type Limiter struct {
	rdb redis.UniversalClient
	cfg LimiterConfig
}

// NewLimiter returns a Limiter.
func NewLimiter(rdb redis.UniversalClient, cfg LimiterConfig) *Limiter {
	return &Limiter{rdb: rdb, cfg: cfg}
}
