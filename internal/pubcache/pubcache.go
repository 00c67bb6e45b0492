// Package pubcache is an in-process read-through cache whose entries every process drops
// when one of them announces a change on a Redis pub/sub channel. It serves the hot
// lookups that would otherwise cost a PostgreSQL query per request or task: bots
// (telegram) and API keys (tenant).
//
// Freshness: Invalidate drops the matching entries in this process at once and publishes
// the id on the cache's channel; every other process's subscriber drops them on receipt
// (milliseconds). While the subscription is down (Redis unreachable, not yet subscribed,
// no Redis configured), entries live Config.UnsubscribedTTL, so a committed change reaches
// every process within that time either way (a silent outage is noticed within two poll
// intervals); when the subscription comes (back) up the cache is emptied, since messages
// may have been missed. Config.TTL bounds the damage of a publish that failed for good.
//
// A load that raced with an invalidation is not stored: every invalidation bumps an epoch,
// and a load stores its result only if the epoch did not move while it ran. Concurrent
// misses of one key share one load (singleflight). Load errors are never cached.
package pubcache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/singleflight"
)

// Defaults of Config's optional fields.
const (
	DefaultTTL             = 10 * time.Second
	DefaultUnsubscribedTTL = time.Second
	DefaultMaxEntries      = 100_000
	DefaultLoadTimeout     = 5 * time.Second
	DefaultPubSubPoll      = 500 * time.Millisecond
	DefaultPublishRetryFor = 10 * time.Second
)

// Config describes a Cache. Channel, Load, FlightKey and Match are required.
type Config[K comparable, V any] struct {
	// Name names the cache in logs ("bot", "API key").
	Name string
	// Channel is the Redis pub/sub channel of invalidations; its messages are UUIDs.
	// Pub/sub channels are global to a Redis server (not per numbered database).
	Channel string
	// Load reads the value of key from the source of truth; it runs with LoadTimeout.
	Load func(ctx context.Context, key K) (V, error)
	// FlightKey is key as a string, to share concurrent loads of one key.
	FlightKey func(key K) string
	// Match reports whether an invalidation of id covers the entry (key, v).
	Match func(id uuid.UUID, key K, v V) bool
	// OnDrop, when set, is called with every invalidated id (uuid.Nil: everything was
	// dropped), outside the cache's lock.
	OnDrop func(id uuid.UUID)

	// TTL is an entry's life while subscribed (default DefaultTTL); UnsubscribedTTL while
	// not (default DefaultUnsubscribedTTL).
	TTL, UnsubscribedTTL time.Duration
	// MaxEntries bounds the cache; past it the cache is emptied (default DefaultMaxEntries).
	MaxEntries int
	// LoadTimeout bounds one Load (default DefaultLoadTimeout).
	LoadTimeout time.Duration
	// PubSubPoll is how long the subscriber waits for a message before it pings Redis; no
	// answer for another PubSubPoll means the subscription is down (default
	// DefaultPubSubPoll).
	PubSubPoll time.Duration
	// PublishRetryFor is how long a failed publish is retried in the background (default
	// DefaultPublishRetryFor).
	PublishRetryFor time.Duration
}

type entry[V any] struct {
	v        V
	loadedAt time.Time // when the load that produced it started
}

// Cache is a pub/sub-invalidated read-through cache (see the package comment). Its zero
// value is not usable: use New.
type Cache[K comparable, V any] struct {
	cfg Config[K, V]
	rdb redis.UniversalClient
	log *slog.Logger

	mu         sync.RWMutex
	entries    map[K]entry[V]
	epoch      uint64
	subscribed bool

	flights   singleflight.Group
	startOnce sync.Once
	ctx       context.Context
	stop      context.CancelFunc
	done      chan struct{}
}

// New returns a Cache. rdb may be nil (no Redis: entries then always live
// UnsubscribedTTL). The subscriber starts on first use (Get or Start).
func New[K comparable, V any](rdb redis.UniversalClient, log *slog.Logger, cfg Config[K, V]) *Cache[K, V] {
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.UnsubscribedTTL <= 0 {
		cfg.UnsubscribedTTL = DefaultUnsubscribedTTL
	}
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = DefaultMaxEntries
	}
	if cfg.LoadTimeout <= 0 {
		cfg.LoadTimeout = DefaultLoadTimeout
	}
	if cfg.PubSubPoll <= 0 {
		cfg.PubSubPoll = DefaultPubSubPoll
	}
	if cfg.PublishRetryFor <= 0 {
		cfg.PublishRetryFor = DefaultPublishRetryFor
	}
	ctx, stop := context.WithCancel(context.Background()) //nolint:gosec // G118: stop is kept in the Cache and called by Close
	return &Cache[K, V]{cfg: cfg, rdb: rdb, log: log, entries: map[K]entry[V]{}, ctx: ctx, stop: stop, done: make(chan struct{})}
}

// Get returns the value of key from the cache or from Load. Errors: those of Load.
func (c *Cache[K, V]) Get(ctx context.Context, key K) (V, error) {
	c.Start()
	c.mu.RLock()
	e, ok := c.entries[key]
	ttl := c.ttlLocked()
	c.mu.RUnlock()
	if ok && time.Since(e.loadedAt) < ttl {
		return e.v, nil
	}
	v, err, _ := c.flights.Do(c.cfg.FlightKey(key), func() (any, error) {
		c.mu.RLock()
		epoch := c.epoch
		c.mu.RUnlock()
		started := time.Now()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LoadTimeout)
		defer cancel()
		v, err := c.cfg.Load(lctx, key)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if c.epoch == epoch {
			if len(c.entries) >= c.cfg.MaxEntries {
				clear(c.entries)
			}
			c.entries[key] = entry[V]{v: v, loadedAt: started}
		}
		c.mu.Unlock()
		return v, nil
	})
	if err != nil {
		var zero V
		return zero, err
	}
	return v.(V), nil
}

// TTL is the current life of an entry: Config.TTL while subscribed, else
// Config.UnsubscribedTTL. Caches that follow this one's invalidations (OnDrop) use it too.
func (c *Cache[K, V]) TTL() time.Duration {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ttlLocked()
}

func (c *Cache[K, V]) ttlLocked() time.Duration {
	if c.subscribed {
		return c.cfg.TTL
	}
	return c.cfg.UnsubscribedTTL
}

// Subscribed reports whether the invalidation subscription is up.
func (c *Cache[K, V]) Subscribed() bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.subscribed
}

// Len is the number of entries (fresh or not).
func (c *Cache[K, V]) Len() int {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.entries)
}

// Drop forgets, in this process only, the entries id covers (Config.Match; every entry when
// id is uuid.Nil) and moves the epoch.
func (c *Cache[K, V]) Drop(id uuid.UUID) {
	c.mu.Lock()
	if id == uuid.Nil {
		clear(c.entries)
	} else {
		for k, e := range c.entries {
			if c.cfg.Match(id, k, e.v) {
				delete(c.entries, k)
			}
		}
	}
	c.epoch++
	c.mu.Unlock()
	if c.cfg.OnDrop != nil {
		c.cfg.OnDrop(id)
	}
}

// Invalidate drops id's entries in this process at once and publishes id on the channel so
// that every other process drops them too. Call it after the change has committed. When the
// publish fails it is retried in the background for Config.PublishRetryFor and the first
// error is returned, for logging.
func (c *Cache[K, V]) Invalidate(ctx context.Context, id uuid.UUID) error {
	c.Drop(id)
	return c.publish(ctx, id)
}

func (c *Cache[K, V]) setSubscribed(up bool) {
	c.mu.Lock()
	cleared := false
	if up && !c.subscribed {
		// Invalidations published while we were not listening are lost: start afresh.
		clear(c.entries)
		c.epoch++
		cleared = true
	}
	c.subscribed = up
	c.mu.Unlock()
	if cleared && c.cfg.OnDrop != nil {
		c.cfg.OnDrop(uuid.Nil)
	}
}

// Start launches the subscriber if it is not running yet (no Redis: nothing to start).
func (c *Cache[K, V]) Start() {
	c.startOnce.Do(func() {
		if c.rdb == nil {
			close(c.done)
			return
		}
		go c.subscribe()
	})
}

// Close stops the subscriber and waits for it.
func (c *Cache[K, V]) Close() {
	c.startOnce.Do(func() { close(c.done) })
	c.stop()
	<-c.done
}

// subscribe keeps a subscription to the channel until Close or until the Redis client is
// closed, reconnecting with a backoff of 100 ms doubling to 2 s.
func (c *Cache[K, V]) subscribe() {
	defer close(c.done)
	backoff := 100 * time.Millisecond
	for {
		err := c.subscribeOnce()
		c.setSubscribed(false)
		if c.ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return
		}
		c.log.Debug("pubcache: subscription down; caching briefly", "cache", c.cfg.Name,
			"ttl", c.cfg.UnsubscribedTTL.String(), "error", err)
		select {
		case <-c.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// subscribeOnce runs one subscription until it fails. The subscription counts as up from
// Redis's subscribe confirmation until an error or an unanswered ping.
func (c *Cache[K, V]) subscribeOnce() error {
	ps := c.rdb.Subscribe(c.ctx, c.cfg.Channel)
	defer ps.Close()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(c.ctx, c.cfg.PubSubPoll)
		if err != nil {
			var ne net.Error
			if c.ctx.Err() != nil || !errors.As(err, &ne) || !ne.Timeout() {
				return err
			}
			if pinged {
				return errors.New("no answer to ping")
			}
			if err := ps.Ping(c.ctx); err != nil {
				return err
			}
			pinged = true
			continue
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "subscribe" {
				c.setSubscribed(true)
			}
		case *redis.Message:
			id, err := uuid.Parse(m.Payload)
			if err != nil {
				c.log.Warn("pubcache: bad invalidation message", "cache", c.cfg.Name, "payload_len", len(m.Payload))
				c.Drop(uuid.Nil)
				continue
			}
			c.Drop(id)
		}
	}
}

// publish announces id on the channel, retrying in the background for
// Config.PublishRetryFor when Redis fails. It returns the first attempt's error.
func (c *Cache[K, V]) publish(ctx context.Context, id uuid.UUID) error {
	if c.rdb == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	err := c.rdb.Publish(pctx, c.cfg.Channel, id.String()).Err()
	cancel()
	if err == nil {
		return nil
	}
	go func() { //nolint:gosec // G118: the retry must outlive the request that made the change
		deadline := time.Now().Add(c.cfg.PublishRetryFor)
		for wait := 100 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
			time.Sleep(wait)
			pctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := c.rdb.Publish(pctx, c.cfg.Channel, id.String()).Err()
			cancel()
			if err == nil || errors.Is(err, redis.ErrClosed) {
				return
			}
		}
		c.log.ErrorContext(ctx, "pubcache: invalidation not published; other processes see the change within the cache TTL",
			"cache", c.cfg.Name, "id", id.String(), "ttl", c.cfg.TTL.String())
	}()
	return fmt.Errorf("publish %s invalidation: %w", c.cfg.Name, err)
}
