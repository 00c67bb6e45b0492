package callbacks

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
)

// ReencryptSecrets re-seals every endpoint's signing secrets (the current one and a
// previous one still in its overlap) with sealer's current key, for `botfleet
// rotate-encryption-key`: afterwards the old key can leave ENCRYPTION_KEYS. A row is written
// only if its secrets did not change meanwhile (a rotate-secret wins). It returns how many
// endpoints it re-sealed and how many it could not open (each logged with its endpoint id,
// never a secret); running it again is safe.
func ReencryptSecrets(ctx context.Context, db bun.IDB, sealer Sealer, log *slog.Logger) (done, failed int, err error) {
	after := uuid.Nil
	for {
		var eps []Endpoint
		if err := db.NewSelect().Model(&eps).Column("id", "secret_sealed", "previous_secret_sealed").
			Where("id > ?", after).OrderExpr("id").Limit(500).Scan(ctx); err != nil {
			return done, failed, apperr.Classify(fmt.Errorf("read webhook endpoints: %w", err))
		}
		if len(eps) == 0 {
			return done, failed, nil
		}
		for _, ep := range eps {
			after = ep.ID
			cur, err := sealer.Open(ep.ID, ep.SecretSealed)
			if err != nil {
				failed++
				log.ErrorContext(ctx, "callbacks: cannot open a webhook signing secret", "endpoint_id", ep.ID.String(), "error", err)
				continue
			}
			sealed, err := sealer.Seal(ep.ID, cur)
			if err != nil {
				return done, failed, err
			}
			var prevSealed []byte
			if len(ep.PreviousSecretSealed) > 0 {
				if prev, err := sealer.Open(ep.ID, ep.PreviousSecretSealed); err == nil {
					if prevSealed, err = sealer.Seal(ep.ID, prev); err != nil {
						return done, failed, err
					}
				} // an unreadable previous secret is dropped: it only signed during its overlap
			}
			q := db.NewUpdate().Model((*Endpoint)(nil)).Set("secret_sealed = ?", sealed).Set("previous_secret_sealed = ?", prevSealed).
				Where("id = ?", ep.ID).Where("secret_sealed = ?", ep.SecretSealed)
			if _, err := q.Exec(ctx); err != nil {
				return done, failed, apperr.Classify(fmt.Errorf("write webhook endpoint: %w", err))
			}
			done++
		}
	}
}
