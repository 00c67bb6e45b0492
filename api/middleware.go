package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/metrics"
	"github.com/botfleet/botfleet/tenant"
)

// Keys of values stored on the echo.Context by middleware.
const (
	ctxTenantID   = "tenant_id"
	ctxAPIKeyName = "api_key_name"
)

// noSlashPaths are the canonical paths without a trailing slash; every other canonical
// path ends with "/".
var noSlashPaths = map[string]bool{"/healthz": true, "/readyz": true, "/openapi.yaml": true, "/metrics": true}

// canonicalPath is a Pre middleware (it runs before routing) that rewrites the request path
// to its canonical form, so that "/contacts" and "/contacts/" reach the same route and
// "/healthz/" reaches "/healthz". It rewrites, never redirects: a redirect would drop a
// POST body.
func canonicalPath(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		u := c.Request().URL
		p := u.Path
		switch {
		case p == "" || p == "/":
		case strings.HasPrefix(p, QueuesPath): // asynqmon's own paths, as its pages ask for them
		case strings.HasSuffix(p, "/"):
			if t := strings.TrimSuffix(p, "/"); noSlashPaths[t] {
				u.Path = t
				u.RawPath = strings.TrimSuffix(u.RawPath, "/")
			}
		case !noSlashPaths[p]:
			u.Path = p + "/"
			if u.RawPath != "" {
				u.RawPath += "/"
			}
		}
		return next(c)
	}
}

// requestID sets X-Request-ID on the response: the client's own when it is a short token
// (1-64 characters of [A-Za-z0-9._:-]), else a new UUID. The error envelope and the logs
// carry it.
func requestID(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		rid := c.Request().Header.Get(echo.HeaderXRequestID)
		if !validRequestID(rid) {
			rid = uuid.NewString()
		}
		c.Response().Header().Set(echo.HeaderXRequestID, rid)
		return next(c)
	}
}

func validRequestID(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if (b < 'a' || b > 'z') && (b < 'A' || b > 'Z') && (b < '0' || b > '9') && b != '.' && b != '_' && b != ':' && b != '-' {
			return false
		}
	}
	return true
}

// reqID returns the request id set by requestID.
func reqID(c echo.Context) string { return c.Response().Header().Get(echo.HeaderXRequestID) }

// accessLog writes one log line per request, after the error handler has written the
// response (it calls c.Error itself so that the status is known). It logs the method, the
// path without the query, the route, status, duration and size: never headers (the
// Authorization header carries keys) nor bodies (a bot registration carries its token).
func (s *server) accessLog(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		if err := next(c); err != nil {
			c.Error(err)
		}
		req, res := c.Request(), c.Response()
		metrics.ObserveHTTP(req.Method, c.Path(), res.Status, time.Since(start))
		level := slog.LevelInfo
		if res.Status >= 500 {
			level = slog.LevelWarn
		}
		if !s.log.Enabled(req.Context(), level) {
			return nil
		}
		attrs := []slog.Attr{
			slog.String("request_id", reqID(c)),
			slog.String("method", req.Method),
			slog.String("path", req.URL.Path),
			slog.String("route", c.Path()),
			slog.Int("status", res.Status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.Int64("bytes_out", res.Size),
			slog.String("remote_ip", c.RealIP()),
		}
		if tid, ok := c.Get(ctxTenantID).(string); ok {
			attrs = append(attrs, slog.String("tenant_id", tid))
		}
		if name, ok := c.Get(ctxAPIKeyName).(string); ok {
			attrs = append(attrs, slog.String("api_key_name", name)) // the key's name, never the key
		}
		s.log.LogAttrs(req.Context(), level, "http request", attrs...)
		return nil
	}
}

// panicError is a recovered panic; the error handler logs its stack and answers 500.
type panicError struct {
	err   error
	stack []byte
}

func (p *panicError) Error() string { return "panic: " + p.err.Error() }
func (p *panicError) Unwrap() error { return p.err }

// recoverPanic is echo's Recover, returning the panic as a *panicError so that the error
// handler logs it once (with the stack and request id) and answers the 500 envelope.
func (s *server) recoverPanic(next echo.HandlerFunc) echo.HandlerFunc {
	return middleware.RecoverWithConfig(middleware.RecoverConfig{
		DisableErrorHandler: true,
		StackSize:           8 << 10,
		DisableStackAll:     true,
		LogErrorFunc: func(_ echo.Context, err error, stack []byte) error {
			return &panicError{err: err, stack: stack}
		},
	})(next)
}

// bodyLimit caps the request body at n bytes (Content-Length checked up front, the body
// checked while read); past it the request answers 413 payload_too_large. skip may be nil.
// n is given to echo in bytes: its "1M" would mean 10^6 bytes, not 1 MiB.
func bodyLimit(n int64, skip middleware.Skipper) echo.MiddlewareFunc {
	return middleware.BodyLimitWithConfig(middleware.BodyLimitConfig{
		Limit:   strconv.FormatInt(n, 10),
		Skipper: skip,
	})
}

// bearer returns the credentials of "Authorization: Bearer <token>" ("" when absent or
// of another scheme). The scheme is case-insensitive (RFC 9110 §11.1).
func bearer(r *http.Request) string {
	h := r.Header.Get(echo.HeaderAuthorization)
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// unauthorized is the 401 of both authentication schemes, with a WWW-Authenticate challenge.
func unauthorized(c echo.Context) error {
	c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Bearer realm="botfleet"`)
	return apperr.ErrUnauthorized
}

// tenantAuth authenticates "Authorization: Bearer <api key>" with
// tenant.AuthenticateKey and puts the tenant and the key's identity on the request context
// (tenant.WithTenant, tenant.WithKey); the key's name goes to the access log. No key, a
// wrong or a revoked one: 401; PostgreSQL down: 503.
func (s *server) tenantAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		t, k, err := s.d.Tenants.AuthenticateKey(req.Context(), bearer(req))
		if err != nil {
			if apperr.KindOf(err) == apperr.KindUnauthorized {
				return unauthorized(c)
			}
			return err
		}
		c.SetRequest(req.WithContext(tenant.WithKey(tenant.WithTenant(req.Context(), t), k)))
		logging.Add(req.Context(), slog.String(logging.KeyTenantID, t.ID.String()))
		c.Set(ctxTenantID, t.ID.String())
		c.Set(ctxAPIKeyName, k.Name)
		return next(c)
	}
}

// keyAdminPrefix is the path prefix of API key management, which needs the admin scope.
const keyAdminPrefix = "/api-keys/"

// requiredScope is the scope the matched route needs (tenant.Scope*): admin under
// /api-keys/, read for GET and HEAD, write for every other method. It reads the route
// (c.Path()) and the method only, so every tenant route, present or future, is covered.
func requiredScope(c echo.Context) string {
	switch m := c.Request().Method; {
	case strings.HasPrefix(c.Path(), keyAdminPrefix):
		return tenant.ScopeAdmin
	case m == http.MethodGet || m == http.MethodHead:
		return tenant.ScopeRead
	default:
		return tenant.ScopeWrite
	}
}

// requireScope refuses, after tenantAuth, a request whose API key lacks requiredScope: 403
// insufficient_scope with details {"required_scope", "scopes"}; nothing is done.
func requireScope(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		k, ok := tenant.KeyFromContext(c.Request().Context())
		if !ok {
			return unauthorized(c)
		}
		if sc := requiredScope(c); !k.Allows(sc) {
			return tenant.InsufficientScope(k, sc)
		}
		return next(c)
	}
}

// errForbidden answers an admin route called with a valid tenant API key: the caller is
// authenticated, but not as the operator (RFC 9110 §15.5.4).
var errForbidden = echo.NewHTTPError(http.StatusForbidden, "this route needs the ADMIN_TOKEN; a tenant API key cannot use it")

// adminAuth checks "Authorization: Bearer <ADMIN_TOKEN>" in constant time (both sides are
// hashed first, so not even the length leaks). An empty AdminToken refuses everything. A
// token that is not the ADMIN_TOKEN answers 401 unauthorized, except a valid tenant API key,
// which answers 403 forbidden (PostgreSQL down while checking it: 503).
func (s *server) adminAuth(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		want := s.d.AdminToken.Reveal()
		got := bearer(c.Request())
		if got == "" {
			return unauthorized(c)
		}
		w, g := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(got))
		if want == "" || subtle.ConstantTimeCompare(w[:], g[:]) != 1 {
			return s.notAdmin(c, got)
		}
		return next(c)
	}
}

// notAdmin answers a request whose token is not the ADMIN_TOKEN: 403 for a valid tenant API
// key, else 401.
func (s *server) notAdmin(c echo.Context, token string) error {
	if s.d.Tenants == nil || !strings.HasPrefix(token, tenant.KeyPrefix) {
		return unauthorized(c)
	}
	if _, err := s.d.Tenants.Authenticate(c.Request().Context(), token); err != nil {
		if apperr.KindOf(err) == apperr.KindUnauthorized {
			return unauthorized(c)
		}
		return err
	}
	return errForbidden
}
