package callbacks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
)

// Event is one event to emit: its tenant, type (EventTypes) and data (marshalled to the
// JSON object "data" of the delivery body).
type Event struct {
	TenantID uuid.UUID
	Type     string
	Data     any
}

// Wants reports whether tenantID has an enabled endpoint subscribed to typ, from the
// subscription cache: no query while the tenant's entry is fresh (SubscriptionCacheTTL).
// Callers on hot paths ask it before they build an event's data. A nil Service wants
// nothing. Errors: apperr.ErrUnavailable (the cache could not be loaded).
func (s *Service) Wants(ctx context.Context, tenantID uuid.UUID, typ string) (bool, error) {
	if s == nil {
		return false, nil
	}
	ids, err := s.subs.endpoints(ctx, tenantID, typ)
	return len(ids) > 0, err
}

// Emit is EmitMany for one event.
func (s *Service) Emit(ctx context.Context, idb bun.IDB, tenantID uuid.UUID, typ string, data any) error {
	return s.EmitMany(ctx, idb, []Event{{TenantID: tenantID, Type: typ, Data: data}})
}

// EmitMany stores one delivery per event and per enabled endpoint of the event's tenant
// subscribed to its type, in one multi-row INSERT on idb: give it the transaction of the
// change that caused the events, so that they are stored if and only if the change
// commits (transactional outbox). The worker's delivery loop (Run) then POSTs them.
// Events nobody subscribed to cost no query (Wants). A nil Service emits nothing.
// Errors: apperr kinds (the caller's transaction should fail with them).
func (s *Service) EmitMany(ctx context.Context, idb bun.IDB, events []Event) error {
	if s == nil || len(events) == 0 {
		return nil
	}
	var q strings.Builder
	var args []any
	now := s.d.Now().UTC()
	n := 0
	for i, ev := range events {
		eps, err := s.subs.endpoints(ctx, ev.TenantID, ev.Type)
		if err != nil {
			return err
		}
		if len(eps) == 0 {
			continue
		}
		data, err := json.Marshal(ev.Data)
		if err != nil {
			return fmt.Errorf("callbacks: marshal %s data: %w", ev.Type, err)
		}
		eventID := newID()
		// Events of one call keep their order in created_at (a microsecond apart).
		at := now.Add(time.Duration(i) * time.Microsecond)
		for _, ep := range eps {
			if n > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?::uuid, ?::uuid, ?::uuid, ?::uuid, ?, ?::jsonb, ?::timestamptz)")
			args = append(args, newID(), ev.TenantID, ep, eventID, ev.Type, string(data), at)
			n++
		}
	}
	if n == 0 {
		return nil
	}
	// The join keeps only endpoints that are still the tenant's and enabled: the cache may
	// be up to SubscriptionCacheTTL old.
	sql := `INSERT INTO webhook_deliveries (id, tenant_id, endpoint_id, event_id, event_type, data, created_at, updated_at, next_attempt_at)
SELECT v.id, v.tenant_id, v.endpoint_id, v.event_id, v.event_type, v.data, v.created_at, v.created_at, v.created_at
FROM (VALUES ` + q.String() + `) AS v (id, tenant_id, endpoint_id, event_id, event_type, data, created_at)
JOIN webhook_endpoints we ON we.id = v.endpoint_id AND we.tenant_id = v.tenant_id AND we.enabled`
	if _, err := idb.NewRaw(sql, args...).Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("callbacks: store deliveries: %w", err))
	}
	return nil
}

// newID returns a UUIDv7 (time-ordered: inserts land at the right edge of the index).
func newID() uuid.UUID {
	if id, err := uuid.NewV7(); err == nil {
		return id
	}
	return uuid.New()
}

// ContactLinkedData is the data of a contact.linked event.
type ContactLinkedData struct {
	ContactID  uuid.UUID `json:"contact_id"`
	ExternalID string    `json:"external_id"`
	BotAppID   uuid.UUID `json:"bot_app_id"`
	// Method is how the link was made: "link_token" (deep link or /link) or
	// "verification_code".
	Method string `json:"method"`
}

// EmitContactLinked emits contact.linked for tenantID on idb (the transaction that set
// the contact's external_id). Account linking calls it.
func (s *Service) EmitContactLinked(ctx context.Context, idb bun.IDB, tenantID uuid.UUID, d ContactLinkedData) error {
	return s.Emit(ctx, idb, tenantID, EventContactLinked, d)
}
