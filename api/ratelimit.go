package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/config"
)

// RateLimit is the per-API-key request limit of the tenant routes (API_RATE_LIMIT,
// API_RATE_BURST). It is a GCRA (token bucket) kept in Redis by go-redis/redis_rate, so every
// API process shares one bucket per key. Webhooks, admin and operations routes are not
// limited by it.
type RateLimit struct {
	// Rate is the sustained rate of one key. A zero Rate (N == 0) disables the limit.
	Rate config.Rate
	// Burst is the bucket size: how many requests one key may make at once. It is also the
	// RateLimit-Limit header. 0 means Rate.N.
	Burst int
}

// Response headers of the rate limit, as named by the IETF draft "RateLimit header fields
// for HTTP" (draft-ietf-httpapi-ratelimit-headers-07, §3-§5; values are integers).
const (
	// HeaderRateLimitLimit is the bucket size (RateLimit.Burst).
	HeaderRateLimitLimit = "RateLimit-Limit"
	// HeaderRateLimitRemaining is how many more requests the key may make at once now.
	HeaderRateLimitRemaining = "RateLimit-Remaining"
	// HeaderRateLimitReset is the seconds (rounded up) until the bucket is full again.
	HeaderRateLimitReset = "RateLimit-Reset"
)

// Tuning of the Redis call and of the fallback used while Redis is unreachable.
const (
	// rateRedisTimeout bounds one limiter call to Redis; past it Redis counts as down.
	rateRedisTimeout = 500 * time.Millisecond
	// rateRedisRetry is how long Redis is skipped after a failed call, so that an outage
	// does not add rateRedisTimeout to every request.
	rateRedisRetry = time.Second
	// rateWarnEvery spaces the warnings logged while Redis is unreachable.
	rateWarnEvery = 10 * time.Second
	// localMaxKeys is how many keys the fallback tracks before forgetting full buckets.
	localMaxKeys = 10_000
)

// errRateLimited is the 429 of a key over its limit; the response carries Retry-After.
var errRateLimited = apperr.New(apperr.KindRateLimited, "rate_limited",
	"too many requests for this API key; retry after the number of seconds in Retry-After")

// rateResult is one limiter decision.
type rateResult struct {
	allowed    bool
	remaining  int
	retryAfter time.Duration // until one more request fits (denied only)
	resetAfter time.Duration // until the bucket is full again
}

// apiLimiter limits requests per API key. Redis holds the buckets (shared by all API
// processes). When Redis cannot be reached (error or rateRedisTimeout):
//
//   - GET and HEAD are served, limited by an in-process bucket per key with the same rate
//     and burst (so a key gets at most the limit times the number of API processes), and a
//     warning is logged every rateWarnEvery. Reads need only PostgreSQL; an inbox or a
//     dashboard must not go dark because the limiter's store is down, and the fallback keeps
//     a bound on what one key can ask of PostgreSQL meanwhile.
//   - Other methods answer 503 dependency_unavailable (Retry-After: 1) before any work is
//     done, so nothing is stored and a retry is safe. Writes start work that runs through
//     Redis (queued sends, broadcast runs, bot cache invalidation): accepting them during an
//     outage only builds a backlog that bursts out later, and the project's rule is that a
//     failure to reach Redis is a 503, never silent.
//
// After a failed call Redis is skipped for rateRedisRetry, then tried again.
type apiLimiter struct {
	rl       *redis_rate.Limiter
	limit    redis_rate.Limit
	interval time.Duration // emission interval: Rate.Per / Rate.N
	log      *slog.Logger

	downUntil atomic.Int64 // unix nanoseconds; Redis is skipped until then
	warnedAt  atomic.Int64 // unix nanoseconds of the last "Redis unreachable" warning
	local     localGCRA
}

// newAPILimiter returns the limiter of rl, or nil when rl's Rate is zero (no limit).
func newAPILimiter(d Deps) *apiLimiter {
	rl := d.RateLimit
	if rl.Rate.N <= 0 || rl.Rate.Per <= 0 || d.Redis == nil {
		return nil
	}
	burst := rl.Burst
	if burst <= 0 {
		burst = rl.Rate.N
	}
	return &apiLimiter{
		rl:       redis_rate.NewLimiter(d.Redis),
		limit:    redis_rate.Limit{Rate: rl.Rate.N, Period: rl.Rate.Per, Burst: burst},
		interval: rl.Rate.Per / time.Duration(rl.Rate.N),
		log:      d.Log,
		local:    localGCRA{tat: map[string]time.Time{}},
	}
}

// rateKey names the bucket of an API key: a hash of the key (never the key itself), in a
// Redis Cluster hash tag. redis_rate stores it as "rate:" + rateKey.
func rateKey(apiKey string) string {
	h := sha256.Sum256([]byte("botfleet api rate limit\x00" + apiKey))
	return "api:{" + hex.EncodeToString(h[:16]) + "}"
}

// allow takes one request of key from its bucket. ok is false when the decision could not
// be made (Redis down and the request is not a read).
func (l *apiLimiter) allow(ctx context.Context, key string, read bool) (res rateResult, ok bool) {
	now := time.Now()
	if now.UnixNano() >= l.downUntil.Load() {
		cctx, cancel := context.WithTimeout(ctx, rateRedisTimeout)
		r, err := l.rl.Allow(cctx, key, l.limit)
		cancel()
		if err == nil {
			// Branch on Allowed: RetryAfter is -1 ns when allowed (TECH-NOTES §5).
			res := rateResult{allowed: r.Allowed > 0, retryAfter: r.RetryAfter, resetAfter: r.ResetAfter}
			if res.allowed {
				// The script's Remaining truncates a float computed on Redis' clock in seconds
				// since 2017 (about 1e-7 s of precision): 39 requests left can come back as
				// 38. The same count from ResetAfter, with a tolerance of 1/1000 of an interval.
				res.remaining = int(math.Floor(float64(l.limit.Burst) - float64(r.ResetAfter)/float64(l.interval) + 1e-3))
			}
			return res, true
		}
		if ctx.Err() != nil {
			return rateResult{}, false // the client went away; nothing to decide
		}
		l.downUntil.Store(now.Add(rateRedisRetry).UnixNano())
		if last := l.warnedAt.Load(); now.UnixNano()-last >= int64(rateWarnEvery) && l.warnedAt.CompareAndSwap(last, now.UnixNano()) {
			l.log.Warn("api rate limit: Redis unreachable; reads limited per process, writes answer 503", "error", err)
		}
	}
	if !read {
		return rateResult{}, false
	}
	return l.local.allow(key, now, l.interval, l.limit.Burst), true
}

// tenantRoute is the middleware of every tenant route: tenantAuth, the key's scope
// (requireScope, middleware.go), then the per-key rate limit (rateLimit). It replaces
// tenantAuth alone in routes.go.
func (s *server) tenantRoute(next echo.HandlerFunc) echo.HandlerFunc {
	return s.tenantAuth(requireScope(s.rateLimit(next)))
}

// rateLimit applies the per-API-key limit after tenantAuth (so that only valid keys get a
// bucket: garbage keys cannot fill Redis). Every answer carries RateLimit-Limit,
// RateLimit-Remaining and RateLimit-Reset; a request over the limit answers 429
// rate_limited with Retry-After (whole seconds, at least 1) and does not reach the handler.
// See apiLimiter for what happens while Redis is unreachable. Without a limiter (RateLimit
// zero in Deps) it does nothing.
func (s *server) rateLimit(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		l := s.limiter
		if l == nil {
			return next(c)
		}
		req := c.Request()
		read := req.Method == http.MethodGet || req.Method == http.MethodHead
		res, ok := l.allow(req.Context(), rateKey(bearer(req)), read)
		h := c.Response().Header()
		if !ok {
			h.Set("Retry-After", "1")
			return apperr.ErrUnavailable
		}
		h.Set(HeaderRateLimitLimit, strconv.Itoa(l.limit.Burst))
		h.Set(HeaderRateLimitRemaining, strconv.Itoa(max(res.remaining, 0)))
		h.Set(HeaderRateLimitReset, strconv.Itoa(ceilSeconds(res.resetAfter, 0)))
		if !res.allowed {
			h.Set("Retry-After", strconv.Itoa(ceilSeconds(res.retryAfter, 1)))
			return errRateLimited
		}
		return next(c)
	}
}

// ceilSeconds is d in whole seconds rounded up, at least minimum.
func ceilSeconds(d time.Duration, minimum int) int {
	return max(int(math.Ceil(d.Seconds())), minimum)
}

// localGCRA is the in-process fallback of apiLimiter: the same GCRA as redis_rate's Lua
// script (theoretical arrival time per key), on the local clock.
type localGCRA struct {
	mu  sync.Mutex
	tat map[string]time.Time
}

// allow takes one request of key at now from a bucket of burst requests refilled one per
// interval.
func (g *localGCRA) allow(key string, now time.Time, interval time.Duration, burst int) rateResult {
	g.mu.Lock()
	defer g.mu.Unlock()
	tat, ok := g.tat[key]
	if !ok || tat.Before(now) {
		tat = now
	}
	newTAT := tat.Add(interval)
	diff := now.Sub(newTAT.Add(-interval * time.Duration(burst)))
	if diff < 0 {
		return rateResult{retryAfter: -diff, resetAfter: tat.Sub(now)}
	}
	if len(g.tat) >= localMaxKeys {
		for k, t := range g.tat { // a bucket whose TAT has passed is full: same as absent
			if !t.After(now) {
				delete(g.tat, k)
			}
		}
	}
	g.tat[key] = newTAT
	return rateResult{allowed: true, remaining: int(diff / interval), resetAfter: newTAT.Sub(now)}
}
