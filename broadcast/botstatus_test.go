package broadcast

import (
	"strings"
	"testing"

	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestService_HandleRun_DisabledBot: a broadcast of a disabled bot sends nothing and drops
// nothing: its run pauses it (pause_reason "bot not active: bot disabled"), every recipient
// stays queued with no attempt counted. Once the bot is active again the sweep resumes it
// (ResumeBotBroadcasts does the same at once from the API) and it completes. A broadcast
// the tenant paused stays paused.
func TestService_HandleRun_DisabledBot(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 3)
	disabled, active := telegram.BotDisabled, telegram.BotActive
	if _, err := e.tg.UpdateBot(e.ctx, tn, b.ID, telegram.UpdateBot{Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	bc := e.create(b, cs)
	userPaused := e.create(b, e.contactsOf(b, 2))
	if _, _, err := e.svc.TenantPause(e.ctx, tn, userPaused.ID); err != nil {
		t.Fatal(err)
	}

	if err := e.run(bc.ID); err != nil {
		t.Fatalf("HandleRun = %v, want nil (paused)", err)
	}
	got, _ := e.get(b, bc.ID)
	if got.Status != StatusPaused || got.PauseReason != PauseReasonBotInactive+"bot disabled" {
		t.Fatalf("broadcast %s %q, want paused %q", got.Status, got.PauseReason, PauseReasonBotInactive+"bot disabled")
	}
	for _, r := range e.recipients(bc.ID) {
		if r.Status != RecipientQueued || r.Attempts != 0 {
			t.Fatalf("recipient %d: %s with %d attempts, want queued with 0", r.ChatID, r.Status, r.Attempts)
		}
	}
	if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 0 {
		t.Fatalf("a disabled bot called sendMessage %d times", n)
	}
	// The sweep leaves it paused while the bot is disabled.
	if err := e.svc.HandleSweep(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.get(b, bc.ID); got.Status != StatusPaused {
		t.Fatalf("sweep with the bot disabled: %s, want paused", got.Status)
	}

	if _, err := e.tg.UpdateBot(e.ctx, tn, b.ID, telegram.UpdateBot{Status: &active}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleSweep(e.ctx, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.get(b, bc.ID); got.Status == StatusPaused {
		t.Fatalf("sweep with the bot active again: still paused (%q)", got.PauseReason)
	}
	e.runToEnd(bc.ID, true, 5)
	if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 3, Sent: 3}) {
		t.Fatalf("counts = %+v, want 3 sent", counts)
	}
	if got, _ := e.get(b, userPaused.ID); got.Status != StatusPaused {
		t.Fatalf("the tenant's paused broadcast became %s, want paused", got.Status)
	}
}

// TestService_HandleRun_TokenRevoked: Telegram answers 401 (the token was revoked): the bot
// becomes invalid_token and its broadcast pauses at once with the reason, after at most the
// sends already in flight, none of them failed or dropped; ResumeBotBroadcasts (called when
// the bot is active again, e.g. after a token rotation) lets it complete.
func TestService_HandleRun_TokenRevoked(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 0})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 120)
	e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultUnauthorized})
	bc := e.create(b, cs)
	if err := e.run(bc.ID); err != nil {
		t.Fatalf("HandleRun = %v, want nil (paused)", err)
	}
	got, counts := e.get(b, bc.ID)
	calls := len(e.emu.Calls(b.emuID, "sendMessage"))
	if got.Status != StatusPaused || !strings.HasPrefix(got.PauseReason, PauseReasonBotInactive) || !strings.Contains(got.PauseReason, "401") {
		t.Fatalf("broadcast %s %q, want paused for the 401", got.Status, got.PauseReason)
	}
	if calls == 0 || calls > 2*e.svc.senders || counts.Failed != 0 || counts.Pending != 120 {
		t.Fatalf("%d sendMessage calls, counts %+v: want at most the sends in flight, nothing failed, 120 pending", calls, counts)
	}
	bot, err := e.tg.BotByID(e.ctx, b.ID)
	if err != nil || bot.Status != telegram.BotInvalidToken {
		t.Fatalf("bot status %q %v, want invalid_token", bot.Status, err)
	}
	t.Logf("paused after %d calls: %q", calls, got.PauseReason)

	// The tenant fixes the token; the bot is active again.
	e.emu.ClearFaults(b.emuID)
	if _, err := e.db.NewRaw("UPDATE bots SET status = 'active' WHERE id = ?", b.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.tg.InvalidateBot(e.ctx, b.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := e.svc.ResumeBotBroadcasts(e.ctx, b.ID); err != nil || n != 1 {
		t.Fatalf("ResumeBotBroadcasts = %d, %v; want 1", n, err)
	}
	e.runToEnd(bc.ID, true, 10)
	if got, counts := e.get(b, bc.ID); got.Status != StatusCompleted || counts.Sent != 120 {
		t.Fatalf("after the fix: %s %+v, want completed with 120 sent", got.Status, counts)
	}
}
