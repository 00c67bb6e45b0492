package worker

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

// TestRun_HealthCheckRepairsDrift: the scheduler enqueues telegram:health-check (as cmd does
// every BOT_HEALTH_INTERVAL) and the worker runs it: a webhook someone set by hand in tgemu is
// registered again.
func TestRun_HealthCheckRepairsDrift(t *testing.T) {
	db, rdb := testenv.DB(t), testenv.Redis(t)
	emu := tgemu.NewTest(t, tgemu.Options{})
	log := testlog.Logger(t)
	tg, err := telegram.New(telegram.Deps{
		DB: db, Redis: rdb, Queue: asynq.NewClientFromRedisClient(rdb), Contacts: contacts.New(db), Log: log,
		Cfg: telegram.Config{APIURL: emu.URL(), PublicBaseURL: "http://127.0.0.1:1", RequestTimeout: 5 * time.Second,
			GlobalRate: config.Rate{N: 100, Per: time.Second}, BotRate: config.Rate{N: 25, Per: time.Second},
			EncryptionKey: make([]byte, 32)},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tn, _, err := tenant.New(db).Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	info := emu.CreateBot("", "Drifty")
	b, err := tg.RegisterBot(ctx, tn.ID, telegram.NewBot{Name: "Drifty", Token: info.Token})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := emu.SetWebhookByHand(info.ID, "https://elsewhere.example/hook"); err != nil {
		t.Fatal(err)
	}

	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- Run(rctx, Deps{Redis: rdb, Concurrency: 2, SendConcurrency: 1, Log: log, ShutdownTimeout: 2 * time.Second,
			Services: []Registrar{tg},
			Periodic: []Periodic{{Spec: "@every 1s", Task: telegram.NewHealthCheckTask()}}})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	deadline := time.Now().Add(15 * time.Second)
	for emu.WebhookInfo(info.ID).URL != b.WebhookURL {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook was not repaired: %+v", emu.WebhookInfo(info.ID))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for {
		last, err := tg.LastHealth(ctx, tn.ID, b.ID)
		if err != nil {
			t.Fatal(err)
		}
		if h, ok := last[b.ID]; ok && !h.WebhookRepairedAt.IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the repair was not recorded")
		}
		time.Sleep(100 * time.Millisecond)
	}
}
