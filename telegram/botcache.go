package telegram

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

// BotInvalidationChannel is the Redis pub/sub channel on which InvalidateBot publishes the
// bot_app_id of a bot whose row changed (token, webhook secret, deletion, settings). Every
// process subscribes to it and drops its cached copy of that bot. Pub/sub channels are
// global to a Redis server (not per numbered database).
const BotInvalidationChannel = "botfleet:bots:invalidate"

// Bot cache settings (see botCache).
const (
	// BotCacheTTL is how long a cached bot row is used while this process is subscribed to
	// BotInvalidationChannel: a backstop for an invalidation that was never published.
	BotCacheTTL = 10 * time.Second
	// BotCacheUnsubscribedTTL is how long a cached bot row is used while the subscription is
	// down (Redis unreachable, not yet subscribed): invalidations may be missed, so a change
	// reaches this process at most this long after it was committed.
	BotCacheUnsubscribedTTL = time.Second

	// botCacheMaxEntries bounds the cache; past it the cache is emptied.
	botCacheMaxEntries = 100_000
	// botLoadTimeout bounds one PostgreSQL lookup of a bot.
	botLoadTimeout = 5 * time.Second
	// botPubSubPoll is how long the subscriber waits for a message before it pings Redis;
	// no answer for another botPubSubPoll means the subscription is down.
	botPubSubPoll = 500 * time.Millisecond
	// botPublishRetryFor is how long InvalidateBot keeps retrying a failed publish in the
	// background.
	botPublishRetryFor = 10 * time.Second
)

// botCache is an in-process cache of bot rows (deleted ones included), read by the webhook
// (tenant, secret hash, deletion) and by the workers (token, name, daily limit) instead of
// one PostgreSQL query per request or task.
//
// Freshness: InvalidateBot drops the entry in this process at once and publishes the bot id
// on BotInvalidationChannel; every other process's subscriber drops it on receipt
// (milliseconds). While the subscription is down, entries live BotCacheUnsubscribedTTL
// (1 s), so a committed change reaches every process within a second either way; when the
// subscription comes (back) up the cache is emptied, since messages may have been missed.
// BotCacheTTL bounds the damage of a publish that failed for good.
//
// A load that raced with an invalidation is not stored: every invalidation bumps an epoch,
// and a load stores its result only if the epoch did not move while it ran. Concurrent
// misses of one bot share one query (singleflight).
type botCache struct {
	load func(ctx context.Context, id uuid.UUID) (Bot, error)
	rdb  redis.UniversalClient
	log  *slog.Logger
	// onDrop, when set, is called with every id drop forgets (uuid.Nil: all), outside mu.
	onDrop func(id uuid.UUID)

	mu         sync.RWMutex
	entries    map[uuid.UUID]botEntry
	epoch      uint64
	subscribed bool

	flights   singleflight.Group
	startOnce sync.Once
	ctx       context.Context
	stop      context.CancelFunc
	done      chan struct{}
}

type botEntry struct {
	bot      Bot
	loadedAt time.Time // when the query that produced it started
}

func newBotCache(rdb redis.UniversalClient, log *slog.Logger, load func(context.Context, uuid.UUID) (Bot, error)) *botCache {
	ctx, stop := context.WithCancel(context.Background())
	return &botCache{load: load, rdb: rdb, log: log, entries: map[uuid.UUID]botEntry{}, ctx: ctx, stop: stop, done: make(chan struct{})}
}

// get returns bot id, deleted or not, from the cache or PostgreSQL. Errors: ErrBotNotFound
// (never cached), apperr.ErrUnavailable. The returned Bot shares its byte slices with the
// cache: callers must not modify them.
func (c *botCache) get(ctx context.Context, id uuid.UUID) (Bot, error) {
	c.start()
	c.mu.RLock()
	e, ok := c.entries[id]
	ttl := BotCacheUnsubscribedTTL
	if c.subscribed {
		ttl = BotCacheTTL
	}
	c.mu.RUnlock()
	if ok && time.Since(e.loadedAt) < ttl {
		return e.bot, nil
	}
	v, err, _ := c.flights.Do(string(id[:]), func() (any, error) {
		c.mu.RLock()
		epoch := c.epoch
		c.mu.RUnlock()
		started := time.Now()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), botLoadTimeout)
		defer cancel()
		b, err := c.load(lctx, id)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		if c.epoch == epoch {
			if len(c.entries) >= botCacheMaxEntries {
				clear(c.entries)
			}
			c.entries[id] = botEntry{bot: b, loadedAt: started}
		}
		c.mu.Unlock()
		return b, nil
	})
	if err != nil {
		return Bot{}, err
	}
	return v.(Bot), nil
}

// drop forgets bot id (all bots when id is uuid.Nil) and moves the epoch.
func (c *botCache) drop(id uuid.UUID) {
	c.mu.Lock()
	if id == uuid.Nil {
		clear(c.entries)
	} else {
		delete(c.entries, id)
	}
	c.epoch++
	c.mu.Unlock()
	if c.onDrop != nil {
		c.onDrop(id)
	}
}

func (c *botCache) setSubscribed(up bool) {
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
	if cleared && c.onDrop != nil {
		c.onDrop(uuid.Nil)
	}
}

// start launches the subscriber on first use (no Redis: the cache stays in its 1-second
// mode).
func (c *botCache) start() {
	c.startOnce.Do(func() {
		if c.rdb == nil {
			close(c.done)
			return
		}
		go c.subscribe()
	})
}

// close stops the subscriber and waits for it.
func (c *botCache) close() {
	c.startOnce.Do(func() { close(c.done) })
	c.stop()
	<-c.done
}

// subscribe keeps a subscription to BotInvalidationChannel until close is called or the
// Redis client is closed, reconnecting with a backoff of 100 ms doubling to 2 s.
func (c *botCache) subscribe() {
	defer close(c.done)
	backoff := 100 * time.Millisecond
	for {
		err := c.subscribeOnce()
		c.setSubscribed(false)
		if c.ctx.Err() != nil || errors.Is(err, redis.ErrClosed) {
			return
		}
		c.log.Debug("telegram: bot cache subscription down; caching for 1 s", "error", err)
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
func (c *botCache) subscribeOnce() error {
	ps := c.rdb.Subscribe(c.ctx, BotInvalidationChannel)
	defer ps.Close()
	pinged := false
	for {
		msg, err := ps.ReceiveTimeout(c.ctx, botPubSubPoll)
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
				c.log.Warn("telegram: bad bot invalidation message", "payload_len", len(m.Payload))
				c.drop(uuid.Nil)
				continue
			}
			c.drop(id)
		}
	}
}

// publish announces id on BotInvalidationChannel, retrying in the background for
// botPublishRetryFor when Redis fails. It returns the first attempt's error.
func (c *botCache) publish(ctx context.Context, id uuid.UUID) error {
	if c.rdb == nil {
		return nil
	}
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	err := c.rdb.Publish(pctx, BotInvalidationChannel, id.String()).Err()
	cancel()
	if err == nil {
		return nil
	}
	go func() { //nolint:gosec // G118: the retry must outlive the request that changed the bot
		deadline := time.Now().Add(botPublishRetryFor)
		for wait := 100 * time.Millisecond; time.Now().Before(deadline); wait = min(2*wait, time.Second) {
			time.Sleep(wait)
			pctx, cancel := context.WithTimeout(context.Background(), time.Second)
			err := c.rdb.Publish(pctx, BotInvalidationChannel, id.String()).Err()
			cancel()
			if err == nil || errors.Is(err, redis.ErrClosed) {
				return
			}
		}
		c.log.ErrorContext(ctx, "telegram: bot invalidation not published; other processes see the change within the cache TTL",
			"bot_app_id", id.String(), "ttl", BotCacheTTL.String())
	}()
	return fmt.Errorf("publish bot invalidation: %w", err)
}

// InvalidateBot makes every process forget its cached copy of bot botID: at once in this
// process, and through BotInvalidationChannel (Redis pub/sub) in the others. Call it after
// the transaction that changed the bot's row has committed (token rotation, new webhook
// secret, deletion, name or daily limit). The local copy is dropped whatever happens; when
// the publish fails it is retried in the background for 10 s and the error is returned for
// logging (other processes then see the change within BotCacheTTL, or within 1 s if their
// own subscription is down too).
func (s *Service) InvalidateBot(ctx context.Context, botID uuid.UUID) error {
	s.in.bots.drop(botID)
	return s.in.bots.publish(ctx, botID)
}

// invalidateBot is InvalidateBot for callers that only log a failure.
func (s *Service) invalidateBot(ctx context.Context, botID uuid.UUID) {
	if err := s.InvalidateBot(ctx, botID); err != nil {
		s.log.WarnContext(ctx, "telegram: bot cache invalidation not published; retrying in the background",
			"bot_app_id", botID.String(), "error", err)
	}
}

// cachedBot returns the active bot id from the process's bot cache (see botCache: changes
// announced by InvalidateBot are seen within milliseconds, any change within 1 s while
// Redis pub/sub is down). Errors: ErrBotNotFound for an unknown or deleted bot,
// apperr.ErrUnavailable. The returned Bot's byte slices are shared: do not modify them.
func (s *Service) cachedBot(ctx context.Context, id uuid.UUID) (Bot, error) {
	b, err := s.in.bots.get(ctx, id)
	if err != nil {
		return Bot{}, err
	}
	if !b.DeletedAt.IsZero() {
		return Bot{}, ErrBotNotFound
	}
	return b, nil
}

// Close stops the Service's background work (the bot cache's Redis subscription). It does
// not close the DB, Redis or queue clients it was given. Event processors are stopped by
// cancelling their context.
func (s *Service) Close() {
	s.in.bots.close()
}
