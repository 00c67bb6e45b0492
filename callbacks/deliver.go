package callbacks

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
)

// Delivery headers.
const (
	// HeaderSignature is "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>", with
	// one v1= entry per valid secret (two for 24 h after rotate-secret): Stripe's scheme
	// (docs.stripe.com/webhooks#verify-manually). A receiver accepts the request when one
	// v1= entry matches its secret and t is recent (e.g. within 5 minutes).
	HeaderSignature = "Botfleet-Signature"
	// HeaderEventID is the event's id (the body's "id"): the same on every retry and for
	// every endpoint; receivers dedupe on it (delivery is at least once).
	HeaderEventID = "Botfleet-Event-Id"
	// HeaderEventType is the event's type (the body's "type").
	HeaderEventType = "Botfleet-Event-Type"
	// HeaderDeliveryID is the delivery's id (one event to one endpoint).
	HeaderDeliveryID = "Botfleet-Delivery-Id"
)

// Delivery is one event to one endpoint (table webhook_deliveries).
type Delivery struct {
	bun.BaseModel `bun:"table:webhook_deliveries,alias:wd"`

	ID            uuid.UUID       `bun:",pk,type:uuid"`
	TenantID      uuid.UUID       `bun:",type:uuid,notnull"`
	EndpointID    uuid.UUID       `bun:",type:uuid,notnull"`
	EventID       uuid.UUID       `bun:",type:uuid,notnull"`
	EventType     string          `bun:",notnull"`
	Data          json.RawMessage `bun:",type:jsonb,notnull"`
	Status        string          `bun:",notnull"`
	Attempts      int             `bun:",notnull"`
	NextAttemptAt time.Time       `bun:",notnull"`
	CreatedAt     time.Time       `bun:",notnull"`
	UpdatedAt     time.Time       `bun:",notnull"`
	CompletedAt   time.Time       `bun:",nullzero"`
	// AttemptList is filled by ListDeliveries, oldest first.
	AttemptList []Attempt `bun:"-"`
}

// Attempt is one POST of a delivery (table webhook_delivery_attempts).
type Attempt struct {
	bun.BaseModel `bun:"table:webhook_delivery_attempts,alias:wa"`

	ID          int64     `bun:",pk,autoincrement"`
	DeliveryID  uuid.UUID `bun:",type:uuid,notnull"`
	AttemptedAt time.Time `bun:",notnull"`
	Succeeded   bool      `bun:",notnull"`
	// ResponseCode is the HTTP status answered, 0 when there was no answer.
	ResponseCode int    `bun:",nullzero"`
	Error        string `bun:",notnull"`
	DurationMS   int64  `bun:"duration_ms,notnull"`
}

// Body is the JSON POSTed for a delivery.
type Body struct {
	ID        uuid.UUID       `json:"id"`
	Type      string          `json:"type"`
	CreatedAt time.Time       `json:"created_at"`
	Data      json.RawMessage `json:"data"`
}

// Sign returns hex(HMAC-SHA256(secret, "<t>.<body>")), the v1 signature of HeaderSignature.
func Sign(secret string, t int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(t, 10)))
	m.Write([]byte{'.'})
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// SignatureHeader returns the HeaderSignature value for body at Unix time t, one v1= entry
// per secret, in the order given (the current secret first).
func SignatureHeader(t int64, body []byte, secrets ...string) string {
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(t, 10))
	for _, s := range secrets {
		b.WriteString(",v1=")
		b.WriteString(Sign(s, t, body))
	}
	return b.String()
}

// Delivery loop settings.
const (
	// deliverParallel is how many deliveries one loop POSTs at once.
	deliverParallel = 32
	// claimBatch is the most deliveries claimed by one query.
	claimBatch = 32
	// maxErrorLen caps a stored attempt error, in bytes.
	maxErrorLen = 500
)

// DeliveryRetention is how long a delivery that succeeded or failed is kept (with its
// attempts) for GET /webhook-endpoints/{id}/deliveries/ after it completed: 30 days.
const DeliveryRetention = 30 * 24 * time.Hour

// pruneEvery is how often the delivery loop prunes; pruneBatch bounds one DELETE.
const (
	pruneEvery = 10 * time.Minute
	pruneBatch = 5000
)

// Prune deletes deliveries completed more than DeliveryRetention ago, pruneBatch at a time
// until none is left, and returns how many it deleted. Any number of workers may run it.
func (s *Service) Prune(ctx context.Context) (int64, error) {
	var total int64
	before := s.d.Now().Add(-DeliveryRetention)
	for ctx.Err() == nil {
		res, err := s.db.NewRaw(`DELETE FROM webhook_deliveries WHERE id IN (
	SELECT id FROM webhook_deliveries WHERE status <> ? AND completed_at < ? LIMIT ? FOR UPDATE SKIP LOCKED)`,
			StatusPending, before, pruneBatch).Exec(ctx)
		if err != nil {
			return total, apperr.Classify(fmt.Errorf("prune deliveries: %w", err))
		}
		n, _ := res.RowsAffected()
		total += n
		if n < pruneBatch {
			break
		}
	}
	return total, nil
}

// lease is how long a claimed delivery is left to its worker before it is due again
// (the worker died mid-attempt): the request timeout plus a margin.
func (s *Service) lease() time.Duration { return s.d.Timeout + 20*time.Second }

// Run is the worker's delivery loop: until ctx ends, it claims due pending deliveries
// (FOR UPDATE SKIP LOCKED, so any number of workers share the work; a claim counts the
// attempt and pushes next_attempt_at past the lease, so a delivery whose worker dies is
// due again after the lease: at least once) and POSTs them, up to deliverParallel at once.
// It polls every Deps.PollInterval when nothing is due.
func (s *Service) Run(ctx context.Context) error {
	sem := make(chan struct{}, deliverParallel)
	var wg sync.WaitGroup
	defer wg.Wait()
	var pruned time.Time
	for ctx.Err() == nil {
		if time.Since(pruned) > pruneEvery {
			pruned = time.Now()
			if n, err := s.Prune(ctx); err != nil {
				s.log.WarnContext(ctx, "callbacks: prune old deliveries failed", "error", err)
			} else if n > 0 {
				s.log.InfoContext(ctx, "callbacks: pruned old deliveries", "deliveries", n)
			}
		}
		free := cap(sem) - len(sem)
		if free == 0 {
			sem <- struct{}{} // wait for a slot
			<-sem
			continue
		}
		ds, err := s.claim(ctx, min(free, claimBatch))
		if err != nil {
			if ctx.Err() == nil {
				s.log.WarnContext(ctx, "callbacks: claim deliveries failed", "error", err)
			}
			ds = nil
		}
		if len(ds) == 0 {
			select {
			case <-ctx.Done():
			case <-time.After(s.d.PollInterval):
			}
			continue
		}
		eps, err := s.endpointsByID(ctx, ds)
		if err != nil {
			s.log.WarnContext(ctx, "callbacks: load endpoints failed; deliveries retried after their lease", "error", err)
			continue
		}
		for _, d := range ds {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				s.deliver(context.WithoutCancel(ctx), d, eps[d.EndpointID])
			})
		}
	}
	return ctx.Err()
}

// DeliverDue runs one claim of the delivery loop and POSTs what it claimed, waiting for
// the results; it returns how many deliveries it attempted (tests, and a one-shot drain).
func (s *Service) DeliverDue(ctx context.Context) (int, error) {
	ds, err := s.claim(ctx, claimBatch)
	if err != nil || len(ds) == 0 {
		return 0, err
	}
	eps, err := s.endpointsByID(ctx, ds)
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	for _, d := range ds {
		wg.Go(func() { s.deliver(ctx, d, eps[d.EndpointID]) })
	}
	wg.Wait()
	return len(ds), nil
}

// claim takes up to n due pending deliveries.
func (s *Service) claim(ctx context.Context, n int) ([]Delivery, error) {
	now := s.d.Now().UTC()
	var ds []Delivery
	err := s.db.NewRaw(`WITH due AS (
	SELECT id FROM webhook_deliveries WHERE status = ? AND next_attempt_at <= ?
	ORDER BY next_attempt_at LIMIT ? FOR UPDATE SKIP LOCKED)
UPDATE webhook_deliveries AS wd SET attempts = wd.attempts + 1, next_attempt_at = ?, updated_at = ?
FROM due WHERE wd.id = due.id RETURNING wd.*`, StatusPending, now, n, now.Add(s.lease()), now).Scan(ctx, &ds)
	if err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("claim deliveries: %w", err))
	}
	return ds, nil
}

// endpointsByID loads the endpoints of ds in one query.
func (s *Service) endpointsByID(ctx context.Context, ds []Delivery) (map[uuid.UUID]*Endpoint, error) {
	ids := make([]string, 0, len(ds))
	for _, d := range ds {
		ids = append(ids, d.EndpointID.String())
	}
	var eps []Endpoint
	if err := s.db.NewSelect().Model(&eps).Where("we.id = ANY(?::uuid[])", pgdialect.Array(ids)).Scan(ctx); err != nil {
		return nil, apperr.Classify(err)
	}
	m := make(map[uuid.UUID]*Endpoint, len(eps))
	for i := range eps {
		m[eps[i].ID] = &eps[i]
	}
	return m, nil
}

// attemptResult is the outcome of one POST.
type attemptResult struct {
	code int
	err  string
}

// deliver POSTs d to ep and records the attempt and the delivery's new state.
func (s *Service) deliver(ctx context.Context, d Delivery, ep *Endpoint) {
	log := s.log.With("tenant_id", d.TenantID.String(), "delivery_id", d.ID.String(), "event_type", d.EventType)
	if ep == nil { // deleted meanwhile
		if _, err := s.db.NewDelete().Model((*Delivery)(nil)).Where("id = ?", d.ID).Exec(ctx); err != nil {
			log.WarnContext(ctx, "callbacks: drop delivery of a deleted endpoint failed", "error", err)
		}
		return
	}
	started := s.d.Now()
	res := s.post(ctx, d, ep)
	dur := s.d.Now().Sub(started)
	if res.err != "" {
		log.InfoContext(ctx, "callbacks: delivery attempt failed", "endpoint_id", ep.ID.String(), "attempt", d.Attempts, "error", res.err)
	}
	if err := s.record(ctx, d, started, dur, res); err != nil {
		log.WarnContext(ctx, "callbacks: record delivery attempt failed; retried after its lease", "error", err)
	}
}

// post sends one attempt.
func (s *Service) post(ctx context.Context, d Delivery, ep *Endpoint) attemptResult {
	secrets, err := s.secrets(ep)
	if err != nil {
		return attemptResult{err: "cannot open the signing secret (ENCRYPTION_KEY changed?)"}
	}
	body, err := json.Marshal(Body{ID: d.EventID, Type: d.EventType, CreatedAt: d.CreatedAt.UTC(), Data: d.Data})
	if err != nil {
		return attemptResult{err: "marshal body: " + err.Error()}
	}
	rctx, cancel := context.WithTimeout(ctx, s.d.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodPost, ep.URL, bytes.NewReader(body))
	if err != nil {
		return attemptResult{err: "bad url: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "botfleet-webhooks/1")
	req.Header.Set(HeaderEventID, d.EventID.String())
	req.Header.Set(HeaderEventType, d.EventType)
	req.Header.Set(HeaderDeliveryID, d.ID.String())
	req.Header.Set(HeaderSignature, SignatureHeader(s.d.Now().Unix(), body, secrets...))
	resp, err := s.http.Do(req)
	if err != nil {
		return attemptResult{err: requestError(err)}
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return attemptResult{code: resp.StatusCode, err: "HTTP " + strconv.Itoa(resp.StatusCode)}
	}
	return attemptResult{code: resp.StatusCode}
}

// requestError describes a failed request without URL or secrets.
func requestError(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, errDialPrivate):
		return ErrPrivateAddress.Message
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return truncate(oe.Op + ": " + oe.Err.Error())
	}
	var ue *url.Error // its text holds the URL, which may carry the tenant's own secrets
	if errors.As(err, &ue) {
		return truncate(ue.Err.Error())
	}
	return truncate(err.Error())
}

func truncate(s string) string {
	if len(s) > maxErrorLen {
		return s[:maxErrorLen]
	}
	return s
}

// secrets opens ep's current secret and, while it is valid, its previous one.
func (s *Service) secrets(ep *Endpoint) ([]string, error) {
	cur, err := s.d.Sealer.Open(ep.ID, ep.SecretSealed)
	if err != nil {
		return nil, err
	}
	out := []string{cur}
	if len(ep.PreviousSecretSealed) > 0 && s.d.Now().Before(ep.PreviousSecretExpiresAt) {
		if prev, err := s.d.Sealer.Open(ep.ID, ep.PreviousSecretSealed); err == nil {
			out = append(out, prev)
		}
	}
	return out, nil
}

// Backoff is the delay before the attempt after failed attempt n (1-based): base·2^(n-1),
// at most max, with ±20% jitter.
func Backoff(n int, base, max time.Duration) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10 //nolint:gosec // G404: retry jitter, not a secret
	return d + jitter
}

// record stores the attempt and moves the delivery on: succeeded; failed once Deps.MaxAge
// has passed since the event; else pending again after Backoff (never later than the end
// of MaxAge, so that a last attempt runs then). A delivery re-claimed meanwhile by another
// worker (its lease ran out) is left to that worker.
func (s *Service) record(ctx context.Context, d Delivery, started time.Time, dur time.Duration, res attemptResult) error {
	now := s.d.Now().UTC()
	status, next := StatusSucceeded, now
	var completed any = now
	if res.err != "" {
		deadline := d.CreatedAt.Add(s.d.MaxAge)
		if !now.Before(deadline) {
			status = StatusFailed
		} else {
			status, completed = StatusPending, nil
			next = now.Add(Backoff(d.Attempts, s.d.BackoffBase, s.d.BackoffMax))
			if next.After(deadline) {
				next = deadline
			}
		}
	}
	return s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		a := Attempt{DeliveryID: d.ID, AttemptedAt: started.UTC(), Succeeded: res.err == "", ResponseCode: res.code,
			Error: res.err, DurationMS: dur.Milliseconds()}
		if _, err := tx.NewInsert().Model(&a).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewUpdate().Model((*Delivery)(nil)).
			Set("status = ?", status).Set("next_attempt_at = ?", next).Set("completed_at = ?", completed).
			Set("updated_at = ?", now).
			Where("id = ?", d.ID).Where("status = ?", StatusPending).Where("attempts = ?", d.Attempts).Exec(ctx)
		return err
	})
}

// ListDeliveries returns one page of endpoint endpointID's deliveries (tenant tenantID),
// newest first, each with its attempts (oldest first), and the next cursor. Errors:
// ErrNotFound (the endpoint), page.ErrBadCursor, page.ErrBadLimit, apperr kinds.
func (s *Service) ListDeliveries(ctx context.Context, tenantID, endpointID uuid.UUID, f ListFilter) ([]Delivery, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	if _, err := s.Get(ctx, tenantID, endpointID); err != nil {
		return nil, "", err
	}
	var ds []Delivery
	q := s.db.NewSelect().Model(&ds).Where("wd.tenant_id = ?", tenantID).Where("wd.endpoint_id = ?", endpointID)
	if err := page.Newest(q, "wd", after, limit).Scan(ctx); err != nil {
		return nil, "", apperr.Classify(err)
	}
	ds, next := page.Trim(ds, limit, func(d Delivery) (time.Time, uuid.UUID) { return d.CreatedAt, d.ID })
	if len(ds) == 0 {
		return ds, next, nil
	}
	ids := make([]string, len(ds))
	at := make(map[uuid.UUID]int, len(ds))
	for i, d := range ds {
		ids[i], at[d.ID] = d.ID.String(), i
	}
	var as []Attempt
	if err := s.db.NewSelect().Model(&as).Where("wa.delivery_id = ANY(?::uuid[])", pgdialect.Array(ids)).
		OrderExpr("wa.id").Scan(ctx); err != nil {
		return nil, "", apperr.Classify(err)
	}
	for _, a := range as {
		i := at[a.DeliveryID]
		ds[i].AttemptList = append(ds[i].AttemptList, a)
	}
	return ds, next, nil
}

// Retry makes delivery deliveryID of endpoint endpointID (tenant tenantID) due now, whatever
// its status: pending again, delivered by the next claim of the loop (one more attempt;
// a delivery older than Deps.MaxAge is failed again if that attempt fails). Errors:
// ErrNotFound (the endpoint), ErrDeliveryNotFound, apperr kinds.
func (s *Service) Retry(ctx context.Context, tenantID, endpointID, deliveryID uuid.UUID) (Delivery, error) {
	if _, err := s.Get(ctx, tenantID, endpointID); err != nil {
		return Delivery{}, err
	}
	now := s.d.Now().UTC()
	var d Delivery
	err := s.db.NewUpdate().Model((*Delivery)(nil)).
		Set("status = ?", StatusPending).Set("next_attempt_at = ?", now).Set("completed_at = NULL").Set("updated_at = ?", now).
		Where("tenant_id = ?", tenantID).Where("endpoint_id = ?", endpointID).Where("id = ?", deliveryID).
		Returning("*").Scan(ctx, &d)
	if err != nil {
		if database.IsNoRows(err) {
			return Delivery{}, ErrDeliveryNotFound
		}
		return Delivery{}, apperr.Classify(err)
	}
	return d, nil
}
