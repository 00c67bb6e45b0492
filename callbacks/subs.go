package callbacks

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"

	"github.com/botfleet/botfleet/internal/apperr"
)

// SubscriptionChannel is the Redis pub/sub channel on which a change of a tenant's
// endpoints (create, update, delete) publishes the tenant id; every process drops its
// cached subscriptions of that tenant.
const SubscriptionChannel = "botfleet:webhook-endpoints:invalidate"

// SubscriptionCacheTTL is how long a tenant's subscriptions are used from the cache: a
// backstop for an invalidation that was missed (Redis down, another process). So an
// endpoint created, enabled or subscribed to a new event type receives events at the
// latest this long after the change; events are never delivered to an endpoint that is
// disabled or deleted, whatever the cache says (Emit joins the endpoints table).
const SubscriptionCacheTTL = 10 * time.Second

// subCacheMaxEntries bounds the cache; past it the cache is emptied.
const subCacheMaxEntries = 100_000

// subEntry is one tenant's enabled endpoints by event type (empty: none, the common case).
type subEntry struct {
	byType   map[string][]uuid.UUID
	loadedAt time.Time
}

// subCache caches, per tenant, which enabled endpoints subscribe to which event type, so
// that emitting an event nobody subscribed to costs no query: one query per tenant per
// SubscriptionCacheTTL at most (concurrent misses share it).
type subCache struct {
	s *Service

	mu      sync.RWMutex
	entries map[uuid.UUID]subEntry
	epoch   uint64

	flights   singleflight.Group
	startOnce sync.Once
	ctx       context.Context
	stop      context.CancelFunc
	done      chan struct{}
}

func newSubCache(s *Service) *subCache {
	ctx, stop := context.WithCancel(context.Background())
	return &subCache{s: s, entries: map[uuid.UUID]subEntry{}, ctx: ctx, stop: stop, done: make(chan struct{})}
}

// endpoints returns the ids of tenantID's enabled endpoints subscribed to typ.
func (c *subCache) endpoints(ctx context.Context, tenantID uuid.UUID, typ string) ([]uuid.UUID, error) {
	c.start()
	c.mu.RLock()
	e, ok := c.entries[tenantID]
	c.mu.RUnlock()
	if ok && time.Since(e.loadedAt) < SubscriptionCacheTTL {
		return e.byType[typ], nil
	}
	v, err, _ := c.flights.Do(string(tenantID[:]), func() (any, error) {
		c.mu.RLock()
		epoch := c.epoch
		c.mu.RUnlock()
		started := time.Now()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		var rows []struct {
			ID     uuid.UUID `bun:"id"`
			Events []string  `bun:"events,array"`
		}
		err := c.s.db.NewSelect().Table("webhook_endpoints").Column("id", "events").
			Where("tenant_id = ?", tenantID).Where("enabled").Scan(lctx, &rows)
		if err != nil {
			return nil, apperr.Classify(err)
		}
		ne := subEntry{loadedAt: started}
		for _, r := range rows {
			if ne.byType == nil {
				ne.byType = map[string][]uuid.UUID{}
			}
			for _, ev := range r.Events {
				ne.byType[ev] = append(ne.byType[ev], r.ID)
			}
		}
		c.mu.Lock()
		if c.epoch == epoch {
			if len(c.entries) >= subCacheMaxEntries {
				clear(c.entries)
			}
			c.entries[tenantID] = ne
		}
		c.mu.Unlock()
		return ne, nil
	})
	if err != nil {
		return nil, err
	}
	return slices.Clip(v.(subEntry).byType[typ]), nil
}

// drop forgets tenantID (uuid.Nil: every tenant).
func (c *subCache) drop(tenantID uuid.UUID) {
	c.mu.Lock()
	c.epoch++
	if tenantID == uuid.Nil {
		clear(c.entries)
	} else {
		delete(c.entries, tenantID)
	}
	c.mu.Unlock()
}

// invalidate drops tenantID here and publishes it to the other processes (best effort:
// SubscriptionCacheTTL bounds a lost message).
func (c *subCache) invalidate(ctx context.Context, tenantID uuid.UUID) {
	c.drop(tenantID)
	if c.s.d.Redis == nil {
		return
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := c.s.d.Redis.Publish(pctx, SubscriptionChannel, tenantID.String()).Err(); err != nil {
		c.s.log.WarnContext(ctx, "callbacks: publish subscription change failed; other processes see it within the cache TTL",
			"tenant_id", tenantID.String(), "error", err)
	}
}

// start subscribes to SubscriptionChannel once (when Redis is configured).
func (c *subCache) start() {
	c.startOnce.Do(func() {
		if c.s.d.Redis == nil {
			close(c.done)
			return
		}
		go c.subscribe()
	})
}

func (c *subCache) close() {
	c.startOnce.Do(func() { close(c.done) })
	c.stop()
	<-c.done
}

// subscribe follows SubscriptionChannel until close (or the Redis client is closed). Each
// re-subscription empties the cache: messages may have been missed meanwhile.
func (c *subCache) subscribe() {
	defer close(c.done)
	first := true
	for {
		ps := c.s.d.Redis.Subscribe(c.ctx, SubscriptionChannel)
		_, rerr := ps.Receive(c.ctx)
		if rerr == nil {
			if !first { // messages may have been missed while the subscription was down
				c.drop(uuid.Nil)
			}
			first = false
			ch := ps.Channel(redis.WithChannelHealthCheckInterval(5 * time.Second))
		loop:
			for {
				select {
				case <-c.ctx.Done():
					break loop
				case m, ok := <-ch:
					if !ok {
						break loop
					}
					if id, err := uuid.Parse(m.Payload); err == nil {
						c.drop(id)
					}
				}
			}
		}
		err := ps.Close()
		if c.ctx.Err() != nil || errors.Is(err, redis.ErrClosed) || errors.Is(rerr, redis.ErrClosed) {
			return
		}
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}
