package telegram

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/pubcache"
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
// one PostgreSQL query per request or task. It is a pubcache.Cache on
// BotInvalidationChannel (freshness rules: internal/pubcache); the returned Bot shares its
// byte slices with the cache: callers must not modify them.
type botCache = pubcache.Cache[uuid.UUID, Bot]

// newBotCache returns the bot cache: load reads a bot (ErrBotNotFound is never cached);
// onDrop, when not nil, is called with every bot id dropped (uuid.Nil: all).
func newBotCache(rdb redis.UniversalClient, log *slog.Logger, load func(context.Context, uuid.UUID) (Bot, error), onDrop func(uuid.UUID)) *botCache {
	return pubcache.New(rdb, log, pubcache.Config[uuid.UUID, Bot]{
		Name: "bot", Channel: BotInvalidationChannel, Load: load, OnDrop: onDrop,
		FlightKey: func(id uuid.UUID) string { return string(id[:]) },
		Match:     func(id, key uuid.UUID, _ Bot) bool { return id == key },
		TTL:       BotCacheTTL, UnsubscribedTTL: BotCacheUnsubscribedTTL,
		MaxEntries: botCacheMaxEntries, LoadTimeout: botLoadTimeout,
		PubSubPoll: botPubSubPoll, PublishRetryFor: botPublishRetryFor,
	})
}

// InvalidateBot makes every process forget its cached copy of bot botID: at once in this
// process, and through BotInvalidationChannel (Redis pub/sub) in the others. Call it after
// the transaction that changed the bot's row has committed (token rotation, new webhook
// secret, deletion, name or daily limit). The local copy is dropped whatever happens; when
// the publish fails it is retried in the background for 10 s and the error is returned for
// logging (other processes then see the change within BotCacheTTL, or within 1 s if their
// own subscription is down too).
func (s *Service) InvalidateBot(ctx context.Context, botID uuid.UUID) error {
	return s.in.bots.Invalidate(ctx, botID)
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
	b, err := s.in.bots.Get(ctx, id)
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
	s.in.bots.Close()
}
