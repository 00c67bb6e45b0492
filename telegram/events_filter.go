package telegram

import (
	"slices"
	"strings"
	"time"

	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/validate"
)

// Processing states of a webhook event (EventConditions.Status, GET
// /telegram/v1/webhook-events/?status=).
const (
	// EventPending: not processed yet (processed_at null).
	EventPending = "pending"
	// EventProcessed: handled normally (processed_at set, process_error empty).
	EventProcessed = "processed"
	// EventSkipped: processed but not handled (process_error "skipped: ...": an update type
	// or a my_chat_member change that is not handled, an undecodable update).
	EventSkipped = "skipped"
	// EventFailed: processing failed for good (process_error "failed: ...").
	EventFailed = "failed"
)

// EventStatuses are the valid EventConditions.Status values.
var EventStatuses = []string{EventPending, EventProcessed, EventSkipped, EventFailed}

// EventConditions are the optional conditions of a webhook event listing, all ANDed:
//   - UpdateType: one of UpdateTypes or UpdateTypeUnknown (else 422, field update_type);
//   - Status: one of EventStatuses (else 422, field status);
//   - ReceivedAfter / ReceivedBefore: received_at strictly after / before (zero = no
//     bound; After not before Before: 422, field created_after).
//
// The cursor of ListEvents stays an id: a next_cursor continues the same listing when the
// same conditions are given again.
type EventConditions struct {
	UpdateType     string
	Status         string
	ReceivedAfter  time.Time
	ReceivedBefore time.Time
}

// check validates c (422 invalid_field).
func (c EventConditions) check() error {
	if c.UpdateType != "" && c.UpdateType != UpdateTypeUnknown && !slices.Contains(UpdateTypes, c.UpdateType) {
		return validate.Field("update_type", "update_type must be an Update field such as message, callback_query or my_chat_member (or unknown), not %q", c.UpdateType)
	}
	if c.Status != "" && !slices.Contains(EventStatuses, c.Status) {
		return validate.Field("status", "status must be one of %s", strings.Join(EventStatuses, ", "))
	}
	if !c.ReceivedAfter.IsZero() && !c.ReceivedBefore.IsZero() && !c.ReceivedAfter.Before(c.ReceivedBefore) {
		return validate.Field("created_after", "created_after must be before created_before")
	}
	return nil
}

// apply adds c's conditions to a select of webhook_events aliased e.
func (c EventConditions) apply(q *bun.SelectQuery) *bun.SelectQuery {
	if c.UpdateType != "" {
		q = q.Where("e.update_type = ?", c.UpdateType)
	}
	switch c.Status {
	case EventPending:
		q = q.Where("e.processed_at IS NULL")
	case EventProcessed:
		q = q.Where("e.processed_at IS NOT NULL").Where("e.process_error = ''")
	case EventSkipped:
		q = q.Where("e.processed_at IS NOT NULL").Where("e.process_error LIKE 'skipped:%'")
	case EventFailed:
		q = q.Where("e.processed_at IS NOT NULL").Where("e.process_error <> ''").Where("e.process_error NOT LIKE 'skipped:%'")
	}
	if !c.ReceivedAfter.IsZero() {
		q = q.Where("e.received_at > ?", c.ReceivedAfter)
	}
	if !c.ReceivedBefore.IsZero() {
		q = q.Where("e.received_at < ?", c.ReceivedBefore)
	}
	return q
}
