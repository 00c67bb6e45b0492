// Package callbacks delivers the tenant's events to its webhook endpoints (issue 9, "Event
// callbacks to the tenant"): endpoints with a signing secret, an outbox of deliveries
// written in the same transaction as the change that caused the event (Emit), and a
// delivery loop in the worker that POSTs them, signed with Stripe's scheme, retried with
// exponential backoff for up to 24 hours.
//
// Dependencies: callbacks sits below telegram (telegram and broadcast call Emit), so it
// imports neither; the secrets are sealed by a Sealer (telegram.Keyring).
package callbacks

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
)

// Event types (the "type" of a delivery's body).
const (
	// EventMessageReceived: an inbound message was stored (telegram.processBatch).
	EventMessageReceived = "message.received"
	// EventMessageSent: an outbound message (POST /messages/, a command reply) reached Telegram.
	EventMessageSent = "message.sent"
	// EventMessageFailed: an outbound message failed for good.
	EventMessageFailed = "message.failed"
	// EventContactCreated: a Telegram user wrote to a bot for the first time.
	EventContactCreated = "contact.created"
	// EventContactBlocked: the user blocked the bot (my_chat_member kicked).
	EventContactBlocked = "contact.blocked"
	// EventContactOptedOut: the user sent /stop.
	EventContactOptedOut = "contact.opted_out"
	// EventContactLinked: a contact got an external_id by account linking (EmitContactLinked).
	EventContactLinked = "contact.linked"
	// EventBroadcastCompleted: a broadcast has no recipient left to send to.
	EventBroadcastCompleted = "broadcast.completed"
)

// EventTypes lists every event type, in documentation order.
var EventTypes = []string{
	EventMessageReceived, EventMessageSent, EventMessageFailed,
	EventContactCreated, EventContactBlocked, EventContactOptedOut, EventContactLinked,
	EventBroadcastCompleted,
}

// Delivery statuses.
const (
	StatusPending   = "pending"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// Errors returned by this package.
var (
	ErrNotFound         = apperr.NotFound("webhook_endpoint_not_found", "webhook endpoint not found")
	ErrDeliveryNotFound = apperr.NotFound("webhook_delivery_not_found", "webhook delivery not found")
	// ErrPrivateAddress is the failed attempt of a delivery whose URL resolves to a
	// loopback, private, link-local or otherwise non-public address while
	// ALLOW_PRIVATE_CALLBACKS is false: nothing was sent.
	ErrPrivateAddress = apperr.Invalid("private_address", "private address refused")
)

// Sealer seals and opens secrets bound to an id (telegram.Keyring: AES-256-GCM with
// ENCRYPTION_KEY, the id as associated data).
type Sealer interface {
	Seal(id uuid.UUID, secret string) ([]byte, error)
	Open(id uuid.UUID, sealed []byte) (string, error)
}

// Defaults of Deps.
const (
	// DefaultTimeout bounds one delivery POST (connect, write, answer): 10 s.
	DefaultTimeout = 10 * time.Second
	// DefaultMaxAge is how long a delivery is retried after its event: 24 h.
	DefaultMaxAge = 24 * time.Hour
	// DefaultBackoffBase is the delay after the first failed attempt; it doubles after each
	// (with ±20% jitter) up to DefaultBackoffMax.
	DefaultBackoffBase = 10 * time.Second
	// DefaultBackoffMax caps the delay between two attempts: 1 h.
	DefaultBackoffMax = time.Hour
	// DefaultPollInterval is how often the delivery loop looks for due deliveries when it
	// found none the last time.
	DefaultPollInterval = time.Second
	// SecretOverlap is how long the previous secret still signs after rotate-secret: 24 h.
	SecretOverlap = 24 * time.Hour
)

// Deps are the Service's collaborators and settings.
type Deps struct {
	DB *bun.DB
	// Redis carries subscription cache invalidations between processes (nil: the cache
	// relies on its TTL alone).
	Redis  redis.UniversalClient
	Sealer Sealer
	Log    *slog.Logger
	// AllowPrivate accepts URLs that resolve to loopback, private, link-local and other
	// non-public addresses, at save and at delivery (ALLOW_PRIVATE_CALLBACKS). Default: false.
	AllowPrivate bool
	// Timeout bounds one delivery POST. Default: DefaultTimeout (10 s).
	Timeout time.Duration
	// MaxAge: a delivery still failing this long after its event is failed. Default: 24 h.
	MaxAge time.Duration
	// BackoffBase, BackoffMax: the retry delay after attempt n is BackoffBase·2^(n-1) ±20%,
	// at most BackoffMax. Defaults: 10 s, 1 h.
	BackoffBase time.Duration
	BackoffMax  time.Duration
	// PollInterval: see DefaultPollInterval. Default: 1 s.
	PollInterval time.Duration
	// Now is the clock of secret expiry and backoff. Default: time.Now.
	Now func() time.Time
	// Resolver resolves host names at save time. Default: net.DefaultResolver.
	Resolver Resolver
}

// Service manages endpoints, emits events and delivers them.
type Service struct {
	d    Deps
	db   *bun.DB
	log  *slog.Logger
	http *http.Client
	subs *subCache
}

// New returns a Service with d's defaults filled in.
func New(d Deps) *Service {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.Timeout <= 0 {
		d.Timeout = DefaultTimeout
	}
	if d.MaxAge <= 0 {
		d.MaxAge = DefaultMaxAge
	}
	if d.BackoffBase <= 0 {
		d.BackoffBase = DefaultBackoffBase
	}
	if d.BackoffMax <= 0 {
		d.BackoffMax = DefaultBackoffMax
	}
	if d.PollInterval <= 0 {
		d.PollInterval = DefaultPollInterval
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Resolver == nil {
		d.Resolver = defaultResolver{}
	}
	s := &Service{d: d, db: d.DB, log: d.Log}
	s.http = newHTTPClient(d.Timeout, d.AllowPrivate)
	s.subs = newSubCache(s)
	return s
}

// AllowPrivate reports Deps.AllowPrivate.
func (s *Service) AllowPrivate() bool { return s.d.AllowPrivate }

// Close stops the subscription cache's invalidation listener.
func (s *Service) Close() { s.subs.close() }
