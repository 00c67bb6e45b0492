package telegram

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
)

// DefaultReencryptBatch is how many bots ReencryptTokens reads and rewrites per statement.
const DefaultReencryptBatch = 500

// reencryptAttempts is how many times ReencryptTokens tries a bot whose row changed between
// its read and its write (a concurrent registration or token change) before it counts it
// as failed.
const reencryptAttempts = 3

// ReencryptResult counts the bots that ReencryptTokens visited.
type ReencryptResult struct {
	// Reencrypted bots had a token in the legacy format or sealed with an older key; it is
	// now sealed with the current key.
	Reencrypted int
	// Current bots were already sealed with the current key (version 1): left unchanged.
	Current int
	// Failed bots have a token that no key of the keyring opens, or a row that kept
	// changing; each is logged with its bot_app_id and the reason.
	Failed int
}

// ReencryptTokens rewrites the sealed token of every bot, deleted ones included, with
// keys' current key (`botfleet rotate-encryption-key`), so that the older keys can then be
// dropped from ENCRYPTION_KEYS.
//
// It walks bots by id in batches of batch rows (0 = DefaultReencryptBatch): one SELECT, then
// one UPDATE of the batch's changed rows. It is idempotent (a token already sealed with the
// current key is only counted) and safe while the platform runs: each row is written only
// if its token_sealed is still the value read (compare-and-set), and a row that changed in
// between is read again, up to 3 times. Running processes keep opening both the old and
// the new ciphertext as long as they hold both keys; their bot caches expire within
// BotCacheTTL. Errors: the database's (the result counts what was done before).
func ReencryptTokens(ctx context.Context, db bun.IDB, keys *Keyring, batch int, log *slog.Logger) (ReencryptResult, error) {
	if batch <= 0 {
		batch = DefaultReencryptBatch
	}
	if log == nil {
		log = slog.Default()
	}
	var res ReencryptResult
	var after uuid.UUID
	for {
		var rows []Bot
		err := db.NewSelect().Model(&rows).Column("id", "token_sealed").
			Where("id > ?", after).OrderExpr("id").Limit(int64(batch)).Scan(ctx)
		if err != nil {
			return res, fmt.Errorf("read bots: %w", err)
		}
		if len(rows) == 0 {
			return res, nil
		}
		after = rows[len(rows)-1].ID
		for attempt := 1; len(rows) > 0; attempt++ {
			changed, err := reencryptBatch(ctx, db, keys, rows, &res, log)
			if err != nil {
				return res, err
			}
			if len(changed) == 0 {
				break
			}
			if attempt == reencryptAttempts {
				for _, id := range changed {
					res.Failed++
					log.Error("rotate-encryption-key: bot row kept changing; run the command again", "bot_app_id", id.String())
				}
				break
			}
			rows = rows[:0]
			if err := db.NewSelect().Model(&rows).Column("id", "token_sealed").
				Where("id IN (?)", bun.List(changed)).Scan(ctx); err != nil {
				return res, fmt.Errorf("read bots: %w", err)
			}
		}
	}
}

// resealed is one row of reencryptBatch's UPDATE.
type resealed struct {
	ID  uuid.UUID `bun:"id,type:uuid"`
	Old []byte    `bun:"old,type:bytea"`
	New []byte    `bun:"new,type:bytea"`
}

// reencryptBatch counts rows already current or unreadable in res, rewrites the others in
// one compare-and-set UPDATE, counts those written, and returns the ids of the rows that
// changed since they were read.
func reencryptBatch(ctx context.Context, db bun.IDB, keys *Keyring, rows []Bot, res *ReencryptResult, log *slog.Logger) ([]uuid.UUID, error) {
	var todo []resealed
	for _, b := range rows {
		token, current, err := keys.open(b.ID, b.TokenSealed)
		switch {
		case err != nil:
			res.Failed++
			log.Error("rotate-encryption-key: cannot open the bot's token", "bot_app_id", b.ID.String(), "error", err)
		case current:
			res.Current++
		default:
			sealed, err := keys.Seal(b.ID, token)
			if err != nil {
				return nil, fmt.Errorf("seal token: %w", err)
			}
			todo = append(todo, resealed{ID: b.ID, Old: b.TokenSealed, New: sealed})
		}
	}
	if len(todo) == 0 {
		return nil, nil
	}
	var written []uuid.UUID
	err := db.NewUpdate().With("_data", db.NewValues(&todo)).
		Model((*Bot)(nil)).TableExpr("_data").
		Set("token_sealed = _data.new").
		Where("b.id = _data.id").Where("b.token_sealed = _data.old").
		Returning("b.id").Scan(ctx, &written)
	if err != nil {
		return nil, fmt.Errorf("update bots: %w", err)
	}
	res.Reencrypted += len(written)
	done := make(map[uuid.UUID]bool, len(written))
	for _, id := range written {
		done[id] = true
	}
	var changed []uuid.UUID
	for _, r := range todo {
		if !done[r.ID] {
			changed = append(changed, r.ID)
		}
	}
	return changed, nil
}
