package telegram_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// storedBot reads bot id straight from PostgreSQL (no cache).
func (e *botEnv) storedBot(t *testing.T, id uuid.UUID) telegram.Bot {
	t.Helper()
	var b telegram.Bot
	if err := e.db.NewSelect().Model(&b).Where("id = ?", id).Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// lastSecret is the secret_token of the bot's last setWebhook call.
func (e *botEnv) lastSecret(t *testing.T, info tgemu.BotInfo) string {
	t.Helper()
	calls := e.emu.Calls(info.ID, "setWebhook")
	if len(calls) == 0 {
		t.Fatal("no setWebhook call")
	}
	return calls[len(calls)-1].Params["secret_token"]
}

// nextChat numbers the emulated users of sendOK (one chat per send: the emulator keeps
// Telegram's 1 message per second per chat).
var nextChat atomic.Int64

// sendOK sends one message through bot b as the workers do (bot from the cache) to a new
// emulated user and fails unless Telegram accepted it.
func (e *botEnv) sendOK(t *testing.T, b hookedBot) {
	t.Helper()
	chatID := 5000 + nextChat.Add(1)
	if err := e.emu.AddUser(b.info.ID, tgemu.User{ID: chatID, FirstName: "U"}); err != nil {
		t.Fatal(err)
	}
	bot, err := e.svc.BotByID(context.Background(), b.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out := e.svc.Send(context.Background(), bot, chatID, telegram.Outgoing{Text: "ping"}); out.Status != telegram.OutcomeSent {
		t.Fatalf("Send = %+v, want sent", out)
	}
}

// deliver makes user 42 message the emulated bot, waits until Telegram's webhook delivered
// it (the emulator retries refused deliveries, so this also fails when the secret is
// refused) and checks that the event is stored.
func (e *botEnv) deliver(t *testing.T, b hookedBot, text string) {
	t.Helper()
	before := e.eventCount(t, b.ID)
	if _, err := e.emu.SendText(b.info.ID, tgemu.User{ID: 42, FirstName: "Ann"}, text); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.emu.WaitIdle(ctx, b.info.ID); err != nil {
		t.Fatalf("webhook delivery of %q: %v (last error %q)", text, err, e.emu.WebhookInfo(b.info.ID).LastErrorMessage)
	}
	if got := e.eventCount(t, b.ID); got != before+1 {
		t.Fatalf("events = %d, want %d", got, before+1)
	}
}

// oldStillWorks checks that b's stored token and webhook are those of before a failed
// rotation: the row has the same sealed token and secret hash, a send works, the old secret
// is accepted and Telegram's deliveries are stored.
func (e *botEnv) oldStillWorks(t *testing.T, b hookedBot, before telegram.Bot) {
	t.Helper()
	got := e.storedBot(t, b.ID)
	if !bytes.Equal(got.TokenSealed, before.TokenSealed) || !bytes.Equal(got.WebhookSecretHash, before.WebhookSecretHash) {
		t.Fatal("the stored token or secret changed after a failed rotation")
	}
	if !got.TokenRotatedAt.IsZero() {
		t.Fatalf("token_rotated_at = %v after a failed rotation", got.TokenRotatedAt)
	}
	e.sendOK(t, b)
	if err := e.svc.Ingest(context.Background(), b.ID, b.secret, textUpdate(time.Now().UnixNano()%1e9, "old secret")); err != nil {
		t.Fatalf("Ingest with the old secret: %v", err)
	}
	e.deliver(t, b, "after the failed rotation")
}

func TestService_RotateToken(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")

	t.Run("200 rotated", func(t *testing.T) {
		b := e.hookedBot(t, tn, "Shop")
		e.deliver(t, b, "/start") // user 42 exists for sendMessage
		newToken, err := e.emu.AddToken(b.info.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken})
		if err != nil {
			t.Fatalf("UpdateBot(token): %v", err)
		}
		if got.TokenRotatedAt.IsZero() || got.Status != telegram.BotActive || got.WebhookStatus != telegram.WebhookActive || got.WebhookSecretNextHash != nil {
			t.Fatalf("bot = %+v, want rotated, active, no next secret", got)
		}
		if bytes.Equal(got.TokenSealed, b.TokenSealed) {
			t.Fatal("sealed token unchanged")
		}
		newSecret := e.lastSecret(t, b.info)
		if newSecret == b.secret || newSecret == "" {
			t.Fatal("setWebhook was not called with a new secret_token")
		}
		if e.emu.WebhookInfo(b.info.ID).URL != e.svc.WebhookURL(b.ID) {
			t.Fatal("webhook not registered at the bot's URL")
		}
		// The old token is no longer used: revoked at Telegram, sends still work.
		if err := e.emu.RevokeToken(b.info.Token); err != nil {
			t.Fatal(err)
		}
		e.sendOK(t, b)
		// Updates signed with the new secret are accepted; the old secret no longer is.
		e.deliver(t, b, "after rotation")
		err = e.svc.Ingest(ctx, b.ID, b.secret, textUpdate(777, "old secret"))
		wantErr(t, err, telegram.ErrBadSecret, http.StatusUnauthorized)
		if err := e.svc.Ingest(ctx, b.ID, newSecret, textUpdate(778, "new secret")); err != nil {
			t.Fatalf("Ingest with the new secret: %v", err)
		}
	})

	t.Run("422 invalid token", func(t *testing.T) {
		b := e.hookedBot(t, tn, "Invalid")
		e.deliver(t, b, "/start")
		before := e.storedBot(t, b.ID)
		bad := "999999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" // well formed, unknown to Telegram
		_, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &bad})
		wantErr(t, err, telegram.ErrInvalidBotToken, http.StatusUnprocessableEntity)
		shape := "not-a-token"
		_, err = e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &shape})
		wantErr(t, err, validate.ErrInvalidField, http.StatusUnprocessableEntity)
		e.oldStillWorks(t, b, before)
	})

	t.Run("422 token_bot_mismatch", func(t *testing.T) {
		b := e.hookedBot(t, tn, "Mine")
		e.deliver(t, b, "/start")
		other := e.emu.CreateBot("", "Other")
		before := e.storedBot(t, b.ID)
		_, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &other.Token})
		wantErr(t, err, telegram.ErrTokenBotMismatch, http.StatusUnprocessableEntity)
		if n := len(e.emu.Calls(other.ID, "setWebhook")); n != 0 {
			t.Fatalf("setWebhook called %d times with the other bot's token", n)
		}
		e.oldStillWorks(t, b, before)
	})

	t.Run("502 getMe fails", func(t *testing.T) {
		b := e.hookedBot(t, tn, "GetMeDown")
		e.deliver(t, b, "/start")
		newToken, _ := e.emu.AddToken(b.info.ID)
		before := e.storedBot(t, b.ID)
		e.emu.AddFault(b.info.ID, tgemu.Fault{Method: "getMe", Kind: tgemu.FaultServerError, Times: 1})
		_, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken})
		wantErr(t, err, telegram.ErrTelegramError, http.StatusBadGateway)
		e.oldStillWorks(t, b, before)
	})

	t.Run("502 setWebhook fails", func(t *testing.T) {
		b := e.hookedBot(t, tn, "HookDown")
		e.deliver(t, b, "/start")
		newToken, _ := e.emu.AddToken(b.info.ID)
		before := e.storedBot(t, b.ID)
		e.emu.AddFault(b.info.ID, tgemu.Fault{Method: "setWebhook", Kind: tgemu.FaultServerError, Times: 1})
		_, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken})
		wantErr(t, err, telegram.ErrTelegramError, http.StatusBadGateway)
		got := e.storedBot(t, b.ID)
		if got.WebhookSecretNextHash != nil {
			t.Fatal("the refused secret is still accepted")
		}
		if got.WebhookStatus != telegram.WebhookActive {
			t.Fatalf("webhook_status = %q: the old webhook still works", got.WebhookStatus)
		}
		if e.lastSecret(t, b.info) == b.secret {
			t.Fatal("setWebhook was not attempted")
		}
		e.oldStillWorks(t, b, before)
		// The same rotation succeeds once Telegram answers again.
		if _, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken}); err != nil {
			t.Fatalf("retry: %v", err)
		}
		e.deliver(t, b, "after the retried rotation")
	})

	t.Run("503 storing fails after setWebhook", func(t *testing.T) {
		b := e.hookedBot(t, tn, "DBDown")
		e.deliver(t, b, "/start")
		newToken, _ := e.emu.AddToken(b.info.ID)
		before := e.storedBot(t, b.ID)
		// Inject a PostgreSQL failure into the final UPDATE only (it is the one that writes
		// token_sealed).
		for _, q := range []string{
			`CREATE FUNCTION fail_token_write() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'injected failure'; END $$`,
			`CREATE TRIGGER fail_token_write BEFORE UPDATE OF token_sealed ON bots FOR EACH ROW EXECUTE FUNCTION fail_token_write()`,
		} {
			if _, err := e.db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		_, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken})
		if err == nil {
			t.Fatal("UpdateBot succeeded despite the failing UPDATE")
		}
		for _, q := range []string{`DROP TRIGGER fail_token_write ON bots`, `DROP FUNCTION fail_token_write()`} {
			if _, err := e.db.ExecContext(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		// Telegram now signs with the new secret: it is accepted (as the next secret), and the
		// old token and secret still work.
		if e.lastSecret(t, b.info) == b.secret {
			t.Fatal("setWebhook was not called")
		}
		if e.storedBot(t, b.ID).WebhookSecretNextHash == nil {
			t.Fatal("the secret Telegram uses is not accepted")
		}
		e.oldStillWorks(t, b, before)
		if _, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken}); err != nil {
			t.Fatalf("retry: %v", err)
		}
		if err := e.emu.RevokeToken(b.info.Token); err != nil {
			t.Fatal(err)
		}
		e.sendOK(t, b)
		e.deliver(t, b, "after the retried rotation")
	})

	t.Run("409 rotation under way", func(t *testing.T) {
		b := e.hookedBot(t, tn, "Busy")
		newToken, _ := e.emu.AddToken(b.info.ID)
		e.emu.AddFault(b.info.ID, tgemu.Fault{Method: "setWebhook", Kind: tgemu.FaultLatency, Latency: 500 * time.Millisecond, Times: 1})
		done := make(chan error, 1)
		go func() {
			_, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken})
			done <- err
		}()
		waitFor(t, 5*time.Second, "setWebhook started", func() bool {
			return e.storedBot(t, b.ID).WebhookSecretNextHash != nil
		})
		_, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken})
		wantErr(t, err, telegram.ErrBotBusy, http.StatusConflict)
		if err := <-done; err != nil {
			t.Fatalf("first rotation: %v", err)
		}
	})

	t.Run("404 another tenant's bot", func(t *testing.T) {
		b := e.hookedBot(t, tn, "Theirs")
		newToken, _ := e.emu.AddToken(b.info.ID)
		other := e.tenant(t, "other")
		_, err := e.svc.UpdateBot(ctx, other, b.ID, telegram.UpdateBot{Token: &newToken})
		wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	})
}

func TestService_ValidateBot(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")
	e.deliver(t, b, "/start")

	v, err := e.svc.ValidateBot(ctx, tn, b.ID)
	if err != nil || !v.Valid || v.Me.Id != b.info.ID || v.Me.Username != b.info.Username || v.Bot.Status != telegram.BotActive {
		t.Fatalf("ValidateBot = %+v, %v; want valid with the bot's identity", v, err)
	}

	// @BotFather /revoke: the stored token answers 401.
	newToken, err := e.emu.ReplaceToken(b.info.ID)
	if err != nil {
		t.Fatal(err)
	}
	v, err = e.svc.ValidateBot(ctx, tn, b.ID)
	if err != nil || v.Valid || v.Bot.Status != telegram.BotInvalidToken || !strings.Contains(v.Error, "401") {
		t.Fatalf("ValidateBot = %+v, %v; want not valid, invalid_token", v, err)
	}
	// It sends nothing and drops nothing.
	bot, _ := e.svc.BotByID(ctx, b.ID)
	calls := len(e.emu.Calls(b.info.ID, "sendMessage"))
	if out := e.svc.Send(ctx, bot, 42, telegram.Outgoing{Text: "x"}); out.Status != telegram.OutcomeWait || out.RetryAfter != telegram.InactiveBotRetry {
		t.Fatalf("Send = %+v, want wait", out)
	}
	if n := len(e.emu.Calls(b.info.ID, "sendMessage")); n != calls {
		t.Fatal("an invalid_token bot called sendMessage")
	}
	// Activating it needs a new token.
	active := telegram.BotActive
	_, err = e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Status: &active})
	wantErr(t, err, telegram.ErrBotTokenRevoked, http.StatusConflict)
	got, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Token: &newToken})
	if err != nil || got.Status != telegram.BotActive {
		t.Fatalf("rotate = %+v, %v; want active", got, err)
	}
	e.sendOK(t, b)

	_, err = e.svc.ValidateBot(ctx, e.tenant(t, "other"), b.ID)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
}

// TestService_Send401MarksInvalidToken: a send answered 401 marks the bot invalid_token and
// waits (nothing dropped); later sends are not attempted.
func TestService_Send401MarksInvalidToken(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b := e.hookedBot(t, tn, "Shop")
	e.deliver(t, b, "/start")
	if _, err := e.emu.ReplaceToken(b.info.ID); err != nil {
		t.Fatal(err)
	}
	bot, _ := e.svc.BotByID(ctx, b.ID)
	out := e.svc.Send(ctx, bot, 42, telegram.Outgoing{Text: "x"})
	if out.Status != telegram.OutcomeWait || out.RetryAfter != telegram.InactiveBotRetry {
		t.Fatalf("Send = %+v, want wait", out)
	}
	if got := e.storedBot(t, b.ID); got.Status != telegram.BotInvalidToken {
		t.Fatalf("status = %q, want invalid_token", got.Status)
	}
	bot, _ = e.svc.BotByID(ctx, b.ID)
	if bot.Status != telegram.BotInvalidToken {
		t.Fatalf("cached status = %q, want invalid_token", bot.Status)
	}
}

func TestService_ValidateToken(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	info := e.emu.CreateBot("probe_bot", "Probe")
	me, err := e.svc.ValidateToken(ctx, info.Token)
	if err != nil || me.Id != info.ID || me.Username != "probe_bot" || !me.IsBot {
		t.Fatalf("ValidateToken = %+v, %v", me, err)
	}
	_, err = e.svc.ValidateToken(ctx, "999999:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	wantErr(t, err, telegram.ErrInvalidBotToken, http.StatusUnprocessableEntity)
	_, err = e.svc.ValidateToken(ctx, "nope")
	wantErr(t, err, validate.ErrInvalidField, http.StatusUnprocessableEntity)
	var n int
	if err := e.db.NewRaw("SELECT count(*) FROM bots").Scan(ctx, &n); err != nil || n != 0 {
		t.Fatalf("bots = %d, %v; want nothing stored", n, err)
	}
	if calls := e.emu.Calls(info.ID, "setWebhook"); len(calls) != 0 {
		t.Fatal("ValidateToken called setWebhook")
	}
}

// TestService_DisabledBot: a disabled bot sends nothing (Send and SendBatch wait, nothing
// dropped), its webhook still stores updates, which are processed once it is enabled; other
// bots' events are not held up meanwhile.
func TestService_DisabledBot(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b, other := e.hookedBot(t, tn, "Shop"), e.hookedBot(t, tn, "Cafe")
	e.deliver(t, b, "/help")
	e.processAll(t)
	sentBefore := len(e.emu.Calls(b.info.ID, "sendMessage"))

	disabled, active := telegram.BotDisabled, telegram.BotActive
	got, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Status: &disabled})
	if err != nil || got.Status != telegram.BotDisabled {
		t.Fatalf("disable = %+v, %v", got, err)
	}
	bad := "invalid_token"
	_, err = e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Status: &bad})
	wantErr(t, err, validate.ErrInvalidField, http.StatusUnprocessableEntity)
	if validate.FieldOf(err) != "status" {
		t.Fatalf("field = %q, want status", validate.FieldOf(err))
	}

	bot, err := e.svc.BotByID(ctx, b.ID)
	if err != nil || bot.Status != telegram.BotDisabled {
		t.Fatalf("BotByID = %+v, %v; want disabled (cache invalidated)", bot.Status, err)
	}
	if out := e.svc.Send(ctx, bot, 42, telegram.Outgoing{Text: "x"}); out.Status != telegram.OutcomeWait || out.RetryAfter != telegram.InactiveBotRetry {
		t.Fatalf("Send = %+v, want wait", out)
	}
	outs := make([]telegram.Outcome, 3)
	e.svc.SendBatch(ctx, bot, []int64{42, 43, 44}, telegram.Outgoing{Text: "news"}, telegram.BatchOptions{
		OnResult: func(i int, out telegram.Outcome) { outs[i] = out },
	})
	for i, out := range outs {
		if out.Status != telegram.OutcomeWait || out.RetryAfter != telegram.InactiveBotRetry || out.ChatID != []int64{42, 43, 44}[i] {
			t.Fatalf("SendBatch outcome %d = %+v, want wait", i, out)
		}
	}
	// A single message (POST /messages/) waits in its task: queued, no attempt counted.
	m, err := e.svc.CreateMessage(ctx, tn, telegram.NewMessage{BotID: b.ID, ContactID: e.contact(t, b.ID, 42).ID, Text: "queued while disabled"})
	if err != nil {
		t.Fatal(err)
	}
	sendTask, _ := telegram.NewSendTask(m.ID)
	var ra *telegram.RetryAfterError
	if err := e.svc.HandleSend(ctx, sendTask); !errors.As(err, &ra) || ra.RetryAfter != telegram.InactiveBotRetry {
		t.Fatalf("HandleSend = %v, want RetryAfterError of %s", err, telegram.InactiveBotRetry)
	}
	if got, _ := e.svc.GetMessage(ctx, tn, m.ID); got.Status != contacts.StatusQueued || got.Attempts != 0 {
		t.Fatalf("message = %s with %d attempts, want queued with 0", got.Status, got.Attempts)
	}
	if n := len(e.emu.Calls(b.info.ID, "sendMessage")); n != sentBefore {
		t.Fatalf("a disabled bot called sendMessage %d times", n-sentBefore)
	}

	// Its webhook still stores updates; they wait unprocessed. Another bot's are processed.
	e.deliver(t, b, "/help")
	e.deliver(t, other, "/help")
	if n := e.processAll(t); n != 1 {
		t.Fatalf("processed %d events, want 1 (the active bot's)", n)
	}
	if n := e.unprocessed(t); n != 1 {
		t.Fatalf("unprocessed = %d, want 1 (the disabled bot's)", n)
	}
	if n, _, err := e.svc.Sweep(ctx, 0); err != nil || n != 0 {
		t.Fatalf("Sweep counts %d waiting events (%v); a disabled bot's do not count", n, err)
	}

	// Enabled: the stored update is processed and its reply sent.
	if got, err := e.svc.UpdateBot(ctx, tn, b.ID, telegram.UpdateBot{Status: &active}); err != nil || got.Status != telegram.BotActive {
		t.Fatalf("enable = %+v, %v", got, err)
	}
	if n := e.processAll(t); n != 1 {
		t.Fatalf("processed %d events after enabling, want 1", n)
	}
	if r := e.replies(t, b, 42); len(r) != 2 {
		t.Fatalf("replies = %q, want 2 (/help before and while disabled)", r)
	}
	if err := e.svc.HandleSend(ctx, sendTask); err != nil {
		t.Fatalf("HandleSend after enabling: %v", err)
	}
	if got, _ := e.svc.GetMessage(ctx, tn, m.ID); got.Status != contacts.StatusSent {
		t.Fatalf("message = %s, want sent", got.Status)
	}
	e.sendOK(t, b)
}

// TestService_RegisterWebhook repairs a bot whose setWebhook failed at registration: the
// failure shows as webhook_status failed with Telegram's description, and RegisterWebhook
// registers it with a new secret.
func TestService_RegisterWebhook(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	info := e.emu.CreateBot("", "Broken")
	e.emu.AddFault(info.ID, tgemu.Fault{Method: "setWebhook", Kind: tgemu.FaultServerError, Times: 2})
	b, err := e.svc.RegisterBot(ctx, tn, telegram.NewBot{Name: "Broken", Token: info.Token})
	if err != nil {
		t.Fatal(err)
	}
	if b.WebhookStatus != telegram.WebhookFailed || b.WebhookError != "setWebhook: Telegram answered 500: Internal Server Error" {
		t.Fatalf("webhook = %q %q, want failed with Telegram's description", b.WebhookStatus, b.WebhookError)
	}
	// A repair that fails again records it.
	err = e.svc.RegisterWebhook(ctx, b)
	wantErr(t, err, telegram.ErrTelegramError, http.StatusBadGateway)
	if got := e.storedBot(t, b.ID); got.WebhookStatus != telegram.WebhookFailed || got.WebhookError == "" || got.WebhookSecretNextHash != nil {
		t.Fatalf("after a failed repair: %q %q next=%v", got.WebhookStatus, got.WebhookError, got.WebhookSecretNextHash != nil)
	}
	if err := e.svc.RegisterWebhook(ctx, b); err != nil {
		t.Fatalf("RegisterWebhook: %v", err)
	}
	got := e.storedBot(t, b.ID)
	if got.WebhookStatus != telegram.WebhookActive || got.WebhookError != "" {
		t.Fatalf("after repair: %q %q", got.WebhookStatus, got.WebhookError)
	}
	e.deliver(t, hookedBot{Bot: got, info: info, secret: e.lastSecret(t, info)}, "/start")
}
