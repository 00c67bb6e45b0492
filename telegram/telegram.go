// Package telegram owns bots: registration with Telegram (getMe, setWebhook, setMyCommands),
// webhook ingest, update processing, the one send path (Send) with its limits, and the
// telegram:* asynq tasks.
//
// Bot API calls go through gotgbot v2.0.0-rc.36 with APIURL = Config.APIURL, so the tgemu
// emulator and the real Telegram differ only by TELEGRAM_API_URL.
package telegram

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/validate"
)

// Errors returned by this package (see also apperr.ErrUnavailable, apperr.ErrMalformed).
var (
	ErrBotNotFound     = apperr.NotFound("bot_not_found", "bot not found")
	ErrBotExists       = apperr.Conflict("bot_already_registered", "this Telegram bot is already registered")
	ErrInvalidBotToken = apperr.Invalid("invalid_bot_token", "Telegram rejected the bot token").WithDetails(map[string]any{"field": "bot_token"})
	ErrTelegramDown    = apperr.New(apperr.KindUpstream, "telegram_unavailable", "Telegram could not be reached")
	ErrTelegramError   = apperr.New(apperr.KindUpstream, "telegram_error", "Telegram answered with an error")
	ErrBadSecret       = apperr.New(apperr.KindUnauthorized, "invalid_secret_token", "missing or wrong X-Telegram-Bot-Api-Secret-Token")
	ErrBotRequired     = validate.Field("bot_app_id", "bot_app_id is required when the tenant does not have exactly one bot")
	ErrInvalidField    = validate.ErrInvalidField // every field error (code invalid_field, details.field)
	ErrContactBlocked  = apperr.Invalid("contact_blocked", "the contact has blocked the bot").WithDetails(map[string]any{"field": "contact_id"})
	// ErrContactOptedOut: the contact sent /stop (contacts.opted_out) and gets no message
	// until it sends /start again.
	ErrContactOptedOut = apperr.Invalid("contact_opted_out", "the contact opted out with /stop").WithDetails(map[string]any{"field": "contact_id"})
	ErrMessageNotFound = contacts.ErrMessageNotFound
	// Token and lifecycle (lifecycle.go).
	ErrTokenBotMismatch = apperr.Invalid("token_bot_mismatch", "the new bot_token belongs to another Telegram bot").WithDetails(map[string]any{"field": "bot_token"})
	ErrBotTokenRevoked  = apperr.Conflict("bot_token_invalid", "Telegram rejected the bot's token: rotate it (PUT bot_token) or validate it (POST .../validate) before activating the bot")
	ErrBotBusy          = apperr.Conflict("bot_update_in_progress", "another token rotation or webhook registration of this bot is under way; try again")
)

// Bot statuses (Bot.Status). Only an active bot sends messages and has its webhook events
// processed; the others keep everything for later (nothing is dropped).
const (
	// BotActive: the bot sends and processes updates.
	BotActive = "active"
	// BotDisabled: set by the tenant (PUT status "disabled"); sends wait, webhook events are
	// stored and processed once the bot is active again.
	BotDisabled = "disabled"
	// BotInvalidToken: Telegram answered 401 to getMe (POST .../validate) or to a send: the
	// token was revoked. Like BotDisabled until the token is rotated or validated again.
	BotInvalidToken = "invalid_token"
)

// Webhook statuses of a bot.
const (
	WebhookPending = "pending" // not yet registered
	WebhookActive  = "active"  // setWebhook succeeded
	WebhookFailed  = "failed"  // setWebhook failed; see Bot.WebhookError
	WebhookDeleted = "deleted" // bot deleted, deleteWebhook called
)

// SecretHeader is the header Telegram sets to the webhook's secret_token
// (core.telegram.org/bots/api#setwebhook).
const SecretHeader = "X-Telegram-Bot-Api-Secret-Token" //nolint:gosec // G101: a header name, not a credential

// AllowedUpdates are the update types the platform processes; given to setWebhook.
var AllowedUpdates = []string{"message", "edited_message", "callback_query", "my_chat_member"}

// Bot is a tenant's Telegram bot. ID is the public bot_app_id. The token is sealed with
// AES-256-GCM (Config.EncryptionKey, format in seal.go) and never leaves this package in clear text except to
// call Telegram; WebhookSecretHash is SHA-256 of the webhook secret_token.
type Bot struct {
	bun.BaseModel `bun:"table:bots,alias:b"`

	ID                uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID          uuid.UUID `bun:",type:uuid,notnull"`
	Name              string    `bun:",notnull"`
	TelegramBotID     int64     `bun:",notnull"`
	Username          string    `bun:",notnull"`
	TokenSealed       []byte    `bun:",notnull"`
	WebhookSecretHash []byte    `bun:",notnull"`
	WebhookURL        string    `bun:",notnull"`
	WebhookStatus     string    `bun:",notnull"`
	WebhookError      string    `bun:",notnull"`
	DailyLimit        int       `bun:",notnull"`
	CreatedAt         time.Time `bun:",nullzero,notnull,default:now()"`
	UpdatedAt         time.Time `bun:",nullzero,notnull,default:now()"`
	DeletedAt         time.Time `bun:",nullzero"`

	// Status is BotActive, BotDisabled or BotInvalidToken ("" in a Bot built by hand counts
	// as active; an insert with "" stores the column default, active).
	Status string `bun:",nullzero,notnull,default:'active'"`
	// WebhookSecretNextHash is SHA-256 of a secret_token being registered with setWebhook
	// (token rotation, webhook repair), accepted by Ingest next to WebhookSecretHash; nil
	// when none (lifecycle.go).
	WebhookSecretNextHash []byte `bun:",nullzero"`
	// TokenRotatedAt is when the token was last rotated (zero: never).
	TokenRotatedAt time.Time `bun:",nullzero"`
	// InboxMode is InboxAll, InboxKeywords or InboxOff: which inbound messages are flagged
	// for the inbox (InboxFlag; "" in a Bot built by hand counts as all).
	InboxMode string `bun:",nullzero,notnull,default:'all'"`
	// InboxKeywords are the keywords of InboxKeywords mode, lowercased (inbox.go).
	InboxKeywords []string `bun:",array,nullzero,notnull,default:'{}'"`
	// UpdatedBy is the name of the API key of the last PUT that changed the bot ("": none).
	UpdatedBy string `bun:",notnull"`
	// TokenRotatedBy is the name of the API key that last rotated the token ("": never).
	TokenRotatedBy string `bun:",notnull"`
}

// LogValue keeps secrets out of logs.
func (b Bot) LogValue() slog.Value {
	return slog.GroupValue(slog.String("bot_app_id", b.ID.String()), slog.Int64("telegram_bot_id", b.TelegramBotID))
}

// Config holds the telegram package's settings (from internal/config).
type Config struct {
	// APIURL is the Bot API base URL (TELEGRAM_API_URL).
	APIURL string
	// PublicBaseURL is what Telegram calls; webhooks are PublicBaseURL + /telegram/v1/webhooks/{bot_app_id}/.
	PublicBaseURL string
	// RequestTimeout bounds one Bot API call (TELEGRAM_REQUEST_TIMEOUT). Default 30s.
	RequestTimeout time.Duration
	// MaxRetries is how many times a retryable send is retried (TELEGRAM_MAX_RETRIES).
	MaxRetries int
	// GlobalRate caps sends across all bots and workers (TELEGRAM_RATE_LIMIT).
	GlobalRate config.Rate
	// BotRate caps sends per bot across workers (TELEGRAM_BOT_RATE_LIMIT).
	BotRate config.Rate
	// PaidBotRate replaces BotRate for sends with allow_paid_broadcast
	// (TELEGRAM_PAID_BOT_RATE; Telegram: up to 1000/s, core.telegram.org/bots/api#sendmessage).
	// Zero: BotRate applies to them too.
	PaidBotRate config.Rate
	// GroupChatRate limits one group or channel (chat id < 0). Zero: DefaultGroupChatRate
	// (20/min); tests shorten it.
	GroupChatRate config.Rate
	// ChatInterval is the minimum spacing of sends to one chat (TELEGRAM_CHAT_INTERVAL).
	ChatInterval time.Duration
	// MaxWait is how long Send and SendBatch may wait in-process for a rate slot; longer
	// waits return OutcomeWait so that the task is rescheduled (TELEGRAM_MAX_WAIT).
	// Default 15s.
	MaxWait time.Duration
	// EncryptionKey is the 32-byte AES-256 key that seals bot tokens (ENCRYPTION_KEY).
	EncryptionKey []byte
	// DecryptionKeys are older 32-byte keys that still open tokens sealed with them but
	// seal nothing (ENCRYPTION_KEYS, during a key rotation). Default: none.
	DecryptionKeys [][]byte
}

// Deps are the Service's collaborators.
type Deps struct {
	DB       *bun.DB
	Redis    redis.UniversalClient
	Queue    *asynq.Client
	Contacts *contacts.Service
	Cfg      Config
	Log      *slog.Logger
	// HTTPClient is used for Bot API calls; nil means a shared default client.
	HTTPClient *http.Client
	// Callbacks emits the tenant's events (message.received, contact.created, ...) in the
	// transactions that cause them (callbacks.go). Nil: one is built on DB and Redis with
	// this Service's keyring and private callback addresses refused.
	Callbacks *callbacks.Service
	// Now is the clock of the daily limit (the UTC day a send counts in, and the next UTC
	// midnight of a deferral). Default: time.Now; tests cross midnight with it.
	Now func() time.Time
}

// Service is the telegram domain service.
type Service struct {
	db       *bun.DB
	rdb      redis.UniversalClient
	queue    *asynq.Client
	insp     *asynq.Inspector
	contacts *contacts.Service
	cfg      Config
	log      *slog.Logger
	http     *http.Client
	limits   *Limiter
	keys     *Keyring
	now      func() time.Time // Deps.Now
	// in is the inbound path's state: bot cache, ingest group commit, event processors
	// (botcache.go, ingest.go, process.go).
	in *inbound
	// cb emits the tenant's events (callbacks.go).
	cb *callbacks.Service
	// tpl caches the bots' reply templates and holds the edit locks' clock (templates_cache.go).
	tpl *templateCache
}

// New returns a Service. It fails when an encryption key is not 32 bytes.
func New(d Deps) (*Service, error) {
	keys, err := NewKeyring(d.Cfg.EncryptionKey, d.Cfg.DecryptionKeys...)
	if err != nil {
		return nil, err
	}
	if d.Cfg.RequestTimeout <= 0 {
		d.Cfg.RequestTimeout = 30 * time.Second
	}
	if d.Cfg.MaxWait <= 0 {
		d.Cfg.MaxWait = 15 * time.Second
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	if d.HTTPClient == nil {
		d.HTTPClient = &http.Client{Transport: &http.Transport{
			Proxy: http.ProxyFromEnvironment, MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: 90 * time.Second,
		}}
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	s := &Service{db: d.DB, rdb: d.Redis, queue: d.Queue, contacts: d.Contacts, cfg: d.Cfg, log: d.Log, http: d.HTTPClient, keys: keys, now: d.Now}
	if d.Redis != nil {
		s.insp = asynq.NewInspectorFromRedisClient(d.Redis)
	}
	s.limits = NewLimiter(d.Redis, LimiterConfig{
		GlobalRate: d.Cfg.GlobalRate, BotRate: d.Cfg.BotRate, ChatInterval: d.Cfg.ChatInterval,
		PaidBotRate: d.Cfg.PaidBotRate, GroupChatRate: d.Cfg.GroupChatRate,
		InFlight:  d.Cfg.RequestTimeout + 5*time.Second,
		DailySeed: s.DailySent,
	})
	s.cb = d.Callbacks
	if s.cb == nil {
		s.cb = callbacks.New(callbacks.Deps{DB: d.DB, Redis: d.Redis, Sealer: keys, Log: d.Log})
	}
	s.tpl = newTemplateCache()
	s.in = newInbound(s)
	return s, nil
}

// SendLease is the longest one Send can take: Config.MaxWait for a slot plus
// Config.RequestTimeout for the call, plus a margin. A message or broadcast recipient
// claimed ("sending") for longer than this belongs to a worker that died.
func (s *Service) SendLease() time.Duration {
	return s.cfg.MaxWait + s.cfg.RequestTimeout + 5*time.Second
}

// Inspector returns the asynq inspector on the service's Redis (nil without Redis).
func (s *Service) Inspector() *asynq.Inspector { return s.insp }

// Config returns the service's settings (after defaults).
func (s *Service) Config() Config { return s.cfg }

// Contacts returns the contacts service.
func (s *Service) Contacts() *contacts.Service { return s.contacts }

// RetryAfterError tells the worker to run the task again after RetryAfter without counting
// a failure (asynq IsFailure ignores it, RetryDelayFunc uses RetryAfter): a rate-limit wait,
// Telegram's 429 retry_after, or a daily limit deferral. Waiting is not failing.
type RetryAfterError struct {
	RetryAfter time.Duration
	Reason     string
}

// Error implements error.
func (e *RetryAfterError) Error() string {
	return fmt.Sprintf("retry after %s: %s", e.RetryAfter, e.Reason)
}
