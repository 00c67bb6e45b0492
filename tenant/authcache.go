package tenant

import (
	"context"
	"log/slog"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/pubcache"
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
	tenant Tenant
	key    Key
}

// authCache caches successful authentications by key hash, so that a request costs no
// PostgreSQL query. It is a pubcache.Cache on KeyInvalidationChannel (freshness rules:
// internal/pubcache): RevokeKey invalidates the key's id, which drops its entry in every
// process within milliseconds (within KeyCacheUnsubscribedTTL while a process's
// subscription is down). Unknown and revoked keys are never cached.
type authCache = pubcache.Cache[[32]byte, authEntry]

func newAuthCache(rdb redis.UniversalClient, log *slog.Logger, load func(context.Context, [32]byte) (authEntry, error)) *authCache {
	return pubcache.New(rdb, log, pubcache.Config[[32]byte, authEntry]{
		Name: "API key", Channel: KeyInvalidationChannel, Load: load,
		FlightKey: func(h [32]byte) string { return string(h[:]) },
		Match:     func(id uuid.UUID, _ [32]byte, e authEntry) bool { return e.key.ID == id },
		TTL:       KeyCacheTTL, UnsubscribedTTL: KeyCacheUnsubscribedTTL,
		MaxEntries: keyCacheMaxEntries, LoadTimeout: keyLoadTimeout,
		PubSubPoll: keyPubSubPoll, PublishRetryFor: keyPublishRetryFor,
	})
}
