package contacts

import (
	"context"
	"fmt"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

// LinkExternalID gives contact contactID of tenantID the external_id externalID on idb (run
// it in the caller's transaction), for account linking (link tokens, verification codes).
//
// external_id is unique per tenant (contacts_tenant_external_id_uq): when another contact of
// the tenant holds externalID it is moved, that is cleared there first (the account now
// belongs to the Telegram identity that proved it). It returns the ids of the contacts it
// was cleared on (none usually). Errors: ErrNotFound (no such contact of the tenant),
// apperr kinds.
func (s *Service) LinkExternalID(ctx context.Context, idb bun.IDB, tenantID, contactID uuid.UUID, externalID string) ([]uuid.UUID, error) {
	var moved []uuid.UUID
	err := idb.NewRaw(`UPDATE contacts SET external_id = NULL, updated_at = now()
		WHERE tenant_id = ? AND external_id = ? AND id <> ? RETURNING id`, tenantID, externalID, contactID).Scan(ctx, &moved)
	if err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("clear external_id: %w", err))
	}
	res, err := idb.NewRaw(`UPDATE contacts SET external_id = ?, updated_at = now() WHERE tenant_id = ? AND id = ?`,
		externalID, tenantID, contactID).Exec(ctx)
	if err != nil {
		return nil, apperr.Classify(fmt.Errorf("set external_id: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return nil, ErrNotFound
	}
	return moved, nil
}
