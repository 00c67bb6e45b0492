package telegram

import (
	"context"
	"time"

	"github.com/google/uuid"
)

// ReserveDailyN reserves n sends of bot botID's daily counter for now's UTC day (tests of the
// health check's daily_limit findings).
func (s *Service) ReserveDailyN(ctx context.Context, botID uuid.UUID, limit, n int, now time.Time) error {
	for range n {
		if _, err := s.limits.ReserveDaily(ctx, botID, limit, now); err != nil {
			return err
		}
	}
	return nil
}
