package telegram

import (
	"context"
	"testing"
	"time"
)

// TestLimiter_DailyReseed checks that a bot's daily counter that Redis lost (flushed, as by a
// restart without persistence) continues from what PostgreSQL recorded as sent that UTC day
// (outbound messages and broadcast recipients; yesterday's sends do not count), both for
// DailyCount and for ReserveDaily, which then stops at the limit.
func TestLimiter_DailyReseed(t *testing.T) {
	ctx := context.Background()
	e := newSendEnv(t, noLimits, nil)
	const limit = 8
	info, bot := e.addBot(e.tenantID, limit)
	for i := range 4 {
		c := e.contact(info, bot, int64(2001+i))
		m := e.queuedMessage(c, "hello")
		if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); err != nil {
			t.Fatal(err)
		}
	}
	// One of the four was sent yesterday (UTC).
	if _, err := e.db.ExecContext(ctx, `UPDATE messages SET sent_at = sent_at - interval '1 day'
		WHERE id = (SELECT id FROM messages WHERE bot_id = ? AND status = 'sent' LIMIT 1)`, bot.ID); err != nil {
		t.Fatal(err)
	}
	// A broadcast of the bot sent two recipients today.
	c := e.contact(info, bot, 2100)
	c2 := e.contact(info, bot, 2101)
	if _, err := e.db.ExecContext(ctx, `WITH b AS (
		INSERT INTO broadcasts (tenant_id, bot_id, name, message_text, status) VALUES (?, ?, 'b', 'hi', 'running') RETURNING id)
		INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id, status, sent_at)
		SELECT b.id, x.id, x.chat, 'sent', now() FROM b, (VALUES (?::uuid, ?::bigint), (?::uuid, ?::bigint)) AS x(id, chat)`,
		bot.TenantID, bot.ID, c.ID, c.TelegramChatID, c2.ID, c2.TelegramChatID); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	if n, err := e.svc.limits.DailyCount(ctx, bot.ID, now); err != nil || n != 4 {
		t.Fatalf("DailyCount before the loss = %d, %v; want 4 (Redis counted the four sends)", n, err)
	}
	if err := e.rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// Recorded today: 3 messages + 2 broadcast recipients.
	if n, err := e.svc.limits.DailyCount(ctx, bot.ID, now); err != nil || n != 5 {
		t.Fatalf("DailyCount after the loss = %d, %v; want 5 reseeded from PostgreSQL", n, err)
	}

	if err := e.rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < limit; i++ {
		if ok, err := e.svc.limits.ReserveDaily(ctx, bot.ID, limit, now); err != nil || !ok {
			t.Fatalf("reserve %d: %v %v", i+1, ok, err)
		}
	}
	if ok, err := e.svc.limits.ReserveDaily(ctx, bot.ID, limit, now); err != nil || ok {
		t.Fatalf("reserve beyond the limit after the reseed: %v %v", ok, err)
	}
	if n, _ := e.svc.limits.DailyCount(ctx, bot.ID, now); n != limit {
		t.Fatalf("DailyCount = %d, want %d", n, limit)
	}

	// Without a seed function a lost counter starts at zero (the Limiter alone).
	if err := e.rdb.FlushDB(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	bare := NewLimiter(e.rdb, LimiterConfig{})
	if ok, err := bare.ReserveDaily(ctx, bot.ID, limit, now); err != nil || !ok {
		t.Fatal(ok, err)
	}
	if n, _ := bare.DailyCount(ctx, bot.ID, now); n != 1 {
		t.Fatalf("bare limiter count = %d, want 1", n)
	}
}
