package telegram

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

// sendEnv is a Service on real PostgreSQL and Redis talking to a tgemu emulator, with one
// tenant and one bot inserted directly (independent of RegisterBot).
type sendEnv struct {
	t        testing.TB
	svc      *Service
	emu      *tgemu.Server
	db       *bun.DB
	rdb      *redis.Client
	queue    *asynq.Client
	tenantID uuid.UUID
	info     tgemu.BotInfo
	bot      Bot
}

// sendTestConfig is a Config with the limiter off and short timeouts.
func sendTestConfig(apiURL string) Config {
	return Config{
		APIURL:         apiURL,
		PublicBaseURL:  "http://127.0.0.1:1",
		RequestTimeout: 5 * time.Second,
		MaxRetries:     3,
		MaxWait:        10 * time.Second,
		EncryptionKey:  []byte("0123456789abcdef0123456789abcdef"),
	}
}

// newSendEnv starts the emulator with opts and builds the Service; cfg may adjust its Config.
func newSendEnv(t testing.TB, opts tgemu.Options, cfg func(*Config)) *sendEnv {
	t.Helper()
	emu := tgemu.NewTest(t, opts)
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	c := sendTestConfig(emu.URL())
	if cfg != nil {
		cfg(&c)
	}
	e := &sendEnv{t: t, emu: emu, db: db, rdb: rdb}
	e.queue = asynq.NewClientFromRedisClient(rdb)
	e.svc = e.newService(c)
	ten, _, err := tenant.New(db).Create(context.Background(), "acme")
	if err != nil {
		t.Fatal(err)
	}
	e.tenantID = ten.ID
	e.info, e.bot = e.addBot(e.tenantID, 0)
	return e
}

// newService returns another Service (another "worker process") on the same DB and Redis.
func (e *sendEnv) newService(c Config) *Service {
	e.t.Helper()
	svc, err := New(Deps{
		DB: e.db, Redis: e.rdb, Queue: e.queue, Contacts: contacts.New(e.db), Cfg: c,
		Log: testlog.Logger(e.t),
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

// addBot creates an emulated bot and inserts its row for tenantID with dailyLimit.
func (e *sendEnv) addBot(tenantID uuid.UUID, dailyLimit int) (tgemu.BotInfo, Bot) {
	e.t.Helper()
	info := e.emu.CreateBot("", "")
	return info, insertTestBot(e.t, e.svc, e.db, tenantID, info, dailyLimit)
}

// insertTestBot stores a bot row for an emulated bot, its token sealed by svc.
func insertTestBot(t testing.TB, svc *Service, db *bun.DB, tenantID uuid.UUID, info tgemu.BotInfo, dailyLimit int) Bot {
	t.Helper()
	id := uuid.New()
	sealed, err := svc.sealToken(id, info.Token)
	if err != nil {
		t.Fatal(err)
	}
	b := Bot{
		ID: id, TenantID: tenantID, Name: info.Username, TelegramBotID: info.ID, Username: info.Username,
		TokenSealed: sealed, WebhookSecretHash: []byte("test-secret-hash"), WebhookStatus: WebhookActive,
		DailyLimit: dailyLimit,
	}
	if _, err := db.NewInsert().Model(&b).Returning("*").Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// contact makes user chatID message the bot (so that sendMessage to it works) and stores the
// contact.
func (e *sendEnv) contact(info tgemu.BotInfo, bot Bot, chatID int64) contacts.Contact {
	e.t.Helper()
	e.chat(info, chatID)
	c, err := e.svc.contacts.UpsertFromTelegram(context.Background(), e.db, bot.TenantID, bot.ID,
		contacts.Identity{ChatID: chatID, UserID: chatID, FirstName: "User"}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

// chat makes user chatID message the bot in the emulator only.
func (e *sendEnv) chat(info tgemu.BotInfo, chatID int64) {
	e.t.Helper()
	if _, err := e.emu.SendCommand(info.ID, tgemu.User{ID: chatID, FirstName: "User"}, "/start"); err != nil {
		e.t.Fatal(err)
	}
}

// assertNoToken fails when the outcome's error text holds the bot token or its secret part.
func (e *sendEnv) assertNoToken(out Outcome) {
	e.t.Helper()
	_, secret, _ := strings.Cut(e.info.Token, ":")
	if strings.Contains(out.Err, e.info.Token) || strings.Contains(out.Err, secret) {
		e.t.Fatalf("Outcome.Err leaks the token: %q", out.Err)
	}
}

var noLimits = tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1}

func TestService_Send(t *testing.T) {
	ctx := context.Background()

	t.Run("sent", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		e.contact(e.info, e.bot, 1001)
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "<b>hi</b>", ParseMode: "HTML"})
		if out.Status != OutcomeSent || out.MessageID == 0 || out.ChatID != 1001 || out.Err != "" {
			t.Fatalf("outcome = %+v, want sent with a message id", out)
		}
		sent := e.emu.Sent(e.info.ID)
		if len(sent) != 1 || sent[0].ChatID != 1001 || sent[0].Text != "<b>hi</b>" || sent[0].ParseMode != "HTML" || sent[0].MessageID != out.MessageID {
			t.Fatalf("emulator got %+v", sent)
		}
	})

	t.Run("429 pauses the bot", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		e.contact(e.info, e.bot, 1001)
		e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tgemu.FaultTooManyRequests, RetryAfter: 3, Times: 1})
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "hi"})
		if out.Status != OutcomeWait || out.RetryAfter != 3*time.Second {
			t.Fatalf("outcome = %+v, want wait 3s", out)
		}
		if !strings.Contains(out.Err, "Too Many Requests") {
			t.Fatalf("Err = %q, want Telegram's description", out.Err)
		}
		e.assertNoToken(out)
		// Every worker sees the pause: another Service, another chat.
		other := e.newService(sendTestConfig(e.emu.URL()))
		_, r, err := other.limits.Acquire(ctx, e.bot.ID, 2002, AcquireOpts{Priority: PriorityBulk})
		if err != nil || r == nil || r.Reason != RefusedPaused || r.RetryAfter < 2*time.Second {
			t.Fatalf("acquire after 429: refusal %+v err=%v, want paused for about 3s", r, err)
		}
		// A send with a short MaxWait waits instead of calling Telegram.
		c := sendTestConfig(e.emu.URL())
		c.MaxWait = 500 * time.Millisecond
		out = e.newService(c).Send(ctx, e.bot, 1001, Outgoing{Text: "again"})
		if out.Status != OutcomeWait || out.RetryAfter < 2*time.Second {
			t.Fatalf("send while paused = %+v, want wait", out)
		}
		if n := len(e.emu.Calls(e.info.ID, "sendMessage")); n != 1 {
			t.Fatalf("sendMessage calls = %d, want 1 (no call while paused)", n)
		}
	})

	t.Run("403 blocks the contact", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		e.contact(e.info, e.bot, 1001)
		if _, err := e.emu.Block(e.info.ID, tgemu.User{ID: 1001, FirstName: "User"}); err != nil {
			t.Fatal(err)
		}
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "hi"})
		if out.Status != OutcomeBlocked || out.Err != "Forbidden: bot was blocked by the user" {
			t.Fatalf("outcome = %+v, want blocked", out)
		}
		e.assertNoToken(out)
		c, err := e.svc.contacts.GetByChat(ctx, e.bot.ID, 1001)
		if err != nil || !c.Blocked || c.BlockedAt.IsZero() {
			t.Fatalf("contact = %+v, %v; want blocked", c, err)
		}
	})

	t.Run("chat not found fails", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		out := e.svc.Send(ctx, e.bot, 5555, Outgoing{Text: "hi"})
		if out.Status != OutcomeFailed || out.Err != "Bad Request: chat not found" {
			t.Fatalf("outcome = %+v, want failed chat not found", out)
		}
		e.assertNoToken(out)
	})

	t.Run("empty text fails", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		e.contact(e.info, e.bot, 1001)
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: " "})
		if out.Status != OutcomeFailed || !strings.Contains(out.Err, "message text is empty") {
			t.Fatalf("outcome = %+v, want failed empty text", out)
		}
	})

	t.Run("migrate moves the contact and resends", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		e.contact(e.info, e.bot, 1001)
		// The emulator has only private chats: let the "supergroup" be another chat that
		// exists there (2002) but is not a contact yet.
		e.chat(e.info, 2002)
		e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tgemu.FaultMigrate, ChatID: 1001, MigrateToChatID: 2002, Times: 1})
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "hello group"})
		if out.Status != OutcomeSent || out.ChatID != 2002 || out.MessageID == 0 {
			t.Fatalf("outcome = %+v, want sent to 2002", out)
		}
		if sent := e.emu.SentTo(e.info.ID, 2002); len(sent) != 1 || sent[0].Text != "hello group" {
			t.Fatalf("sent to 2002 = %+v", sent)
		}
		if _, err := e.svc.contacts.GetByChat(ctx, e.bot.ID, 2002); err != nil {
			t.Fatalf("contact not moved to 2002: %v", err)
		}
		if _, err := e.svc.contacts.GetByChat(ctx, e.bot.ID, 1001); !errors.Is(err, contacts.ErrNotFound) {
			t.Fatalf("contact still on 1001: %v", err)
		}
	})

	t.Run("migrate loop fails", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		e.contact(e.info, e.bot, 1001)
		e.chat(e.info, 2002)
		e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tgemu.FaultMigrate, MigrateToChatID: 2002})
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "x"})
		if out.Status != OutcomeFailed {
			t.Fatalf("outcome = %+v, want failed after one resend", out)
		}
		if n := len(e.emu.Calls(e.info.ID, "sendMessage")); n != 2 {
			t.Fatalf("sendMessage calls = %d, want 2", n)
		}
	})

	for _, tc := range []struct {
		kind    tgemu.FaultKind
		wantErr string
	}{
		{tgemu.FaultServerError, "Internal Server Error"},
		{tgemu.FaultBadGatewayHTML, "unreadable response"},
	} {
		t.Run(string(tc.kind)+" retries", func(t *testing.T) {
			e := newSendEnv(t, noLimits, nil)
			e.contact(e.info, e.bot, 1001)
			e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tc.kind, Times: 1})
			out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "hi"})
			if out.Status != OutcomeRetry || !strings.Contains(out.Err, tc.wantErr) {
				t.Fatalf("outcome = %+v, want retry with %q", out, tc.wantErr)
			}
			e.assertNoToken(out)
		})
	}

	t.Run("timeout retries", func(t *testing.T) {
		e := newSendEnv(t, noLimits, func(c *Config) { c.RequestTimeout = 300 * time.Millisecond })
		e.contact(e.info, e.bot, 1001)
		e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tgemu.FaultLatency, Latency: 3 * time.Second, Times: 1})
		start := time.Now()
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "hi"})
		if out.Status != OutcomeRetry || !strings.Contains(out.Err, "timed out") {
			t.Fatalf("outcome = %+v, want retry timed out", out)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("send took %v, want about the 300ms request timeout", d)
		}
		e.assertNoToken(out)
	})

	t.Run("unreachable retries without the token", func(t *testing.T) {
		e := newSendEnv(t, noLimits, func(c *Config) { c.APIURL = "http://127.0.0.1:1" })
		out := e.svc.Send(ctx, e.bot, 1001, Outgoing{Text: "hi"})
		if out.Status != OutcomeRetry || out.Err == "" {
			t.Fatalf("outcome = %+v, want retry", out)
		}
		e.assertNoToken(out)
	})

	// A revoked token (401) waits: the bot is marked invalid_token (only if the row still has
	// that token: here it does not) and nothing is dropped (issue 8).
	t.Run("revoked token waits", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		bot := e.bot
		bot.TokenSealed, _ = e.svc.sealToken(bot.ID, fmt.Sprintf("%d:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", e.info.ID))
		out := e.svc.Send(ctx, bot, 1001, Outgoing{Text: "hi"})
		if out.Status != OutcomeWait || out.RetryAfter != InactiveBotRetry || !strings.Contains(out.Err, "Unauthorized") {
			t.Fatalf("outcome = %+v, want wait Unauthorized", out)
		}
	})

	t.Run("daily limit defers", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		info, bot := e.addBot(e.tenantID, 2)
		e.contact(info, bot, 1001)
		// A send that does not happen is given back.
		if out := e.svc.Send(ctx, bot, 9999, Outgoing{Text: "nobody"}); out.Status != OutcomeFailed {
			t.Fatalf("send to unknown chat = %+v", out)
		}
		for i := range 2 {
			if out := e.svc.Send(ctx, bot, 1001, Outgoing{Text: "hi"}); out.Status != OutcomeSent {
				t.Fatalf("send %d = %+v, want sent", i, out)
			}
		}
		before := time.Now()
		out := e.svc.Send(ctx, bot, 1001, Outgoing{Text: "hi"})
		if out.Status != OutcomeDeferred || !out.Until.Equal(NextUTCMidnight(before)) && !out.Until.Equal(NextUTCMidnight(time.Now())) {
			t.Fatalf("third send = %+v, want deferred until %v", out, NextUTCMidnight(before))
		}
		if n := len(e.emu.Sent(info.ID)); n != 2 {
			t.Fatalf("emulator got %d messages, want 2", n)
		}
		if n, _ := e.svc.limits.DailyCount(ctx, bot.ID, time.Now()); n != 2 {
			t.Fatalf("daily count = %d, want 2", n)
		}
	})

	t.Run("context cancelled while waiting", func(t *testing.T) {
		e := newSendEnv(t, noLimits, func(c *Config) { c.ChatInterval = 5 * time.Second })
		info, bot := e.addBot(e.tenantID, 5)
		e.contact(info, bot, 1001)
		if out := e.svc.Send(ctx, bot, 1001, Outgoing{Text: "1"}); out.Status != OutcomeSent {
			t.Fatalf("first = %+v", out)
		}
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		out := e.svc.Send(cctx, bot, 1001, Outgoing{Text: "2"})
		if out.Status != OutcomeWait || out.RetryAfter <= 0 {
			t.Fatalf("cancelled = %+v, want wait", out)
		}
		if n, _ := e.svc.limits.DailyCount(ctx, bot.ID, time.Now()); n != 1 {
			t.Fatalf("daily count = %d, want 1 (released)", n)
		}
	})

	t.Run("redis down waits", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		e.contact(e.info, e.bot, 1001)
		dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
		defer dead.Close()
		svc := e.newService(sendTestConfig(e.emu.URL()))
		svc.limits = NewLimiter(dead, LimiterConfig{})
		out := svc.Send(ctx, e.bot, 1001, Outgoing{Text: "hi"})
		if out.Status != OutcomeWait || out.RetryAfter != 5*time.Second || out.Err == "" {
			t.Fatalf("outcome = %+v, want wait 5s", out)
		}
		if n := len(e.emu.Calls(e.info.ID, "sendMessage")); n != 0 {
			t.Fatalf("sendMessage calls = %d, want 0", n)
		}
	})
}

func TestRedactToken(t *testing.T) {
	tok := "123456:ABCdefGHIjklMNOpqrSTUvwxYZ0123456789"
	got := redactToken("Post https://x/bot"+tok+"/sendMessage and ABCdefGHIjklMNOpqrSTUvwxYZ0123456789", tok)
	if strings.Contains(got, "ABCdefGHI") {
		t.Fatalf("redactToken left the secret: %q", got)
	}
}

// TestService_Send_NoViolations sends a burst through two Services (two workers) with the
// emulator enforcing Telegram's limits (30/s per bot, 1 s per chat): with BotRate 25/s and
// ChatInterval 1100ms no call may be answered 429.
func TestService_Send_NoViolations(t *testing.T) {
	if testing.Short() {
		t.Skip("takes about 4 s")
	}
	e := newSendEnv(t, tgemu.Options{PerBotPerSecond: 30, PerChatInterval: time.Second}, func(c *Config) {
		c.BotRate = config.Rate{N: 25, Per: time.Second}
		c.ChatInterval = 1100 * time.Millisecond
		c.MaxWait = time.Minute
	})
	c2 := sendTestConfig(e.emu.URL())
	c2.BotRate, c2.ChatInterval, c2.MaxWait = config.Rate{N: 25, Per: time.Second}, 1100*time.Millisecond, time.Minute
	workers := []*Service{e.svc, e.newService(c2)}
	// Three hot chats get 4 messages each, queued first: the per-chat interval binds them.
	// 40 more chats get 2 each: at 1100ms they would allow 36 msg/s, so the per-bot rate
	// binds.
	const hot, hotMsgs, chats, perChat = 3, 4, 40, 2
	total := hot*hotMsgs + chats*perChat
	for i := range hot + chats {
		e.chat(e.info, int64(1000+i))
	}
	jobs := make(chan int64, total)
	for range hotMsgs {
		for i := range hot {
			jobs <- int64(1000 + i)
		}
	}
	for range perChat {
		for i := range chats {
			jobs <- int64(1000 + hot + i)
		}
	}
	close(jobs)
	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []Outcome
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for chat := range jobs {
				out := workers[g%2].Send(context.Background(), e.bot, chat, Outgoing{Text: "burst"})
				if out.Status != OutcomeSent {
					mu.Lock()
					bad = append(bad, out)
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("%d sends in %v", total, time.Since(start))
	if len(bad) > 0 {
		t.Fatalf("%d sends not sent, first: %+v", len(bad), bad[0])
	}
	if v := e.emu.Violations(e.info.ID); v.PerBot != 0 || v.PerChat != 0 {
		t.Fatalf("emulator violations = %+v, want none", v)
	}
	if n := len(e.emu.Sent(e.info.ID)); n != total {
		t.Fatalf("emulator got %d messages, want %d", n, total)
	}
}

// queuedMessage stores an outbound queued message to contact c.
func (e *sendEnv) queuedMessage(c contacts.Contact, text string) contacts.Message {
	e.t.Helper()
	m := contacts.Message{TenantID: c.TenantID, BotID: c.BotID, ContactID: &c.ID, ChatID: c.TelegramChatID, Text: text}
	if err := e.svc.contacts.CreateOutbound(context.Background(), e.db, &m); err != nil {
		e.t.Fatal(err)
	}
	return m
}

func sendTask(t testing.TB, id uuid.UUID) *asynq.Task {
	t.Helper()
	task, err := NewSendTask(id)
	if err != nil {
		t.Fatal(err)
	}
	return task
}

func (e *sendEnv) message(id uuid.UUID) contacts.Message {
	e.t.Helper()
	m, err := e.svc.contacts.MessageByID(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	return m
}

func TestService_HandleSend(t *testing.T) {
	ctx := context.Background()

	t.Run("sent", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		c := e.contact(e.info, e.bot, 1001)
		m := e.queuedMessage(c, "hello")
		if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); err != nil {
			t.Fatalf("HandleSend: %v", err)
		}
		got := e.message(m.ID)
		if got.Status != contacts.StatusSent || got.TelegramMessageID == nil || *got.TelegramMessageID == 0 || got.Attempts != 1 || got.SentAt.IsZero() {
			t.Fatalf("message = %+v, want sent with telegram_message_id", got)
		}
		// Idempotent: a second run sends nothing.
		if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); err != nil {
			t.Fatalf("second HandleSend: %v", err)
		}
		if n := len(e.emu.Sent(e.info.ID)); n != 1 {
			t.Fatalf("emulator got %d messages, want 1", n)
		}
	})

	t.Run("retries stop at MaxRetries", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		c := e.contact(e.info, e.bot, 1001)
		m := e.queuedMessage(c, "hello")
		e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tgemu.FaultServerError}) // Times 0: forever
		var runs int
		for runs = 1; runs <= 10; runs++ {
			err := e.svc.HandleSend(ctx, sendTask(t, m.ID))
			if err == nil {
				t.Fatalf("run %d: nil error", runs)
			}
			var ra *RetryAfterError
			if errors.As(err, &ra) {
				t.Fatalf("run %d: RetryAfterError %v for a 5xx", runs, err)
			}
			if errors.Is(err, asynq.SkipRetry) {
				break
			}
			if got := e.message(m.ID); got.Status != contacts.StatusQueued || got.Attempts != runs {
				t.Fatalf("run %d: message = %+v, want queued with %d attempts", runs, got, runs)
			}
		}
		if want := e.svc.cfg.MaxRetries + 1; runs != want {
			t.Fatalf("SkipRetry after %d runs, want %d", runs, want)
		}
		if n := len(e.emu.Calls(e.info.ID, "sendMessage")); n != e.svc.cfg.MaxRetries+1 {
			t.Fatalf("sendMessage calls = %d, want %d", n, e.svc.cfg.MaxRetries+1)
		}
		got := e.message(m.ID)
		if got.Status != contacts.StatusFailed || got.Error != "Internal Server Error" || got.Attempts != 4 {
			t.Fatalf("message = %+v, want failed with the last error after 4 attempts", got)
		}
		// asynq would not run it again; if it did, nothing is sent.
		if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); err != nil {
			t.Fatalf("HandleSend on a failed message: %v", err)
		}
		if n := len(e.emu.Calls(e.info.ID, "sendMessage")); n != 4 {
			t.Fatalf("sendMessage calls = %d after the message failed, want 4", n)
		}
	})

	t.Run("429 waits without counting an attempt", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		c := e.contact(e.info, e.bot, 1001)
		m := e.queuedMessage(c, "hello")
		e.emu.AddFault(e.info.ID, tgemu.Fault{Kind: tgemu.FaultTooManyRequests, RetryAfter: 2, Times: 1})
		err := e.svc.HandleSend(ctx, sendTask(t, m.ID))
		var ra *RetryAfterError
		if !errors.As(err, &ra) || ra.RetryAfter != 2*time.Second {
			t.Fatalf("HandleSend = %v, want *RetryAfterError of 2s", err)
		}
		if errors.Is(err, asynq.SkipRetry) {
			t.Fatal("429 must not skip retries")
		}
		if got := e.message(m.ID); got.Status != contacts.StatusQueued || got.Attempts != 0 {
			t.Fatalf("message = %+v, want queued with 0 attempts", got)
		}
	})

	t.Run("rate wait returns RetryAfterError", func(t *testing.T) {
		e := newSendEnv(t, noLimits, func(c *Config) { c.ChatInterval = time.Minute; c.MaxWait = time.Second })
		c := e.contact(e.info, e.bot, 1001)
		m1, m2 := e.queuedMessage(c, "one"), e.queuedMessage(c, "two")
		if err := e.svc.HandleSend(ctx, sendTask(t, m1.ID)); err != nil {
			t.Fatal(err)
		}
		err := e.svc.HandleSend(ctx, sendTask(t, m2.ID))
		var ra *RetryAfterError
		if !errors.As(err, &ra) || ra.RetryAfter < 50*time.Second {
			t.Fatalf("HandleSend = %v, want *RetryAfterError of about 1 min", err)
		}
		if got := e.message(m2.ID); got.Attempts != 0 || got.Status != contacts.StatusQueued {
			t.Fatalf("message = %+v", got)
		}
	})

	t.Run("daily limit defers to midnight", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		info, bot := e.addBot(e.tenantID, 1)
		c := e.contact(info, bot, 1001)
		m1, m2 := e.queuedMessage(c, "one"), e.queuedMessage(c, "two")
		if err := e.svc.HandleSend(ctx, sendTask(t, m1.ID)); err != nil {
			t.Fatal(err)
		}
		err := e.svc.HandleSend(ctx, sendTask(t, m2.ID))
		var ra *RetryAfterError
		if !errors.As(err, &ra) || ra.Reason != "daily_limit" {
			t.Fatalf("HandleSend = %v, want *RetryAfterError daily_limit", err)
		}
		if want := time.Until(NextUTCMidnight(time.Now())); ra.RetryAfter > want+time.Second || ra.RetryAfter < want-5*time.Second && want > 5*time.Second {
			t.Fatalf("RetryAfter = %v, want about %v", ra.RetryAfter, want)
		}
		if got := e.message(m2.ID); got.Status != contacts.StatusQueued || got.Attempts != 0 {
			t.Fatalf("message = %+v, want still queued", got)
		}
	})

	t.Run("blocked fails without retry", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		c := e.contact(e.info, e.bot, 1001)
		m := e.queuedMessage(c, "hello")
		if _, err := e.emu.Block(e.info.ID, tgemu.User{ID: 1001, FirstName: "User"}); err != nil {
			t.Fatal(err)
		}
		err := e.svc.HandleSend(ctx, sendTask(t, m.ID))
		if !errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("HandleSend = %v, want SkipRetry", err)
		}
		got := e.message(m.ID)
		if got.Status != contacts.StatusFailed || got.Error != "Forbidden: bot was blocked by the user" || got.Attempts != 1 {
			t.Fatalf("message = %+v, want failed blocked", got)
		}
		if cc, _ := e.svc.contacts.GetByChat(ctx, e.bot.ID, 1001); !cc.Blocked {
			t.Fatal("contact not blocked")
		}
		if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); err != nil {
			t.Fatalf("rerun: %v", err)
		}
		if n := len(e.emu.Calls(e.info.ID, "sendMessage")); n != 1 {
			t.Fatalf("sendMessage calls = %d, want 1", n)
		}
	})

	t.Run("deleted bot fails", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		c := e.contact(e.info, e.bot, 1001)
		m := e.queuedMessage(c, "hello")
		if _, err := e.db.NewUpdate().Model((*Bot)(nil)).Set("deleted_at = now()").Where("id = ?", e.bot.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.HandleSend(ctx, sendTask(t, m.ID)); !errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("HandleSend = %v, want SkipRetry", err)
		}
		if got := e.message(m.ID); got.Status != contacts.StatusFailed || got.Error != "bot deleted" {
			t.Fatalf("message = %+v, want failed bot deleted", got)
		}
	})

	t.Run("bad payload and unknown message skip", func(t *testing.T) {
		e := newSendEnv(t, noLimits, nil)
		if err := e.svc.HandleSend(ctx, asynq.NewTask(TypeSend, []byte("{"))); !errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("bad payload: %v, want SkipRetry", err)
		}
		if err := e.svc.HandleSend(ctx, sendTask(t, uuid.New())); !errors.Is(err, asynq.SkipRetry) {
			t.Fatalf("unknown message: %v, want SkipRetry", err)
		}
	})
}

func TestService_CreateMessage(t *testing.T) {
	ctx := context.Background()
	e := newSendEnv(t, noLimits, nil)
	c := e.contact(e.info, e.bot, 1001)
	// A second bot of the same tenant with its own contact, and another tenant's contact.
	info2, bot2 := e.addBot(e.tenantID, 0)
	c2 := e.contact(info2, bot2, 2002)
	other, _, err := tenant.New(e.db).Create(ctx, "other")
	if err != nil {
		t.Fatal(err)
	}
	info3, bot3 := e.addBot(other.ID, 0)
	c3 := e.contact(info3, bot3, 3003)
	blocked := e.contact(e.info, e.bot, 1002)
	if _, err := e.svc.contacts.SetBlocked(ctx, e.db, e.bot.ID, 1002, true); err != nil {
		t.Fatal(err)
	}
	optedOut := e.contact(e.info, e.bot, 1003) // sent /stop
	if _, err := e.db.NewRaw("UPDATE contact_bots SET opted_out = true WHERE contact_id = ?", optedOut.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		nm   NewMessage
		want error
	}{
		{"empty text", NewMessage{BotID: e.bot.ID, ContactID: c.ID, Text: ""}, validate.Field("text", "")},
		{"blank text", NewMessage{BotID: e.bot.ID, ContactID: c.ID, Text: " \n "}, validate.Field("text", "")},
		{"too long", NewMessage{BotID: e.bot.ID, ContactID: c.ID, Text: strings.Repeat("é", 4097)}, validate.Field("text", "")},
		{"bad parse mode", NewMessage{BotID: e.bot.ID, ContactID: c.ID, Text: "hi", ParseMode: "BBCode"}, validate.Field("parse_mode", "")},
		{"NUL in text", NewMessage{BotID: e.bot.ID, ContactID: c.ID, Text: "a\x00b"}, validate.Field("text", "")},
		{"control character in text", NewMessage{BotID: e.bot.ID, ContactID: c.ID, Text: "a\x1bb"}, validate.Field("text", "")},
		{"another tenant's bot", NewMessage{BotID: bot3.ID, ContactID: c.ID, Text: "hi"}, ErrBotNotFound},
		{"no bot, unknown contact", NewMessage{ContactID: uuid.New(), Text: "hi"}, contacts.ErrNotFound},
		{"another tenant's contact", NewMessage{BotID: e.bot.ID, ContactID: c3.ID, Text: "hi"}, contacts.ErrNotFound},
		{"unknown contact", NewMessage{BotID: e.bot.ID, ContactID: uuid.New(), Text: "hi"}, contacts.ErrNotFound},
		{"contact of another bot", NewMessage{BotID: e.bot.ID, ContactID: c2.ID, Text: "hi"}, ErrContactNotOfBot},
		{"blocked contact", NewMessage{BotID: e.bot.ID, ContactID: blocked.ID, Text: "hi"}, ErrContactBlocked},
		{"opted-out contact", NewMessage{BotID: e.bot.ID, ContactID: optedOut.ID, Text: "hi"}, ErrContactOptedOut},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.CreateMessage(ctx, e.tenantID, tt.nm)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if apperr.KindOf(err) != apperr.KindOf(tt.want) {
				t.Fatalf("kind = %v, want %v", apperr.KindOf(err), apperr.KindOf(tt.want))
			}
			if validate.FieldOf(err) != validate.FieldOf(tt.want) {
				t.Fatalf("details.field = %q, want %q", validate.FieldOf(err), validate.FieldOf(tt.want))
			}
		})
	} // No bot named, with two bots: the bot the contact wrote to.
	if m, err := e.svc.CreateMessage(ctx, e.tenantID, NewMessage{ContactID: c2.ID, Text: "hi"}); err != nil || m.BotID != c2.BotID {
		t.Fatalf("no bot: message %+v, err %v; want bot %s", m, err, c2.BotID)
	}

	t.Run("queued and enqueued", func(t *testing.T) {
		m, err := e.svc.CreateMessage(ctx, e.tenantID, NewMessage{BotID: e.bot.ID, ContactID: c.ID, Text: strings.Repeat("é", 4096), ParseMode: "markdownv2"})
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != contacts.StatusQueued || m.ChatID != 1001 || m.ParseMode != "MarkdownV2" || m.Kind != contacts.KindMessage || m.Direction != contacts.DirectionOutbound {
			t.Fatalf("message = %+v", m)
		}
		got, err := e.svc.GetMessage(ctx, e.tenantID, m.ID)
		if err != nil || got.ID != m.ID {
			t.Fatalf("GetMessage = %+v, %v", got, err)
		}
		if _, err := e.svc.GetMessage(ctx, other.ID, m.ID); !errors.Is(err, ErrMessageNotFound) {
			t.Fatalf("GetMessage by another tenant = %v, want not found", err)
		}
		info, err := asynq.NewInspectorFromRedisClient(e.rdb).GetTaskInfo(QueueOutbound, TypeSend+":"+m.ID.String())
		if err != nil {
			t.Fatalf("send task not enqueued: %v", err)
		}
		if info.Type != TypeSend {
			t.Fatalf("task type = %s", info.Type)
		}
		// The worker sends it.
		if err := e.svc.HandleSend(ctx, asynq.NewTask(info.Type, info.Payload)); err != nil {
			t.Fatal(err)
		}
		if got := e.message(m.ID); got.Status != contacts.StatusSent {
			t.Fatalf("after HandleSend: %+v", got)
		}
	})
}
