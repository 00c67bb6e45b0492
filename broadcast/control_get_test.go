package broadcast

import (
	"testing"
	"time"
)

// TestService_Get_100k measures GET /broadcast/{id}/'s service call (the broadcast row, its
// counts by status over the (broadcast_id, status) index, the rate and ETA from the row's
// counters) on a running broadcast of 100,000 recipients in mixed statuses, after VACUUM
// ANALYZE as autovacuum would leave it. Skipped with -short.
func TestService_Get_100k(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 100,000 contacts and recipients")
	}
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	bc := e.create(b, e.contactsOf(b, 1))
	const n = 100_000
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`WITH c AS (INSERT INTO contacts (tenant_id, bot_id, telegram_chat_id, telegram_user_id)
		 SELECT ?, ?, 5000000 + g, 5000000 + g FROM generate_series(1, ?) g RETURNING *)
		 INSERT INTO contact_bots (contact_id, tenant_id, bot_id, telegram_chat_id) SELECT id, tenant_id, bot_id, telegram_chat_id FROM c`, []any{tn, b.ID, n}},
		{`INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id, status, sent_at)
		 SELECT ?, c.id, c.telegram_chat_id,
		        CASE WHEN c.telegram_chat_id % 10 < 4 THEN 'sent' WHEN c.telegram_chat_id % 10 = 4 THEN 'failed' ELSE 'queued' END,
		        CASE WHEN c.telegram_chat_id % 10 < 4 THEN now() END
		 FROM contacts c WHERE c.bot_id = ? AND c.telegram_chat_id > 5000000`, []any{bc.ID, b.ID}},
	} {
		if _, err := e.db.NewRaw(q.sql, q.args...).Exec(e.ctx); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.db.NewRaw(`UPDATE broadcasts SET status = 'running', started_at = now() - interval '30 seconds',
		rate_at = now() - interval '30 seconds', rate_sent = 750, total = ? WHERE id = ?`, n+1, bc.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"contacts", "broadcast_recipients"} {
		if _, err := e.db.ExecContext(e.ctx, "VACUUM ANALYZE "+tbl); err != nil {
			t.Fatal(err)
		}
	}
	e.get(b, bc.ID) // warm
	const rounds = 20
	start := time.Now()
	var got Broadcast
	var c Counts
	for range rounds {
		got, c = e.get(b, bc.ID)
	}
	per := time.Since(start) / rounds
	rate := got.Rate(time.Now(), got.StartedAt)
	eta := ETA(got, c, time.Now())
	if c.Total != n+1 || c.Sent != 40_000 || c.Failed != 10_000 || c.Pending != 50_001 || rate < 20 || rate > 30 || eta == nil {
		t.Fatalf("counts %+v rate %.1f eta %v", c, rate, eta)
	}
	t.Logf("Get of a 100,000-recipient broadcast: %s per call (mean of %d); rate %.1f/s, eta in %s", per, rounds, rate, time.Until(*eta).Round(time.Second))
	if per > 2*time.Second {
		t.Errorf("Get takes %s", per)
	}
}
