package broadcast

// Broadcast topics (issue 9, notification preferences): a broadcast may name one of the
// tenant's topics (contacts/topics.go); its recipients unsubscribed from that topic are
// written as skipped with SkipUnsubscribed by the same INSERT … SELECT that skips blocked
// and opted-out contacts (recipientStatusSQL).

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
)

// SkipUnsubscribed is the reason (the Error) of a skipped recipient whose contact had
// unsubscribed from the broadcast's topic when the recipient rows were written. Blocked and
// opted-out contacts keep those reasons.
const SkipUnsubscribed = "unsubscribed"

// unsubscribedSQL is true for contact row c when broadcast row b names a topic of its
// tenant that c opted out of. False at once for a broadcast without a topic.
const unsubscribedSQL = `(b.topic IS NOT NULL AND EXISTS (SELECT 1 FROM contact_topic_unsubscriptions ctu
	JOIN topics tp ON tp.id = ctu.topic_id WHERE ctu.contact_id = c.id AND tp.tenant_id = b.tenant_id AND tp.name = b.topic))`

// checkTopic checks that topic ("" for none) is one of the tenant's topics, on idb.
// Errors: invalid_field topic (422).
func checkTopic(ctx context.Context, idb bun.IDB, tenantID uuid.UUID, topic string) error {
	if topic == "" {
		return nil
	}
	_, err := contacts.TopicByName(ctx, idb, tenantID, "topic", topic)
	return err
}

// CountUnsubscribed answers how many contacts of the audience PreviewAudience would count
// (the same bot and recipients or segment) are neither blocked nor opted out but
// unsubscribed from the tenant's topic: a broadcast with that topic skips them with
// SkipUnsubscribed. 0 without a topic. Errors: invalid_field topic (422), those of
// PreviewAudience's audience checks.
//
// It reads the links' blocked and opted_out (like PreviewAudience's count).
func (s *Service) CountUnsubscribed(ctx context.Context, tenantID uuid.UUID, botID *uuid.UUID, recipients []uuid.UUID, seg *Segment, topic string) (int, error) {
	if topic == "" {
		return 0, nil
	}
	if err := checkTopic(ctx, s.db, tenantID, topic); err != nil {
		return 0, err
	}
	ids, err := validateAudience(recipients, seg)
	if err != nil {
		return 0, err
	}
	bot, err := s.tg.BotForTenant(ctx, tenantID, botID)
	if err != nil {
		return 0, err
	}
	where, args := audienceWhere(tenantID, bot.ID, ids, seg)
	args = append([]any{tenantID, topic}, args...)
	var n int
	err = s.db.NewRaw(`SELECT count(*) FROM `+audienceFrom+`, (SELECT ?::uuid AS tenant_id, ?::text AS topic) b
WHERE NOT cb.blocked AND NOT cb.opted_out AND `+unsubscribedSQL+` AND `+where, args...).Scan(ctx, &n)
	if err != nil {
		return 0, apperr.Classify(fmt.Errorf("count unsubscribed: %w", err))
	}
	return n, nil
}
