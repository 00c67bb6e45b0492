package tenant

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

// KeyInvalidationChannel is the Redis pub/sub channel on which RevokeKey publishes the id
// of a revoked API key. Every process subscribes to it and drops its cached copy of that
// key. Pub/sub channels are global to a Redis server (not per numbered database).
const KeyInvalidationChannel = "botfleet:api-keys:invalidate"

// Authentication cache settings (see authCache).
const (
	// KeyCacheTTL is how long a successful authentication is reused while this process is
	// subscribed to KeyInvalidationChannel: a backstop for an invalidation that was never
	// published.
	KeyCacheTTL = 10 * time.Second
	// KeyCacheUnsubscribedTTL is how long a successful authentication is reused while the
	// subscription is down (Redis unreachable, not yet subscribed, no Redis configured): a
	// revocation reaches this process at most this long after it was committed.
	KeyCacheUnsubscribedTTL = time.Second

	// keyCacheMaxEntries bounds the cache; past it the cache is emptied.
	keyCacheMaxEntries = 100_000
	// keyLoadTimeout bounds one PostgreSQL lookup of a key.
	keyLoadTimeout = 5 * time.Second
	// keyPubSubPoll is how long the subscriber waits for a message before it pings Redis;
	// no answer for another keyPubSubPoll means the subscription is down. So a silent Redis
	// outage is noticed within 2*keyPubSubPoll, after which KeyCacheUnsubscribedTTL applies.
	keyPubSubPoll = 250 * time.Millisecond
	// keyPublishRetryFor is how long a failed publish is retried in the background.
	keyPublishRetryFor = 10 * time.Second
)

// authEntry is one successful authentication.
type authEntry struct {
	tenant   Tenant
	key      Key
	loadedAt time.Time // when the query that produced it started
}

// authCache caches successful authentications by key hash, so that a request costs no
// PostgreSQL query (the same design as telegram's bot cache, telegram/botcache.go).
// Unknown and revoked keys are never cached.
//
// Freshness: RevokeKey drops the key in this process at once and publishes its id on
// KeyInvalidationChannel; every other process's subscriber drops it on receipt
// (milliseconds). While the subscription is down, entries live KeyCacheUnsubscribedTTL
// (1 s), so a revocation reaches every process within about a second either way (a silent
// outage is noticed within 2*keyPubSubPoll); when the subscription comes (back) up the
// cache is emptied, since messages may have been missed. KeyCacheTTL bounds the damage of
// a publish that failed for good.
//
// A load that raced with an invalidation is not stored: every invalidation bumps an epoch,
// and a load stores its result only if the epoch did not move while it ran. Concurrent
// misses of one key share one query (singleflight).
type authCache struct {
	load func(ctx context.Context, hash [32]byte) (authEntry, error)
	rdb  redis.UniversalClient
	log  *slog.Logger

	mu         sync.RWMutex
	entries    map[[32]byte]authEntry
	epoch      uint64
	subscribed bool

	flights   singleflight.Group
	startOnce sync.Once
	ctx       context.Context
	stop      context.CancelFunc
	done      chan struct{}
}

func newAuthCache(rdb redis.UniversalClient, log *slog.Logger, load func(context.Context, [32]byte) (authEntry, error)) *authCache {
	ctx, stop := context.WithCancel(context.Background())
	return &authCache{load: load, rdb: rdb, log: log, entries: map[[32]byte]authEntry{}, ctx: ctx, stop: stop, done: make(chan struct{})}
}

// get returns the authentication of the key whose SHA-256 is hash, from the cache or
// PostgreSQL. Errors: those of load (never cached).
func (c *authCache) get(ctx context.Context, hash [32]byte) (authEntry, error) {
	c.start()
	c.mu.RLock()
	e, ok := c.entries[hash]
	ttl := KeyCacheUnsubscribedTTL
	if c.subscribed {
		ttl = KeyCacheTTL
	}
	c.mu.RUnlock()
	if ok && time.Since(e.loadedAt) < ttl {
		return e, nil
	}
	v, err, _ := c.flights.Do(string(hash[:]), func() (any, error) {
		c.mu.RLock()
		epoch := c.epoch
		c.mu.RUnlock()
		started := time.Now()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), keyLoadTimeout)
		defer cancel()
		e, err := c.load(lctx, hash)
		if err != nil {
			return nil, err
		}
		e.loadedAt = started
		c.mu.Lock()
		if c.epoch == epoch {
			if len(c.entries) >= keyCacheMaxEntries {
				clear(c.entries)
			}
			c.entries[hash] = e
		}
		c.mu.Unlock()
		return e, nil
	})
	if err != nil {
		return authEntry{}, err
	}
	return v.(authEntry), nil
}

// drop forgets key id (every key when id is uuid.Nil) and moves the epoch.
func (c *authCache) drop(id uuid.UUID) {
	c.mu.Lock()
	for h, e := range c.entries {
		if id == uuid.Nil || e.key.ID == id {
			delete(c.entries, h)
		}
	}
	c.epoch++
	c.mu.Unlock()
}

func (c *authCache) setSubscribed(up bool) {
	c.mu.Lock()
	if up && !c.subscribed {
		// Invalidations published while we were not listening are lost: start afresh.
		clear(c.entries)
		c.epoch++
	}
	c.subscribed = up
	c.mu.Unlock()
}

// start launches the subscriber on first use (no Redis: the cache stays in its 1-second
// mode).
func (c *authCache) start() {
	c.startOnce.Do(func() {
		if c.rdb == nil {
			close(c.done)
			return
		}
		go c.subscribe()
	})
}

// close stops the subscriber and waits for it.
func (c *authCache) close() {
	c.startOnce.Do(func() { close(c.done) })
	c.stop()
	<-c.done
}

// subscribe keeps a subscription to KeyInvalidationChannel until close is called or the
// Redis client is closed, reconnecting with a backoff of 100 ms doubling to 2 s.
func (c *authCache) subscribe() {
	defer close(c.done)
	backoff := 100 * time.Millisecond
	for {
		err := c.subscribeOnce()
		c.setSubscribed(false)
		if c.ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return
		}
		c.log.Debug("tenant: API key cache subscription down; caching for 1 s", "error", err)
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
func (c *authCache) subscribeOnce() error {
	ps := c.rdb.Subscribe(c.ctx, KeyInvalidationChannel)
	defer ps.Close()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(c.ctx, keyPubSubPoll)
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
				c.log.Warn("tenant: bad API key invalidation message", "payload_len", len(m.Payload))
				c.drop(uuid.Nil)
				continue
			}
			c.drop(id)
		}
	}
}

// publish announces id on KeyInvalidationChannel, retrying in the background for
// keyPublishRetryFor when Redis fails. It returns the first attempt's error.
func (c *authCache) publish(ctx context.Context, id uuid.UUID) error {
	if c.rdb == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	err := c.rdb.Publish(pctx, KeyInvalidationChannel, id.String()).Err()
	cancel()
	if err == nil {
		return nil
	}
	go func() { //nolint:gosec // G118: the retry must outlive the request that revoked the key
		deadline := time.Now().Add(keyPublishRetryFor)
		for wait := 100 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
			time.Sleep(wait)
			pctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := c.rdb.Publish(pctx, KeyInvalidationChannel, id.String()).Err()
			cancel()
			if err == nil || errors.Is(err, redis.ErrClosed) {
				return
			}
		}
		c.log.ErrorContext(ctx, "tenant: API key revocation not published; other processes refuse the key within the cache TTL",
			"api_key_id", id.String(), "ttl", KeyCacheTTL.String())
	}()
	return fmt.Errorf("publish API key invalidation: %w", err)
}
