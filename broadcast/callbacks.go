package broadcast

import (
	"context"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/internal/apperr"
)

// CompletedData is the data of broadcast.completed (issue 9, "Event callbacks to the
// tenant"): emitted once per broadcast, when its run completes it.
type CompletedData struct {
	BroadcastID uuid.UUID `json:"broadcast_id"`
	BotAppID    uuid.UUID `json:"bot_app_id"`
	Name        string    `json:"name"`
	Total       int       `json:"total"`
	Sent        int       `json:"sent"`
	Failed      int       `json:"failed"`
	Skipped     int       `json:"skipped"`
	Expired     int       `json:"expired"`
	Cancelled   int       `json:"cancelled"`
}

// completeAndEmit is complete on s.db; when the tenant subscribed to broadcast.completed,
// the completion and the event's delivery rows commit together (one extra counts query
// then, none otherwise).
func (s *Service) completeAndEmit(ctx context.Context, b Broadcast) (bool, error) {
	cb := s.tg.Callbacks()
	wants, err := cb.Wants(ctx, b.TenantID, callbacks.EventBroadcastCompleted)
	if err != nil {
		return false, err
	}
	if !wants {
		return complete(ctx, s.db, b.ID)
	}
	done := false
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if done, err = complete(ctx, tx, b.ID); err != nil || !done {
			return err
		}
		n, err := countsOf(ctx, tx, b.ID)
		if err != nil {
			return err
		}
		return cb.Emit(ctx, tx, b.TenantID, callbacks.EventBroadcastCompleted, CompletedData{
			BroadcastID: b.ID, BotAppID: b.BotID, Name: b.Name, Total: n.Total, Sent: n.Sent, Failed: n.Failed,
			Skipped: n.Skipped, Expired: n.Expired, Cancelled: n.Cancelled,
		})
	})
	return done, apperr.Classify(err)
}
