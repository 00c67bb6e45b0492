package broadcast

import (
	"errors"
	"testing"

	"github.com/botfleet/botfleet/telegram"
)

// TestService_HandleRun_DisabledBot: a broadcast of a disabled bot sends nothing and drops
// nothing (every recipient stays queued with no attempt counted, the run asks to wait
// telegram.InactiveBotRetry); once the bot is active again the broadcast completes.
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

	err := e.run(bc.ID)
	var ra *telegram.RetryAfterError
	if !errors.As(err, &ra) || ra.RetryAfter < telegram.InactiveBotRetry/2 {
		t.Fatalf("HandleRun = %v, want a RetryAfterError of about %s", err, telegram.InactiveBotRetry)
	}
	for _, r := range e.recipients(bc.ID) {
		if r.Status != RecipientQueued || r.Attempts != 0 {
			t.Fatalf("recipient %d: %s with %d attempts, want queued with 0", r.ChatID, r.Status, r.Attempts)
		}
	}
	if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 0 {
		t.Fatalf("a disabled bot called sendMessage %d times", n)
	}

	if _, err := e.tg.UpdateBot(e.ctx, tn, b.ID, telegram.UpdateBot{Status: &active}); err != nil {
		t.Fatal(err)
	}
	e.runToEnd(bc.ID, true, 5)
	if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 3, Sent: 3}) {
		t.Fatalf("counts = %+v, want 3 sent", counts)
	}
}
