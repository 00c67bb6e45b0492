package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/hibiken/asynqmon"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/metrics"
)

// QueuesPath is where the asynq web UI (hibiken/asynqmon) is mounted: its pages, assets
// and its JSON API under QueuesPath + "api/". canonicalPath leaves these paths alone
// (asynqmon's router wants them exactly as its pages ask for them).
const QueuesPath = "/admin/queues/"

// logScope starts the request's logging scope (logging.NewContext) with its request_id, and
// its bot_app_id when the route has one in its path: every record logged with the request's
// context carries them, tenant_id once tenantAuth has authenticated the key.
func (s *server) logScope(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		attrs := []slog.Attr{slog.String(logging.KeyRequestID, reqID(c))}
		if id, err := uuid.Parse(c.Param("bot_app_id")); err == nil {
			attrs = append(attrs, slog.String(logging.KeyBotAppID, id.String()))
		}
		req := c.Request()
		c.SetRequest(req.WithContext(logging.NewContext(req.Context(), attrs...)))
		return next(c)
	}
}

// adminCredential returns the ADMIN_TOKEN candidate of r: the Bearer token, or the
// password of Basic authentication (any user name), which browsers can send (asynqmon's
// pages and their API calls) and Prometheus too (basic_auth or authorization).
func adminCredential(r *http.Request) string {
	if tok := bearer(r); tok != "" {
		return tok
	}
	if _, pass, ok := r.BasicAuth(); ok {
		return pass
	}
	return ""
}

// adminAuthBrowser guards the operator's tools (/metrics, /admin/queues/): ADMIN_TOKEN as a
// Bearer token or as the password of Basic authentication, compared in constant time. A
// missing or wrong credential answers 401 with a Basic challenge, so that a browser asks
// for it; a tenant API key 403, as on the other admin routes (notAdmin). State-changing requests (asynqmon's POST and DELETE) from a page of another
// origin answer 403: a browser re-sends Basic credentials on its own, so the Origin header
// is checked against the Host (cross-site request forgery).
func (s *server) adminAuthBrowser(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		want, got := s.d.AdminToken.Reveal(), adminCredential(req)
		w, g := sha256.Sum256([]byte(want)), sha256.Sum256([]byte(got))
		if want == "" || got == "" || subtle.ConstantTimeCompare(w[:], g[:]) != 1 {
			err := error(apperr.ErrUnauthorized)
			if got != "" {
				err = s.notAdmin(c, got) // a tenant API key: 403, as on every admin route
			}
			if errors.Is(err, apperr.ErrUnauthorized) {
				c.Response().Header().Set(echo.HeaderWWWAuthenticate, `Basic realm="botfleet admin", charset="UTF-8"`)
			}
			return err
		}
		if req.Method != http.MethodGet && req.Method != http.MethodHead && !sameOrigin(req) {
			return echo.NewHTTPError(http.StatusForbidden, "requests from another origin are refused")
		}
		return next(c)
	}
}

// sameOrigin reports whether r's Origin header (absent: not a cross-origin browser request)
// names r's Host.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

// metricsEndpoint serves GET /metrics: Deps.Metrics, or the process-wide instruments alone
// when it is nil.
func (s *server) metricsEndpoint(c echo.Context) error {
	h := s.d.Metrics
	if h == nil {
		h = metrics.Handler()
	}
	h.ServeHTTP(c.Response(), c.Request())
	return nil
}

// queueUI serves the asynq web UI (asynqmon, read-write) at QueuesPath on Deps.Redis,
// built on first use. Without Redis it answers 503.
func (s *server) queueUI(c echo.Context) error {
	h := s.queues()
	if h == nil {
		return apperr.ErrUnavailable
	}
	if p := c.Request().URL.Path; !strings.HasPrefix(p, QueuesPath+"api/") && !strings.Contains(path.Base(p), ".") {
		// A page (asynqmon renders its index template without a Content-Type).
		c.Response().Header().Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	}
	h.ServeHTTP(c.Response(), c.Request())
	return nil
}

// queuesOnce builds the asynqmon handler once per server.
type queuesOnce struct {
	once sync.Once
	h    http.Handler
}

func (s *server) queues() http.Handler {
	s.ui.once.Do(func() {
		if s.d.Redis == nil {
			return
		}
		s.ui.h = asynqmon.New(asynqmon.Options{
			RootPath:     strings.TrimSuffix(QueuesPath, "/"),
			RedisConnOpt: sharedRedis{s.d.Redis},
		})
	})
	return s.ui.h
}

// sharedRedis lets asynqmon use the process's Redis client (one pool, Redis Cluster
// included) instead of dialling its own. asynqmon closes it only from its Close, which is
// never called: the client belongs to cmd.
type sharedRedis struct{ c redis.UniversalClient }

// MakeRedisClient implements asynq.RedisConnOpt.
func (r sharedRedis) MakeRedisClient() any { return r.c }

var _ asynq.RedisConnOpt = sharedRedis{}
