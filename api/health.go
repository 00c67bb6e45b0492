package api

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/redisinfo"
)

// readyTimeout bounds each dependency check of GET /readyz.
const readyTimeout = 2 * time.Second

// healthz answers 200 while the process serves HTTP (liveness; checks nothing else).
func (s *server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, map[string]string{"status": "ok"})
}

// readyResponse is the body of GET /readyz: each check is "ok" or "unavailable". Warnings
// (omitted when none) name settings that do not stop the service but put data at risk: a
// Redis that would evict or lose keys (redisinfo.Check).
type readyResponse struct {
	Status   string            `json:"status"`
	Checks   map[string]string `json:"checks"`
	Warnings []string          `json:"warnings,omitempty"`
}

// readyz pings PostgreSQL and Redis in parallel, each within 2 s: 200 {"status":"ready"}
// when both answer, else 503 {"status":"unavailable"} with the failed check(s). Causes are
// logged, not returned (the endpoint is unauthenticated). When Redis answers, its eviction
// policy and persistence are checked too (redisinfo.Check): a Redis that would evict or lose
// keys adds "redis: ..." warnings without changing the status.
func (s *server) readyz(c echo.Context) error {
	var redisWarnings []string // written by the redis check only
	checks := map[string]func(context.Context) error{
		"postgres": func(ctx context.Context) error {
			if s.d.DB == nil {
				return errNotConfigured
			}
			return s.d.DB.PingContext(ctx)
		},
		"redis": func(ctx context.Context) error {
			if s.d.Redis == nil {
				return errNotConfigured
			}
			if err := s.d.Redis.Ping(ctx).Err(); err != nil {
				return err
			}
			warnings, err := redisinfo.Check(ctx, s.d.Redis)
			if err != nil {
				s.log.Warn("readiness: Redis settings could not be read", "request_id", reqID(c), "error", err)
				return nil // the ping answered: ready, settings unknown for now
			}
			for _, w := range warnings {
				redisWarnings = append(redisWarnings, "redis: "+w)
			}
			return nil
		},
	}
	resp := readyResponse{Status: "ready", Checks: map[string]string{}}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for name, check := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(c.Request().Context(), readyTimeout)
			defer cancel()
			err := check(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				resp.Status = "unavailable"
				resp.Checks[name] = "unavailable"
				s.log.WarnContext(ctx, "readiness check failed", "request_id", reqID(c), "check", name, "error", err)
				return
			}
			resp.Checks[name] = "ok"
		}()
	}
	wg.Wait()
	resp.Warnings = redisWarnings
	if resp.Status != "ready" {
		return c.JSON(http.StatusServiceUnavailable, resp)
	}
	return c.JSON(http.StatusOK, resp)
}

// openapi serves the embedded REST contract (api/openapi.yaml).
func (s *server) openapi(c echo.Context) error {
	return c.Blob(http.StatusOK, "application/yaml", OpenAPISpec)
}
