package callbacks

import (
	"context"
	"slices"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/pubcache"
)

// SubscriptionChannel is the Redis pub/sub channel on which a change of a tenant's
// endpoints (create, update, delete) publishes the tenant id; every process drops its
// cached subscriptions of that tenant.
const SubscriptionChannel = "botfleet:webhook-endpoints:invalidate"

// SubscriptionCacheTTL is how long a tenant's subscriptions are used from the cache: a
// backstop for an invalidation that was missed (another process's publish failed for
// good). While this process's subscription is down the cache keeps entries 1 s
// (pubcache.DefaultUnsubscribedTTL). So an endpoint created, enabled or subscribed to a
// new event type receives events at the latest this long after the change; events are
// never delivered to an endpoint that is disabled or deleted, whatever the cache says
// (Emit joins the endpoints table).
const SubscriptionCacheTTL = 10 * time.Second

// subEntry is one tenant's enabled endpoints by event type (empty: none, the common case).
type subEntry struct {
	byType map[string][]uuid.UUID
}

// subCache caches, per tenant, which enabled endpoints subscribe to which event type, so
// that emitting an event nobody subscribed to costs no query: one query per tenant per
// SubscriptionCacheTTL at most (concurrent misses share it). A pubcache.Cache keyed by
// tenant id on SubscriptionChannel.
type subCache struct {
	c *pubcache.Cache[uuid.UUID, subEntry]
}

func newSubCache(s *Service) *subCache {
	return &subCache{c: pubcache.New(s.d.Redis, s.log, pubcache.Config[uuid.UUID, subEntry]{
		Name: "webhook endpoint subscription", Channel: SubscriptionChannel,
		Load:      s.loadSubscriptions,
		FlightKey: func(id uuid.UUID) string { return string(id[:]) },
		Match:     func(id, tenantID uuid.UUID, _ subEntry) bool { return id == tenantID },
		TTL:       SubscriptionCacheTTL,
	})}
}

// loadSubscriptions reads tenantID's enabled endpoints by event type.
func (s *Service) loadSubscriptions(ctx context.Context, tenantID uuid.UUID) (subEntry, error) {
	var rows []struct {
		ID     uuid.UUID `bun:"id"`
		Events []string  `bun:"events,array"`
	}
	err := s.db.NewSelect().Table("webhook_endpoints").Column("id", "events").
		Where("tenant_id = ?", tenantID).Where("enabled").Scan(ctx, &rows)
	if err != nil {
		return subEntry{}, apperr.Classify(err)
	}
	var e subEntry
	for _, r := range rows {
		if e.byType == nil {
			e.byType = map[string][]uuid.UUID{}
		}
		for _, ev := range r.Events {
			e.byType[ev] = append(e.byType[ev], r.ID)
		}
	}
	return e, nil
}

// endpoints returns the ids of tenantID's enabled endpoints subscribed to typ.
func (c *subCache) endpoints(ctx context.Context, tenantID uuid.UUID, typ string) ([]uuid.UUID, error) {
	e, err := c.c.Get(ctx, tenantID)
	if err != nil {
		return nil, err
	}
	return slices.Clip(e.byType[typ]), nil
}

// invalidate drops tenantID here and publishes it to the other processes (a failed
// publish is retried in the background; SubscriptionCacheTTL bounds a lost one).
func (c *subCache) invalidate(ctx context.Context, tenantID uuid.UUID) {
	_ = c.c.Invalidate(ctx, tenantID) // logged by pubcache when the retries give up
}

func (c *subCache) close() { c.c.Close() }
