// Package api is botfleet's REST server: the echo router, its middleware (request id,
// access log, recover, body limits, authentication), the error envelope, and thin handlers
// that bind a request, call one domain service and write the response.
//
// The contract is api/openapi.yaml (served at GET /openapi.yaml); a test keeps it and the
// route table in step. Domain packages never import echo: errors come back as
// *apperr.Error and are mapped to HTTP statuses in errors.go only.
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/tenant"
)

// Deps are the collaborators of the REST server, built once in cmd.
type Deps struct {
	// Tenants creates tenants (admin API) and authenticates API keys.
	Tenants *tenant.Service
	// Telegram registers bots, ingests webhooks and queues single messages.
	Telegram *telegram.Service
	// Contacts lists and reads contacts.
	Contacts *contacts.Service
	// Broadcasts creates, reads and cancels broadcasts.
	Broadcasts *broadcast.Service
	// DB is pinged by GET /readyz.
	DB *bun.DB
	// Redis is pinged by GET /readyz.
	Redis redis.UniversalClient
	// AdminToken authorises /admin/v1/* (Bearer, compared in constant time). An empty token
	// disables the admin API (every call answers 401).
	AdminToken config.Secret
	// Log receives access logs and 5xx causes. Nil means slog.Default().
	Log *slog.Logger
	// Metrics serves GET /metrics (metrics.Handler with the process's collectors). Nil
	// serves the process-wide instruments alone.
	Metrics http.Handler
	// RateLimit is the per-API-key limit of the tenant routes, kept in Redis (ratelimit.go).
	// The zero value disables it.
	RateLimit RateLimit
}

// Body size limits (DESIGN.md Security: request bodies are size-limited).
const (
	// DefaultBodyLimit caps every request body, webhooks included: 1 MiB.
	DefaultBodyLimit = 1 << 20
	// BroadcastBodyLimit caps POST /broadcast/: 8 MiB, room for 100k recipient ids (~4 MB).
	BroadcastBodyLimit = 8 << 20
)

// Server timeouts, applied to the echo's http.Server (used by e.Start).
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
)

// server holds the handlers' dependencies.
type server struct {
	d       Deps
	log     *slog.Logger
	limiter *apiLimiter // nil: no rate limit
	ui      queuesOnce  // the asynq web UI, built on first use (ops.go)
}

// New returns the REST server: middleware, error handler and the route table of routes.go.
// The returned *echo.Echo is an http.Handler; e.Start(addr) also works (banner hidden,
// timeouts set on e.Server).
func New(d Deps) *echo.Echo {
	if d.Log == nil {
		d.Log = slog.Default()
	}
	s := &server{d: d, log: d.Log, limiter: newAPILimiter(d)}

	e := echo.New()
	e.HideBanner = true
	e.HidePort = true
	e.IPExtractor = echo.ExtractIPDirect() // never trust X-Forwarded-For from clients (TECH-NOTES §4)
	e.HTTPErrorHandler = s.handleError
	e.Server.ReadHeaderTimeout = readHeaderTimeout
	e.Server.ReadTimeout = readTimeout
	e.Server.WriteTimeout = writeTimeout
	e.Server.IdleTimeout = idleTimeout
	e.Server.ErrorLog = slog.NewLogLogger(d.Log.Handler(), slog.LevelWarn)

	e.Pre(canonicalPath)
	e.Use(requestID, s.accessLog, s.recoverPanic, bodyLimit(DefaultBodyLimit, isLargeBodyRoute))
	e.Use(s.logScope) // request_id, tenant_id, bot_app_id on every log line of the request (ops.go)
	s.routes(e)
	return e
}

// isLargeBodyRoute reports whether the matched route has its own, larger body limit.
func isLargeBodyRoute(c echo.Context) bool {
	return c.Request().Method == http.MethodPost && (c.Path() == "/broadcast/" || c.Path() == "/contacts/import/")
}
