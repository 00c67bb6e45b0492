package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
)

// HeaderIdempotencyKey is the request header that makes a creating POST safe to retry
// (draft-ietf-httpapi-idempotency-key-header): 1-255 printable ASCII characters chosen by
// the client, e.g. a UUID.
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderIdempotentReplayed is "true" on an answer replayed from the store rather than
// produced by running the request again.
const HeaderIdempotentReplayed = "Idempotent-Replayed"

const (
	// idemTTL is how long the answer of a request with an Idempotency-Key is kept.
	idemTTL = 24 * time.Hour
	// idemPendingTTL bounds the placeholder of a request still running (a crashed process
	// frees its key after this).
	idemPendingTTL = time.Minute
	// idemRedisTimeout bounds each Redis call of the middleware.
	idemRedisTimeout = time.Second
	// idemMaxKey is the longest accepted Idempotency-Key.
	idemMaxKey = 255
)

// Errors of the idempotency middleware (409).
var (
	errIdemReused = apperr.Conflict("idempotency_key_reused",
		"this Idempotency-Key was already used with another request (method, path or body); use a new key")
	errIdemInProgress = apperr.Conflict("idempotency_key_in_progress",
		"a request with this Idempotency-Key is still being processed; retry later")
)

// idemRecord is what Redis holds under an idempotency key: a placeholder (Pending) while
// the first request runs, then its answer.
type idemRecord struct {
	Pending     bool   `json:"pending,omitempty"`
	Fingerprint string `json:"fp"`
	Status      int    `json:"status,omitempty"`
	ContentType string `json:"content_type,omitempty"`
	Body        []byte `json:"body,omitempty"`
	// Sealed: Body is encrypted with the platform's encryption key (idempotentSealed).
	Sealed bool `json:"sealed,omitempty"`
}

// idemOwner is the associated data of a sealed answer: the tenant's id (uuid.Nil when the
// request has none), so that one tenant's record cannot be opened as another's.
func idemOwner(tid string) uuid.UUID {
	id, _ := uuid.Parse(tid)
	return id
}

// idemRedisKey names the record of key for tenantID: a hash (the key itself is never
// stored) in a Redis Cluster hash tag, like rateKey.
func idemRedisKey(tenantID, key string) string {
	h := sha256.Sum256([]byte("botfleet idempotency\x00" + tenantID + "\x00" + key))
	return "idem:{" + hex.EncodeToString(h[:16]) + "}"
}

// validIdemKey reports whether k is 1-255 printable ASCII characters (0x20-0x7e).
func validIdemKey(k string) bool {
	if k == "" || len(k) > idemMaxKey {
		return false
	}
	for i := 0; i < len(k); i++ {
		if k[i] < 0x20 || k[i] > 0x7e {
			return false
		}
	}
	return true
}

// idemCapture tees what the handler writes into a buffer.
type idemCapture struct {
	http.ResponseWriter
	buf bytes.Buffer
}

func (w *idemCapture) Write(p []byte) (int, error) {
	w.buf.Write(p)
	return w.ResponseWriter.Write(p)
}

// idempotent is the middleware of the creating tenant POSTs (routes.go); it runs after
// tenantRoute. Without an Idempotency-Key header it does nothing. With one:
//
//   - the key must be 1-255 printable ASCII characters, else 422 invalid_field
//     (details.field "Idempotency-Key");
//   - the first request stores a placeholder (SET NX, idemPendingTTL), runs, and its answer
//     (status, Content-Type, body) is kept for idemTTL under the tenant and the key when it
//     is 2xx or 4xx; a 5xx is not kept (the key is freed) so that a retry can succeed;
//   - a later request with the same key and the same method, path and body (compared by
//     SHA-256) gets the stored answer with Idempotent-Replayed: true, without running;
//   - the same key with another method, path or body: 409 idempotency_key_reused;
//   - the same key while the first request still runs: 409 idempotency_key_in_progress;
//   - Redis unreachable: 503 dependency_unavailable (Retry-After: 1) before anything runs.
func (s *server) idempotent(next echo.HandlerFunc) echo.HandlerFunc {
	return s.idempotency(next, false)
}

// idempotentSealed is idempotent for the creating POSTs whose answer holds a secret shown
// once (an API key, a webhook signing secret, a link token): the stored answer is sealed
// with the platform's encryption key (AES-256-GCM, the tenant id as associated data, as bot
// tokens are in PostgreSQL), so Redis never holds the secret in clear. A replay that no
// key of the keyring opens any more (ENCRYPTION_KEY rotated without the old key in
// DECRYPTION_KEYS) is 409 idempotency_key_reused: the client must use a new key.
func (s *server) idempotentSealed(next echo.HandlerFunc) echo.HandlerFunc {
	return s.idempotency(next, true)
}

func (s *server) idempotency(next echo.HandlerFunc, sealed bool) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		key := req.Header.Get(HeaderIdempotencyKey)
		if _, present := req.Header[HeaderIdempotencyKey]; !present {
			return next(c)
		}
		if !validIdemKey(key) {
			return validate.Field(HeaderIdempotencyKey, "%s must be 1-%d printable ASCII characters", HeaderIdempotencyKey, idemMaxKey)
		}
		rdb := s.d.Redis
		if rdb == nil {
			return next(c)
		}
		body, err := io.ReadAll(req.Body)
		if err != nil {
			return err // over the body limit: 413
		}
		req.Body = io.NopCloser(bytes.NewReader(body))
		fp := sha256.Sum256([]byte(req.Method + "\x00" + req.URL.Path + "\x00" + string(body)))
		fingerprint := hex.EncodeToString(fp[:])
		tid, _ := c.Get(ctxTenantID).(string)
		rkey := idemRedisKey(tid, key)
		unavailable := func() error {
			c.Response().Header().Set("Retry-After", "1")
			return apperr.ErrUnavailable
		}

		pending, _ := json.Marshal(idemRecord{Pending: true, Fingerprint: fingerprint})
		ctx, cancel := context.WithTimeout(req.Context(), idemRedisTimeout)
		ok, err := rdb.SetNX(ctx, rkey, pending, idemPendingTTL).Result()
		if err == nil && !ok {
			var raw []byte
			raw, err = rdb.Get(ctx, rkey).Bytes()
			if errors.Is(err, redis.Nil) { // expired in between: take it
				ok, err = rdb.SetNX(ctx, rkey, pending, idemPendingTTL).Result()
				if err == nil && !ok {
					cancel()
					return errIdemInProgress
				}
			} else if err == nil {
				cancel()
				var rec idemRecord
				if jerr := json.Unmarshal(raw, &rec); jerr != nil {
					return jerr
				}
				switch {
				case rec.Fingerprint != fingerprint:
					return errIdemReused
				case rec.Pending:
					return errIdemInProgress
				}
				if rec.Sealed {
					if rec.Body, err = s.d.Telegram.OpenFor(idemOwner(tid), rec.Body); err != nil {
						s.log.Warn("idempotency: a sealed answer cannot be opened (encryption key rotated?)", "error", err)
						return errIdemReused
					}
				}
				h := c.Response().Header()
				h.Set(HeaderIdempotentReplayed, "true")
				if rec.ContentType != "" {
					h.Set(echo.HeaderContentType, rec.ContentType)
				}
				return c.Blob(rec.Status, rec.ContentType, rec.Body)
			}
		}
		cancel()
		if err != nil {
			s.log.Warn("idempotency: Redis unreachable; answering 503", "error", err)
			return unavailable()
		}

		// This request owns the key: run it, capturing the answer. Errors are rendered here
		// (c.Error) so that their envelope is captured too.
		stored := false
		defer func() {
			if !stored { // 5xx, panic or an unwritten answer: free the key for a retry
				dctx, dcancel := context.WithTimeout(context.WithoutCancel(req.Context()), idemRedisTimeout)
				defer dcancel()
				rdb.Del(dctx, rkey)
			}
		}()
		res := c.Response()
		cw := &idemCapture{ResponseWriter: res.Writer}
		res.Writer = cw
		if herr := next(c); herr != nil {
			c.Error(herr)
		}
		res.Writer = cw.ResponseWriter
		if !res.Committed || res.Status >= 500 || res.Status < 200 {
			return nil
		}
		stBody := cw.buf.Bytes()
		if sealed {
			if stBody, err = s.d.Telegram.SealFor(idemOwner(tid), stBody); err != nil {
				s.log.Warn("idempotency: could not seal the answer; not stored", "error", err)
				return nil
			}
		}
		rec, _ := json.Marshal(idemRecord{
			Fingerprint: fingerprint, Status: res.Status,
			ContentType: res.Header().Get(echo.HeaderContentType), Body: stBody, Sealed: sealed,
		})
		sctx, scancel := context.WithTimeout(context.WithoutCancel(req.Context()), idemRedisTimeout)
		defer scancel()
		if err := rdb.Set(sctx, rkey, rec, idemTTL).Err(); err != nil {
			s.log.Warn("idempotency: could not store the answer", "error", err)
			return nil // the placeholder expires; a retry within idemPendingTTL gets 409
		}
		stored = true
		return nil
	}
}
