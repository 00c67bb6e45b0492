// Package config loads botfleet's configuration from the environment (names in DESIGN.md,
// Configuration) with defaults that serve local development.
package config

import (
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"
)

// Development defaults for the two secrets. They are refused when APP_ENV=production.
const (
	DevAdminToken    = "dev-admin-token"                              //nolint:gosec // G101: the public development default, refused in production
	DevEncryptionKey = "ZGV2LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzLWxvbmc=" // base64("dev-encryption-key-32-bytes-long")
)

// Secret is a string that never appears in logs or fmt output.
type Secret string

// String redacts the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "[REDACTED]"
}

// LogValue redacts the value for slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// Reveal returns the secret value itself. Use only where the value is needed (hashing, crypto).
func (s Secret) Reveal() string { return string(s) }

// Rate is a number of events per period, parsed from "N/s", "N/min" or "N/h".
type Rate struct {
	N   int
	Per time.Duration
}

// Interval is the time between two events at this rate.
func (r Rate) Interval() time.Duration {
	if r.N <= 0 {
		return 0
	}
	return r.Per / time.Duration(r.N)
}

// String formats the rate as N/s, N/min or N/h.
func (r Rate) String() string {
	switch r.Per {
	case time.Second:
		return fmt.Sprintf("%d/s", r.N)
	case time.Minute:
		return fmt.Sprintf("%d/min", r.N)
	case time.Hour:
		return fmt.Sprintf("%d/h", r.N)
	}
	return fmt.Sprintf("%d/%s", r.N, r.Per)
}

// ParseRate parses "N/s", "N/sec", "N/second", "N/min", "N/m", "N/minute", "N/h", "N/hour".
// N must be a positive integer.
func ParseRate(s string) (Rate, error) {
	num, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	if !ok {
		return Rate{}, fmt.Errorf("rate %q: want N/s, N/min or N/h", s)
	}
	n, err := strconv.Atoi(strings.TrimSpace(num))
	if err != nil || n <= 0 {
		return Rate{}, fmt.Errorf("rate %q: N must be a positive integer", s)
	}
	var per time.Duration
	switch strings.ToLower(strings.TrimSpace(unit)) {
	case "s", "sec", "second":
		per = time.Second
	case "m", "min", "minute":
		per = time.Minute
	case "h", "hour":
		per = time.Hour
	default:
		return Rate{}, fmt.Errorf("rate %q: unit must be s, min or h", s)
	}
	return Rate{N: n, Per: per}, nil
}

// UnmarshalText lets caarlos0/env parse a Rate.
func (r *Rate) UnmarshalText(b []byte) error {
	v, err := ParseRate(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}

// Config is botfleet's whole configuration.
type Config struct {
	// AppEnv is development or production. Default: development.
	AppEnv string `env:"APP_ENV" envDefault:"development"`
	// DatabaseURL is the PostgreSQL DSN. Default: postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable.
	DatabaseURL Secret `env:"DATABASE_URL" envDefault:"postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable"`
	// DatabaseMaxConns is the size of each process's PostgreSQL pool (open = idle
	// connections). Keep the sum over all processes under PostgreSQL's max_connections.
	// Default: 16 (database.DefaultMaxConns).
	DatabaseMaxConns int `env:"DATABASE_MAX_CONNS" envDefault:"16"`
	// DatabaseStatementTimeout bounds one SQL statement (PostgreSQL's statement_timeout, set
	// on every connection; a statement_timeout in DATABASE_URL wins). A statement past it
	// fails instead of holding its connection and locks. Default: 30s
	// (database.StatementTimeout).
	DatabaseStatementTimeout time.Duration `env:"DATABASE_STATEMENT_TIMEOUT" envDefault:"30s"`
	// RedisURL is the Redis URL (asynq, limits, caches). Default: redis://127.0.0.1:6379/0.
	RedisURL Secret `env:"REDIS_URL" envDefault:"redis://127.0.0.1:6379/0"`
	// RedisCluster makes REDIS_URL name a Redis Cluster, in go-redis's cluster URL form: one
	// seed node as the host, more as addr parameters, database 0 only (e.g.
	// redis://:pw@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000; see
	// internal/redisconn). Default: false (a single server).
	RedisCluster bool `env:"REDIS_CLUSTER" envDefault:"false"`
	// HTTPAddr is where `serve` listens. Default: 127.0.0.1:8080.
	HTTPAddr string `env:"HTTP_ADDR" envDefault:"127.0.0.1:8080"`
	// PublicBaseURL is the base URL Telegram calls for webhooks. Default: http://127.0.0.1:8080.
	PublicBaseURL string `env:"PUBLIC_BASE_URL" envDefault:"http://127.0.0.1:8080"`
	// TelegramAPIURL is the Bot API base URL. Default: https://api.telegram.org.
	TelegramAPIURL string `env:"TELEGRAM_API_URL" envDefault:"https://api.telegram.org"`
	// AdminToken authorises /admin/v1/*. Default (development only): dev-admin-token.
	AdminToken Secret `env:"ADMIN_TOKEN" envDefault:"dev-admin-token"`
	// EncryptionKey is the AES-256 key for bot tokens at rest: 32 bytes as base64 or 64 hex
	// characters. Default (development only): a fixed development key.
	EncryptionKey Secret `env:"ENCRYPTION_KEY" envDefault:"ZGV2LWVuY3J5cHRpb24ta2V5LTMyLWJ5dGVzLWxvbmc="`
	// EncryptionKeys are older AES-256 keys, comma separated, each encoded like
	// ENCRYPTION_KEY: bot tokens sealed with them are still read, nothing new is sealed with
	// them. Set during a key rotation (README, Key rotation) until `botfleet
	// rotate-encryption-key` has re-sealed every token with ENCRYPTION_KEY. Default: "" (none).
	EncryptionKeys Secret `env:"ENCRYPTION_KEYS"`
	// TelegramRateLimit caps sends across all bots and all workers. Default: 30/min.
	TelegramRateLimit Rate `env:"TELEGRAM_RATE_LIMIT" envDefault:"30/min"`
	// TelegramBotRateLimit is the most messages of one bot, across all workers, that can
	// arrive at Telegram in any window of the rate's period: Telegram allows about 30/s per
	// bot (core.telegram.org/bots/faq). A send counts from its start until its answer, so
	// arrival jitter cannot push a window over the limit. Default: 30/s.
	TelegramBotRateLimit Rate `env:"TELEGRAM_BOT_RATE_LIMIT" envDefault:"30/s"`
	// TelegramPaidBotRate replaces TELEGRAM_BOT_RATE_LIMIT for broadcasts with
	// allow_paid_broadcast: Telegram's paid broadcasts allow up to 1000 messages/s per bot
	// for a fee in Stars (core.telegram.org/bots/api#sendmessage). TELEGRAM_RATE_LIMIT still
	// caps all sends. Default: 1000/s.
	TelegramPaidBotRate Rate `env:"TELEGRAM_PAID_BOT_RATE" envDefault:"1000/s"`
	// TelegramChatInterval is the window in which at most one message may arrive in one
	// private chat; Telegram allows about 1 message/s per chat (core.telegram.org/bots/faq).
	// Groups get 20 per minute. Default: 1s.
	TelegramChatInterval time.Duration `env:"TELEGRAM_CHAT_INTERVAL" envDefault:"1s"`
	// TelegramMaxRetries is how many times a retryable send failure is retried. Default: 3.
	TelegramMaxRetries int `env:"TELEGRAM_MAX_RETRIES" envDefault:"3"`
	// TelegramMaxWait is how long a send may wait in a worker for a rate slot (the bot's
	// window, the chat, a 429 pause) before its task is rescheduled instead. Default: 15s.
	TelegramMaxWait time.Duration `env:"TELEGRAM_MAX_WAIT" envDefault:"15s"`
	// TelegramRequestTimeout bounds one Bot API call. Default: 30s.
	TelegramRequestTimeout time.Duration `env:"TELEGRAM_REQUEST_TIMEOUT" envDefault:"30s"`
	// WorkerConcurrency is the number of inbound and housekeeping asynq tasks a worker runs at
	// once. Default: 20.
	WorkerConcurrency int `env:"WORKER_CONCURRENCY" envDefault:"20"`
	// WorkerSendConcurrency is the number of sending tasks (messages, replies, broadcast
	// runs) a worker runs at once, on their own asynq server so that they never hold inbound
	// slots. A broadcast run holds one for as long as it sends. Default: 100.
	WorkerSendConcurrency int `env:"WORKER_SEND_CONCURRENCY" envDefault:"100"`
	// BroadcastSenders is the most sendMessage calls of one broadcast run in flight at once;
	// with a slow Bot API (round trip r) a bot reaches at most BroadcastSenders/r messages
	// per second. Default: 32.
	BroadcastSenders int `env:"BROADCAST_SENDERS" envDefault:"32"`
	// EventProcessors is the number of webhook event processor loops per worker. Default: 2.
	EventProcessors int `env:"EVENT_PROCESSORS" envDefault:"2"`
	// ShutdownTimeout bounds a graceful shutdown after SIGTERM or SIGINT: waits stop at once,
	// sends in flight finish and are recorded; a second signal exits at once. Default: 30s.
	ShutdownTimeout time.Duration `env:"SHUTDOWN_TIMEOUT" envDefault:"30s"`
	// PprofAddr, when set, serves net/http/pprof on this address (keep it private: loopback
	// or an admin network). Default: "" (off).
	PprofAddr string `env:"PPROF_ADDR"`
	// SweepInterval is how often stored-but-unprocessed updates and queued messages are
	// re-enqueued. Default: 1m.
	SweepInterval time.Duration `env:"SWEEP_INTERVAL" envDefault:"1m"`
	// BotHealthInterval is how often every active bot's health is checked against Telegram
	// and recorded, and a webhook that drifted is registered again (telegram:health-check);
	// 0 turns the periodic check off. Default: 5m.
	BotHealthInterval time.Duration `env:"BOT_HEALTH_INTERVAL" envDefault:"5m"`
	// AllowPrivateCallbacks accepts webhook endpoint URLs (event callbacks) that resolve to
	// loopback, private (RFC 1918, fc00::/7), link-local (169.254.0.0/16, fe80::/10),
	// CGNAT or other non-public addresses, when saved and when delivering. Keep it false in
	// production: a tenant could otherwise make the worker call internal services or the
	// cloud metadata address (SSRF). Default: false.
	AllowPrivateCallbacks bool `env:"ALLOW_PRIVATE_CALLBACKS" envDefault:"false"`
	// LogLevel is debug, info, warn or error; anything else is a startup error. Default: info.
	LogLevel string `env:"LOG_LEVEL" envDefault:"info"`
	// LogFormat is json (one JSON object per line) or text (slog's key=value); anything else
	// is a startup error. Default: "" (json when APP_ENV=production, text otherwise).
	LogFormat string `env:"LOG_FORMAT"`
	// MetricsAddr, when set, serves GET /metrics (Prometheus) without authentication on
	// this address, in serve, worker and all alike: the worker's only way to be scraped.
	// Keep it private (loopback or an admin network). The API also serves /metrics behind
	// ADMIN_TOKEN. Default: "" (off).
	MetricsAddr string `env:"METRICS_ADDR"`
	// APIRateLimit is the sustained request rate allowed to one tenant API key on the tenant
	// routes, shared by every API process through Redis (GCRA, go-redis/redis_rate);
	// webhooks and admin routes are not limited by it. Over it: 429 rate_limited with
	// Retry-After. Default: 20/s.
	APIRateLimit Rate `env:"API_RATE_LIMIT" envDefault:"20/s"`
	// APIRateBurst is how many requests one API key may make at once above APIRateLimit's
	// pace (the bucket size); it is also the RateLimit-Limit header. Default: 40.
	APIRateBurst int `env:"API_RATE_BURST" envDefault:"40"`
}

// Load reads the configuration from getenv and validates it. The variables read are those of
// Config's env tags (Variables): a field added to Config is read with no further edit.
func Load(getenv func(string) string) (Config, error) {
	var cfg Config
	vars := environment(getenv) // every variable of the struct tags (settings.go)
	if err := env.ParseWithOptions(&cfg, env.Options{Environment: vars}); err != nil {
		return Config{}, fmt.Errorf("config: %w", nameVariables(err))
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// nameVariables rewrites caarlos0/env parse errors to name the environment variable
// (TELEGRAM_RATE_LIMIT) rather than the Go field (TelegramRateLimit).
func nameVariables(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	t := reflect.TypeOf(Config{})
	var out []error
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			if f, ok := t.FieldByName(pe.Name); ok {
				out = append(out, fmt.Errorf("%s: %w", f.Tag.Get("env"), pe.Err))
				continue
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// Production reports whether APP_ENV is production.
func (c Config) Production() bool { return c.AppEnv == "production" }

// Validate checks values; in production a missing, default or weak ENCRYPTION_KEY or
// ADMIN_TOKEN is an error, and so is the development key in ENCRYPTION_KEYS (keys.go).
func (c Config) Validate() error {
	var errs []error
	if c.AppEnv != "development" && c.AppEnv != "production" {
		errs = append(errs, fmt.Errorf("APP_ENV must be development or production, got %q", c.AppEnv))
	}
	errs = append(errs, c.validateKeys()...)
	errs = append(errs, c.validateDSNs()...)
	if c.TelegramMaxRetries < 0 {
		errs = append(errs, errors.New("TELEGRAM_MAX_RETRIES must be >= 0"))
	}
	for _, v := range []struct {
		name     string
		positive bool
	}{
		{"TELEGRAM_MAX_WAIT", c.TelegramMaxWait > 0},
		{"TELEGRAM_REQUEST_TIMEOUT", c.TelegramRequestTimeout > 0},
		{"WORKER_CONCURRENCY", c.WorkerConcurrency > 0},
		{"WORKER_SEND_CONCURRENCY", c.WorkerSendConcurrency > 0},
		{"DATABASE_MAX_CONNS", c.DatabaseMaxConns > 0},
		{"DATABASE_STATEMENT_TIMEOUT", c.DatabaseStatementTimeout > 0},
		{"BROADCAST_SENDERS", c.BroadcastSenders > 0},
		{"EVENT_PROCESSORS", c.EventProcessors > 0},
		{"SHUTDOWN_TIMEOUT", c.ShutdownTimeout > 0},
		{"API_RATE_BURST", c.APIRateBurst > 0},
	} {
		if !v.positive {
			errs = append(errs, fmt.Errorf("%s must be > 0", v.name))
		}
	}
	if c.Production() {
		if c.AdminToken == DevAdminToken || len(c.AdminToken) < 32 {
			errs = append(errs, errors.New("ADMIN_TOKEN must be set in production, at least 32 characters"))
		}
	}
	if c.AdminToken == "" {
		errs = append(errs, errors.New("ADMIN_TOKEN must not be empty"))
	}
	errs = append(errs, c.validateLogging())
	return errors.Join(errs...)
}

// Key decodes ENCRYPTION_KEY: 32 bytes as standard/URL base64 (padded or not) or 64 hex
// characters (keys.go).
func (c Config) Key() ([]byte, error) {
	return decodeKey("ENCRYPTION_KEY", c.EncryptionKey.Reveal())
}

// KeyFingerprint is a short non-secret identifier of the encryption key, for logs: the
// first 4 bytes of SHA-256 of the key in hex, the key id stored with every sealed token.
func (c Config) KeyFingerprint() string {
	k, err := c.Key()
	if err != nil {
		return ""
	}
	return keyFingerprint(k)
}

// LogValue prints every setting (Settings) under its lower-case variable name, secrets
// redacted: Secret fields as [REDACTED], DSNs (*_URL) with RedactURL; plus the encryption
// key's fingerprint.
func (c Config) LogValue() slog.Value { return c.settingsLogValue() }

// RedactURL masks the passwords of a DSN in any form (redact.go): URL userinfo, password
// query parameters, keyword/value password=.
func RedactURL(raw string) string {
	return redactDSN(raw)
}

// SlogLevel maps LOG_LEVEL to a slog.Level (info when unknown; Validate refuses an
// unknown level).
func (c Config) SlogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		return slog.LevelInfo
	}
	return l
}

// validateLogging checks LOG_LEVEL and LOG_FORMAT.
func (c Config) validateLogging() error {
	var errs []error
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.LogLevel)); err != nil {
		errs = append(errs, fmt.Errorf("LOG_LEVEL must be debug, info, warn or error, got %q", c.LogLevel))
	}
	switch c.LogFormat {
	case "", "json", "text":
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT must be json or text, got %q", c.LogFormat))
	}
	return errors.Join(errs...)
}

// LogFormatName is LOG_FORMAT, or its default: json in production, text otherwise.
func (c Config) LogFormatName() string {
	switch {
	case c.LogFormat != "":
		return c.LogFormat
	case c.Production():
		return "json"
	}
	return "text"
}
