package telegram_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// serviceWith returns a Service like e.svc with cfg changed by edit and the clock now (nil =
// time.Now).
func (e *botEnv) serviceWith(t *testing.T, now func() time.Time, edit func(*telegram.Config)) *telegram.Service {
	t.Helper()
	cfg := e.cfg
	if edit != nil {
		edit(&cfg)
	}
	svc, err := telegram.New(telegram.Deps{
		DB: e.db, Redis: e.rdb, Queue: e.queue, Contacts: contacts.New(e.db), Cfg: cfg,
		Log: testlog.Logger(t), Now: now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// callBotAPI calls method at the emulator with token, as someone outside the platform would.
func callBotAPI(t *testing.T, emu *tgemu.Server, token, method string, params url.Values) json.RawMessage {
	t.Helper()
	resp, err := http.PostForm(emu.URL()+"/bot"+token+"/"+method, params)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		OK          bool            `json:"ok"`
		Result      json.RawMessage `json:"result"`
		Description string          `json:"description"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || !env.OK {
		t.Fatalf("%s: %v %s", method, err, env.Description)
	}
	return env.Result
}

func reasonCodes(h telegram.Health) []string {
	var out []string
	for _, r := range h.Reasons {
		out = append(out, r.Code)
	}
	return out
}

func wantVerdict(t *testing.T, h telegram.Health, verdict string, codes ...string) {
	t.Helper()
	got := reasonCodes(h)
	if h.Verdict != verdict || !slices.Equal(got, codes) {
		t.Fatalf("verdict %s %v, want %s %v (reasons %+v)", h.Verdict, got, verdict, codes, h.Reasons)
	}
}

func TestService_CheckHealth(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tid := e.tenant(t, "acme")

	t.Run("healthy", func(t *testing.T) {
		b, info := e.register(t, tid, "Healthy")
		h, err := e.svc.CheckHealth(ctx, tid, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantVerdict(t, h, telegram.HealthHealthy)
		if h.Identity == nil || h.Identity.ID != info.ID || h.Identity.Username != info.Username || !h.Identity.CanJoinGroups {
			t.Fatalf("identity %+v", h.Identity)
		}
		w := h.Webhook
		if w == nil || !w.URLMatches || w.URL != e.svc.WebhookURL(b.ID) || w.MaxConnections != 40 || w.IPAddress != "127.0.0.1" ||
			!slices.Equal(w.AllowedUpdates, telegram.AllowedUpdates) || !w.LastErrorDate.IsZero() {
			t.Fatalf("webhook %+v", w)
		}
		if c := h.Commands; c == nil || c.Count != 3 || len(c.Missing) != 0 || !c.InSync {
			t.Fatalf("commands %+v", c)
		}
		last, err := e.svc.LastHealth(ctx, tid, b.ID)
		if err != nil || last[b.ID].Verdict != telegram.HealthHealthy || !last[b.ID].CheckedAt.Equal(h.CheckedAt.Truncate(time.Microsecond)) {
			t.Fatalf("last health %+v %v (checked %v)", last, err, h.CheckedAt)
		}
		// Another tenant sees nothing.
		if _, err := e.svc.CheckHealth(ctx, e.tenant(t, "other"), b.ID); !errors.Is(err, telegram.ErrBotNotFound) {
			t.Fatalf("other tenant: %v", err)
		}
	})

	t.Run("token revoked: failing", func(t *testing.T) {
		b, info := e.register(t, tid, "Revoked")
		if _, err := e.emu.RevokeBotToken(info.ID); err != nil {
			t.Fatal(err)
		}
		h, err := e.svc.CheckHealth(ctx, tid, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantVerdict(t, h, telegram.HealthFailing, telegram.ReasonTokenRejected)
		if h.Identity != nil || h.Webhook != nil || !strings.Contains(h.Reasons[0].Message, "401") {
			t.Fatalf("health %+v", h)
		}
	})

	t.Run("webhook drift: failing", func(t *testing.T) {
		b, info := e.register(t, tid, "Drifted")
		if _, err := e.emu.SetWebhookByHand(info.ID, "https://elsewhere.example/hook"); err != nil {
			t.Fatal(err)
		}
		h, _ := e.svc.CheckHealth(ctx, tid, b.ID)
		wantVerdict(t, h, telegram.HealthFailing, telegram.ReasonWebhookURLMismatch)
		if h.Webhook.URLMatches || h.Webhook.URL != "https://elsewhere.example/hook" {
			t.Fatalf("webhook %+v", h.Webhook)
		}
		if _, err := e.emu.SetWebhookByHand(info.ID, ""); err != nil {
			t.Fatal(err)
		}
		h, _ = e.svc.CheckHealth(ctx, tid, b.ID)
		wantVerdict(t, h, telegram.HealthFailing, telegram.ReasonWebhookNotSet)
	})

	t.Run("commands missing and out of sync: degraded", func(t *testing.T) {
		b, info := e.register(t, tid, "Commands")
		callBotAPI(t, e.emu, info.Token, "setMyCommands", url.Values{"commands": {`[{"command":"start","description":"Go"}]`}})
		h, _ := e.svc.CheckHealth(ctx, tid, b.ID)
		wantVerdict(t, h, telegram.HealthDegraded, telegram.ReasonCommandsMissing, telegram.ReasonCommandsOutOfSync)
		if !slices.Equal(h.Commands.Missing, []string{"help", "stop"}) || h.Commands.Count != 1 || h.Commands.InSync {
			t.Fatalf("commands %+v", h.Commands)
		}
	})

	t.Run("daily limit: degraded near and at the limit", func(t *testing.T) {
		b, _ := e.register(t, tid, "Daily")
		limit := 10
		if _, err := e.svc.UpdateBot(ctx, tid, b.ID, telegram.UpdateBot{DailyLimit: &limit}); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.ReserveDailyN(ctx, b.ID, limit, 9, time.Now()); err != nil {
			t.Fatal(err)
		}
		h, _ := e.svc.CheckHealth(ctx, tid, b.ID)
		wantVerdict(t, h, telegram.HealthDegraded, telegram.ReasonDailyLimitNear)
		if h.Daily != (telegram.DailyHealth{Sent: 9, Limit: 10, Percent: 90}) {
			t.Fatalf("daily %+v", h.Daily)
		}
		_ = e.svc.ReserveDailyN(ctx, b.ID, limit, 1, time.Now())
		h, _ = e.svc.CheckHealth(ctx, tid, b.ID)
		wantVerdict(t, h, telegram.HealthDegraded, telegram.ReasonDailyLimitReached)
	})

	t.Run("Telegram unreachable: failing", func(t *testing.T) {
		b, _ := e.register(t, tid, "Unreachable")
		down := e.serviceWith(t, nil, func(c *telegram.Config) { c.APIURL = closedURL(t, "http") })
		h, err := down.CheckHealth(ctx, tid, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		wantVerdict(t, h, telegram.HealthFailing, telegram.ReasonTelegramUnreachable)
	})
}

// TestService_CheckHealth_DeliveryErrors: Telegram could not deliver updates to the webhook
// (it answers nothing): degraded while the last error is less than an hour old, healthy
// with a clock two hours later.
func TestService_CheckHealth_DeliveryErrors(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	e.cfg.PublicBaseURL = closedURL(t, "http")
	svc := e.serviceWith(t, nil, nil)
	tid := e.tenant(t, "acme")
	info := e.emu.CreateBot("", "Unlucky")
	b, err := svc.RegisterBot(ctx, tid, telegram.NewBot{Name: "Unlucky", Token: info.Token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.emu.SendText(info.ID, tgemu.User{ID: 42, FirstName: "Ann"}, "hello"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.emu.WebhookInfo(info.ID).LastErrorDate == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no delivery error recorded")
		}
		time.Sleep(20 * time.Millisecond)
	}
	h, err := svc.CheckHealth(ctx, tid, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantVerdict(t, h, telegram.HealthDegraded, telegram.ReasonDeliveryErrors)
	if h.Webhook.LastErrorMessage != "Connection refused" || h.Webhook.PendingUpdateCount != 1 || h.Webhook.LastErrorDate.IsZero() ||
		!strings.Contains(h.Reasons[0].Message, "Connection refused") {
		t.Fatalf("webhook %+v, reasons %+v", h.Webhook, h.Reasons)
	}

	later := e.serviceWith(t, func() time.Time { return time.Now().Add(2 * time.Hour) }, nil)
	h, err = later.CheckHealth(ctx, tid, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantVerdict(t, h, telegram.HealthHealthy)
}

// TestService_SyncBot: a drifted webhook and a command list changed by hand are registered
// again; the new secret works (an update is delivered and stored).
func TestService_SyncBot(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tid := e.tenant(t, "acme")
	b, info := e.register(t, tid, "Sync")
	de := []telegram.Command{{Command: "start", Description: "Los"}, {Command: "hilfe", Description: "Hilfe"}}
	if _, err := e.svc.SetCommands(ctx, tid, b.ID, "de", de); err != nil {
		t.Fatal(err)
	}
	if _, err := e.emu.SetWebhookByHand(info.ID, "https://elsewhere.example/hook"); err != nil {
		t.Fatal(err)
	}
	callBotAPI(t, e.emu, info.Token, "deleteMyCommands", url.Values{"language_code": {"de"}})
	callBotAPI(t, e.emu, info.Token, "deleteMyCommands", nil)

	h, err := e.svc.SyncBot(ctx, tid, b.ID)
	if err != nil {
		t.Fatal(err)
	}
	wantVerdict(t, h, telegram.HealthHealthy)
	if !h.WebhookRepaired || !h.Webhook.URLMatches {
		t.Fatalf("health %+v", h)
	}
	var got []telegram.Command
	_ = json.Unmarshal(callBotAPI(t, e.emu, info.Token, "getMyCommands", url.Values{"language_code": {"de"}}), &got)
	if !slices.Equal(got, de) {
		t.Fatalf("de commands at Telegram: %+v", got)
	}
	if n := len(e.emu.Commands(info.ID)); n != 3 {
		t.Fatalf("default commands at Telegram: %d", n)
	}
	last, _ := e.svc.LastHealth(ctx, tid, b.ID)
	if last[b.ID].WebhookRepairedAt.IsZero() {
		t.Fatalf("webhook_repaired_at not recorded: %+v", last[b.ID])
	}

	// The new secret is the one the webhook checks: an update is delivered and stored.
	if _, err := e.emu.SendText(info.ID, tgemu.User{ID: 77, FirstName: "Bo"}, "after sync"); err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := e.emu.WaitIdle(wctx, info.ID); err != nil {
		t.Fatalf("update not delivered after sync: %v (%+v)", err, e.emu.WebhookInfo(info.ID))
	}
	var n int
	if err := e.db.NewRaw("SELECT count(*) FROM webhook_events WHERE bot_id = ?", b.ID).Scan(ctx, &n); err != nil || n != 1 {
		t.Fatalf("events stored: %d %v", n, err)
	}

	if _, err := e.svc.SyncBot(ctx, e.tenant(t, "other"), b.ID); !errors.Is(err, telegram.ErrBotNotFound) {
		t.Fatalf("other tenant: %v", err)
	}
}

// TestService_CheckAllBots: the periodic task checks every bot, records each one's health and
// registers a drifted webhook again.
func TestService_CheckAllBots(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tid := e.tenant(t, "acme")
	ok, _ := e.register(t, tid, "Fine")
	drifted, info := e.register(t, tid, "Drifted")
	gone, _ := e.register(t, tid, "Deleted")
	if err := e.svc.DeleteBot(ctx, tid, gone.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.emu.SetWebhookByHand(info.ID, "https://elsewhere.example/hook"); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleHealthCheck(ctx, telegram.NewHealthCheckTask()); err != nil {
		t.Fatal(err)
	}
	if u := e.emu.WebhookInfo(info.ID).URL; u != e.svc.WebhookURL(drifted.ID) {
		t.Fatalf("webhook url after the job: %s", u)
	}
	last, err := e.svc.LastHealth(ctx, tid, ok.ID, drifted.ID, gone.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(last) != 2 || last[ok.ID].Verdict != telegram.HealthHealthy || last[drifted.ID].Verdict != telegram.HealthHealthy ||
		last[drifted.ID].WebhookRepairedAt.IsZero() || !last[ok.ID].WebhookRepairedAt.IsZero() {
		t.Fatalf("last health: %+v", last)
	}
	checked, repaired, err := e.svc.CheckAllBots(ctx)
	if err != nil || checked != 2 || repaired != 0 {
		t.Fatalf("second run: checked %d repaired %d %v", checked, repaired, err)
	}
}

func TestService_Commands(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tid := e.tenant(t, "acme")
	b, info := e.register(t, tid, "Cmd")

	l, err := e.svc.GetCommands(ctx, tid, b.ID, "")
	if err != nil || l.Custom || len(l.Commands) != 3 {
		t.Fatalf("default list: %+v %v", l, err)
	}
	long := strings.Repeat("x", 257)
	many := make([]telegram.Command, 101)
	for i := range many {
		many[i] = telegram.Command{Command: "c" + strings.Repeat("a", i%30), Description: "d"}
	}
	for _, tc := range []struct {
		name, lang string
		cmds       []telegram.Command
		field      string
	}{
		{"uppercase", "", []telegram.Command{{Command: "start", Description: "a"}, {Command: "Help", Description: "b"}}, "commands[1].command"},
		{"slash", "", []telegram.Command{{Command: "/start", Description: "a"}}, "commands[0].command"},
		{"empty command", "", []telegram.Command{{Command: "", Description: "a"}}, "commands[0].command"},
		{"33 characters", "", []telegram.Command{{Command: strings.Repeat("a", 33), Description: "a"}}, "commands[0].command"},
		{"duplicate", "", []telegram.Command{{Command: "a", Description: "a"}, {Command: "b", Description: "b"}, {Command: "a", Description: "c"}}, "commands[2].command"},
		{"blank description", "", []telegram.Command{{Command: "a", Description: "  "}}, "commands[0].description"},
		{"long description", "", []telegram.Command{{Command: "a", Description: long}}, "commands[0].description"},
		{"two lines", "", []telegram.Command{{Command: "a", Description: "x\ny"}}, "commands[0].description"},
		{"101 commands", "", many, "commands"},
		{"language", "deu", []telegram.Command{{Command: "a", Description: "a"}}, "language_code"},
		{"language uppercase", "DE", []telegram.Command{{Command: "a", Description: "a"}}, "language_code"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.SetCommands(ctx, tid, b.ID, tc.lang, tc.cmds)
			if !errors.Is(err, telegram.ErrInvalidField) || validate.FieldOf(err) != tc.field {
				t.Fatalf("error %v (field %q), want field %s", err, validate.FieldOf(err), tc.field)
			}
		})
	}
	if len(e.emu.Commands(info.ID)) != 3 {
		t.Fatal("a rejected list reached Telegram")
	}

	// 32 characters and 256-character descriptions are allowed; per-language lists.
	en := []telegram.Command{{Command: strings.Repeat("a", 32), Description: strings.Repeat("é", 256)}, {Command: "start", Description: "Start"}}
	if l, err = e.svc.SetCommands(ctx, tid, b.ID, "", en); err != nil || !l.Custom || l.UpdatedAt.IsZero() {
		t.Fatalf("set default: %+v %v", l, err)
	}
	es := []telegram.Command{{Command: "start", Description: "Empezar"}}
	if _, err = e.svc.SetCommands(ctx, tid, b.ID, "es", es); err != nil {
		t.Fatal(err)
	}
	var got []telegram.Command
	_ = json.Unmarshal(callBotAPI(t, e.emu, info.Token, "getMyCommands", url.Values{"language_code": {"es"}}), &got)
	if !slices.Equal(got, es) {
		t.Fatalf("es at Telegram: %+v", got)
	}
	if l, _ := e.svc.GetCommands(ctx, tid, b.ID, "es"); !slices.Equal(l.Commands, es) || l.LanguageCode != "es" {
		t.Fatalf("es stored: %+v", l)
	}
	if l, _ := e.svc.GetCommands(ctx, tid, b.ID, ""); !slices.Equal(l.Commands, en) {
		t.Fatalf("default stored: %+v", l)
	}
	if l, _ := e.svc.GetCommands(ctx, tid, b.ID, "fr"); l.Custom || len(l.Commands) != 0 {
		t.Fatalf("fr: %+v", l)
	}
	// An empty list forgets a language's list, at Telegram too.
	if _, err = e.svc.SetCommands(ctx, tid, b.ID, "es", nil); err != nil {
		t.Fatal(err)
	}
	_ = json.Unmarshal(callBotAPI(t, e.emu, info.Token, "getMyCommands", url.Values{"language_code": {"es"}}), &got)
	if len(got) != 0 {
		t.Fatalf("es at Telegram after clearing: %+v", got)
	}
	if l, _ := e.svc.GetCommands(ctx, tid, b.ID, "es"); l.Custom {
		t.Fatalf("es still stored: %+v", l)
	}
	if _, err := e.svc.SetCommands(ctx, e.tenant(t, "other"), b.ID, "", en); !errors.Is(err, telegram.ErrBotNotFound) {
		t.Fatalf("other tenant: %v", err)
	}
}
