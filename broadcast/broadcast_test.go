package broadcast

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

// env is one test's world: fresh PostgreSQL and Redis databases, an emulated Telegram, and
// the services wired as cmd/botfleet wires them.
type env struct {
	t        testing.TB
	ctx      context.Context
	db       *bun.DB
	rdb      *redis.Client
	emu      *tgemu.Server
	queue    *asynq.Client
	tenants  *tenant.Service
	contacts *contacts.Service
	tg       *telegram.Service
	svc      *Service
	userSeq  atomic.Int64
}

type envOptions struct {
	emu        tgemu.Options
	tgCfg      func(*telegram.Config)
	maxRetries int
	// now, when set, is the clock of both services (timing_test.go).
	now func() time.Time
}

var testLog = testlog.Logger(nil)

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	emu := tgemu.NewTest(t, o.emu)
	// The emulator delivers the updates of SendCommand to the bots' webhooks; accept them.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	t.Cleanup(hook.Close)
	queue := asynq.NewClientFromRedisClient(rdb)
	cs := contacts.New(db)
	cfg := telegram.Config{
		APIURL:         emu.URL(),
		PublicBaseURL:  hook.URL,
		RequestTimeout: 5 * time.Second,
		MaxRetries:     o.maxRetries,
		GlobalRate:     config.Rate{N: 1000, Per: time.Second},
		BotRate:        config.Rate{N: 25, Per: time.Second},
		MaxWait:        5 * time.Second,
		EncryptionKey:  bytes.Repeat([]byte{7}, 32),
	}
	if o.tgCfg != nil {
		o.tgCfg(&cfg)
	}
	tg, err := telegram.New(telegram.Deps{DB: db, Redis: rdb, Queue: queue, Contacts: cs, Cfg: cfg, Log: testLog, Now: o.now})
	if err != nil {
		t.Fatal(err)
	}
	svc := New(Deps{DB: db, Queue: queue, Telegram: tg, Contacts: cs, Log: testLog, MaxRetries: o.maxRetries, Now: o.now})
	return &env{t: t, ctx: context.Background(), db: db, rdb: rdb, emu: emu, queue: queue,
		tenants: tenant.New(db), contacts: cs, tg: tg, svc: svc}
}

// tenant creates a tenant.
func (e *env) tenant(name string) uuid.UUID {
	e.t.Helper()
	tn, _, err := e.tenants.Create(e.ctx, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return tn.ID
}

// testBot is a registered bot and its emulated twin.
type testBot struct {
	telegram.Bot
	emuID int64
}

// bot registers a new emulated bot for tenantID.
func (e *env) bot(tenantID uuid.UUID, dailyLimit int) testBot {
	e.t.Helper()
	info := e.emu.CreateBot("", "")
	b, err := e.tg.RegisterBot(e.ctx, tenantID, telegram.NewBot{Name: info.Username, Token: info.Token, DailyLimit: dailyLimit})
	if err != nil {
		e.t.Fatalf("RegisterBot: %v", err)
	}
	return testBot{Bot: b, emuID: info.ID}
}

// contact makes a new Telegram user /start the bot (so the emulator knows the chat) and
// stores the contact.
func (e *env) contact(b testBot) contacts.Contact {
	e.t.Helper()
	uid := 100_000 + e.userSeq.Add(1)
	if _, err := e.emu.SendCommand(b.emuID, tgemu.User{ID: uid, FirstName: "U" + strconv.FormatInt(uid, 10)}, "/start"); err != nil {
		e.t.Fatal(err)
	}
	c, err := e.contacts.UpsertFromTelegram(e.ctx, e.db, b.TenantID, b.ID,
		contacts.Identity{ChatID: uid, UserID: uid, FirstName: "U"}, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *env) contactsOf(b testBot, n int) []contacts.Contact {
	cs := make([]contacts.Contact, n)
	for i := range cs {
		cs[i] = e.contact(b)
	}
	return cs
}

func ids(cs []contacts.Contact) []uuid.UUID {
	out := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// create creates a broadcast of b to cs and fails the test on error.
func (e *env) create(b testBot, cs []contacts.Contact) Broadcast {
	e.t.Helper()
	botID := b.ID
	bc, _, err := e.svc.Create(e.ctx, b.TenantID, NewBroadcast{
		Name: "promo", Platform: "TELEGRAM", MessageText: "Hello <b>there</b>", ParseMode: "HTML",
		Recipients: ids(cs), BotID: &botID,
	})
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return bc
}

func (e *env) run(id uuid.UUID) error {
	e.t.Helper()
	task, err := NewRunTask(id)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.svc.HandleRun(e.ctx, task)
}

// runToEnd runs the broadcast until HandleRun returns nil; with skipWaits it moves every
// waiting recipient's due_at to now between runs instead of sleeping.
func (e *env) runToEnd(id uuid.UUID, skipWaits bool, maxRuns int) int {
	e.t.Helper()
	for i := 1; i <= maxRuns; i++ {
		err := e.run(id)
		if err == nil {
			return i
		}
		var ra *telegram.RetryAfterError
		if !errors.As(err, &ra) {
			e.t.Fatalf("HandleRun #%d: %v", i, err)
		}
		if skipWaits {
			if _, err := e.db.NewRaw("UPDATE broadcast_recipients SET due_at = now() WHERE broadcast_id = ? AND status = 'queued'", id).Exec(e.ctx); err != nil {
				e.t.Fatal(err)
			}
		} else {
			if ra.RetryAfter > 10*time.Second {
				e.t.Fatalf("HandleRun #%d asks to wait %s", i, ra.RetryAfter)
			}
			time.Sleep(ra.RetryAfter)
		}
	}
	e.t.Fatalf("broadcast not finished after %d runs", maxRuns)
	return 0
}

func (e *env) get(b testBot, id uuid.UUID) (Broadcast, Counts) {
	e.t.Helper()
	bc, c, err := e.svc.Get(e.ctx, b.TenantID, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return bc, c
}

func (e *env) recipients(id uuid.UUID) []Recipient {
	e.t.Helper()
	var rs []Recipient
	if err := e.db.NewSelect().Model(&rs).Where("broadcast_id = ?", id).Order("id").Scan(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	return rs
}

func (e *env) recipientOf(id uuid.UUID, chatID int64) Recipient {
	e.t.Helper()
	for _, r := range e.recipients(id) {
		if r.ChatID == chatID {
			return r
		}
	}
	e.t.Fatalf("no recipient for chat %d", chatID)
	return Recipient{}
}

func (e *env) sendCalls(b testBot, chatID int64) int {
	n := 0
	for _, c := range e.emu.Calls(b.emuID, "sendMessage") {
		if c.Params["chat_id"] == strconv.FormatInt(chatID, 10) {
			n++
		}
	}
	return n
}

// code returns the apperr code and kind of err ("" if it is not an *apperr.Error).
func code(err error) (string, apperr.Kind) {
	var ae *apperr.Error
	if errors.As(err, &ae) {
		return ae.Code, ae.Kind
	}
	return "", apperr.KindInternal
}

func TestService_Create(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tenantA, tenantB := e.tenant("a"), e.tenant("b")
	bot1, bot2 := e.bot(tenantA, 0), e.bot(tenantA, 0)
	botB := e.bot(tenantB, 0)
	c1, c2, blocked := e.contact(bot1), e.contact(bot1), e.contact(bot1)
	if _, err := e.contacts.SetBlocked(e.ctx, e.db, bot1.ID, blocked.TelegramChatID, true); err != nil {
		t.Fatal(err)
	}
	ofBot2 := e.contact(bot2)
	foreign := e.contact(botB)
	stranger := uuid.New()
	many := make([]uuid.UUID, MaxRecipients+1)
	for i := range many {
		many[i] = uuid.New()
	}

	valid := func(mod func(*NewBroadcast)) NewBroadcast {
		id := bot1.ID
		nb := NewBroadcast{Name: "Spring sale", Platform: "TELEGRAM", MessageText: "Hi!", Recipients: []uuid.UUID{c1.ID}, BotID: &id}
		if mod != nil {
			mod(&nb)
		}
		return nb
	}
	otherTenantsBot := botB.ID
	tests := []struct {
		name     string
		nb       NewBroadcast
		wantCode string
		wantKind apperr.Kind
		wantIDs  []uuid.UUID // Details contact_ids
	}{
		{"422 empty name", valid(func(nb *NewBroadcast) { nb.Name = "  " }), "invalid_field", apperr.KindInvalid, nil},
		{"422 long name", valid(func(nb *NewBroadcast) { nb.Name = strings.Repeat("é", 201) }), "invalid_field", apperr.KindInvalid, nil},
		{"422 platform", valid(func(nb *NewBroadcast) { nb.Platform = "WHATSAPP" }), "invalid_field", apperr.KindInvalid, nil},
		{"422 no platform", valid(func(nb *NewBroadcast) { nb.Platform = "" }), "invalid_field", apperr.KindInvalid, nil},
		{"422 NUL in name", valid(func(nb *NewBroadcast) { nb.Name = "a\x00" }), "invalid_field", apperr.KindInvalid, nil},
		{"422 NUL in text", valid(func(nb *NewBroadcast) { nb.MessageText = "a\x00" }), "invalid_field", apperr.KindInvalid, nil},
		{"422 empty text", valid(func(nb *NewBroadcast) { nb.MessageText = "" }), "invalid_field", apperr.KindInvalid, nil},
		{"422 long text", valid(func(nb *NewBroadcast) { nb.MessageText = strings.Repeat("я", 4097) }), "invalid_field", apperr.KindInvalid, nil},
		{"422 parse mode", valid(func(nb *NewBroadcast) { nb.ParseMode = "BBCode" }), "invalid_field", apperr.KindInvalid, nil},
		{"422 no recipients", valid(func(nb *NewBroadcast) { nb.Recipients = nil }), "invalid_field", apperr.KindInvalid, nil},
		{"422 too many recipients", valid(func(nb *NewBroadcast) { nb.Recipients = many }), "invalid_field", apperr.KindInvalid, nil},
		{"404 unknown recipients", valid(func(nb *NewBroadcast) { nb.Recipients = []uuid.UUID{c1.ID, stranger, foreign.ID, stranger} }),
			"unknown_recipients", apperr.KindNotFound, []uuid.UUID{stranger, foreign.ID}},
		{"422 recipients of another bot", valid(func(nb *NewBroadcast) { nb.Recipients = []uuid.UUID{c1.ID, ofBot2.ID} }),
			"recipients_not_of_bot", apperr.KindInvalid, []uuid.UUID{ofBot2.ID}},
		{"404 another tenant's bot", valid(func(nb *NewBroadcast) { nb.BotID = &otherTenantsBot }), "bot_not_found", apperr.KindNotFound, nil},
		{"422 bot required", valid(func(nb *NewBroadcast) { nb.BotID = nil }), "invalid_field", apperr.KindInvalid, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.svc.Create(e.ctx, tenantA, tc.nb)
			gotCode, gotKind := code(err)
			if gotCode != tc.wantCode || gotKind != tc.wantKind {
				t.Fatalf("err = %v (code %q kind %d), want code %q kind %d", err, gotCode, gotKind, tc.wantCode, tc.wantKind)
			}
			if tc.wantIDs != nil {
				var ae *apperr.Error
				errors.As(err, &ae)
				d, _ := ae.Details.(map[string]any)
				got, _ := d["contact_ids"].([]string)
				var want []string
				for _, id := range tc.wantIDs {
					want = append(want, id.String())
					if !strings.Contains(ae.Message, id.String()) {
						t.Errorf("message %q does not name %s", ae.Message, id)
					}
				}
				if !slices.Equal(got, want) {
					t.Errorf("contact_ids = %v, want %v", got, want)
				}
			}
		})
	}
	if n, _ := e.db.NewSelect().Model((*Broadcast)(nil)).Count(e.ctx); n != 0 {
		t.Fatalf("invalid requests stored %d broadcasts", n)
	}

	t.Run("202 duplicates collapsed, blocked contact skipped, run enqueued", func(t *testing.T) {
		id := bot1.ID
		bc, counts, err := e.svc.Create(e.ctx, tenantA, NewBroadcast{
			Name: " Spring sale ", Platform: "TELEGRAM", MessageText: "Hi <b>all</b>", ParseMode: "HTML",
			Recipients: []uuid.UUID{c1.ID, c2.ID, c1.ID, blocked.ID, c2.ID}, BotID: &id,
		})
		if err != nil {
			t.Fatal(err)
		}
		if bc.Status != StatusScheduled || bc.Total != 3 || bc.Name != "Spring sale" || bc.BotID != bot1.ID || bc.TenantID != tenantA {
			t.Errorf("broadcast = %+v", bc)
		}
		if want := (Counts{Total: 3, Pending: 2, Skipped: 1}); counts != want {
			t.Errorf("counts = %+v, want %+v", counts, want)
		}
		r := e.recipientOf(bc.ID, blocked.TelegramChatID)
		if r.Status != RecipientSkipped || r.Error != SkipBlocked || r.Attempts != 0 {
			t.Errorf("blocked recipient = %s %q", r.Status, r.Error)
		}
		info, err := asynq.NewInspectorFromRedisClient(e.rdb).GetTaskInfo(QueueBroadcast, TypeRun+":"+bc.ID.String())
		if err != nil {
			t.Fatalf("run task not enqueued: %v", err)
		}
		if info.Type != TypeRun || info.MaxRetry != 25 || info.Timeout != 10*time.Minute {
			t.Errorf("task = %s max_retry %d timeout %s", info.Type, info.MaxRetry, info.Timeout)
		}
	})

	t.Run("202 the only bot by default", func(t *testing.T) {
		tc := e.tenant("c")
		b := e.bot(tc, 0)
		c := e.contact(b)
		bc, _, err := e.svc.Create(e.ctx, tc, NewBroadcast{Name: "x", Platform: "TELEGRAM", MessageText: "y", Recipients: []uuid.UUID{c.ID}})
		if err != nil {
			t.Fatal(err)
		}
		if bc.BotID != b.ID || bc.Total != 1 {
			t.Errorf("broadcast = %+v", bc)
		}
	})
}

func TestService_GetList(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tenantA, tenantB := e.tenant("a"), e.tenant("b")
	botA, botB := e.bot(tenantA, 0), e.bot(tenantB, 0)
	cs := e.contactsOf(botA, 2)
	first := e.create(botA, cs)
	second := e.create(botA, cs[:1])
	other := e.create(botB, e.contactsOf(botB, 1))

	t.Run("200 own", func(t *testing.T) {
		bc, c, err := e.svc.Get(e.ctx, tenantA, first.ID)
		if err != nil || bc.ID != first.ID || c.Total != 2 || c.Pending != 2 {
			t.Fatalf("Get = %+v %+v %v", bc, c, err)
		}
	})
	t.Run("404 another tenant's", func(t *testing.T) {
		if _, _, err := e.svc.Get(e.ctx, tenantA, other.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		if _, _, err := e.svc.Cancel(e.ctx, tenantA, other.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("Cancel err = %v, want ErrNotFound", err)
		}
	})
	t.Run("200 list pages", func(t *testing.T) {
		bs, counts, next, err := e.svc.List(e.ctx, tenantA, Filter{Limit: 1})
		if err != nil || len(bs) != 1 || bs[0].ID != second.ID || next == "" || counts[0].Total != 1 {
			t.Fatalf("page 1 = %v %v %q %v", bs, counts, next, err)
		}
		bs, counts, next, err = e.svc.List(e.ctx, tenantA, Filter{Limit: 1, Cursor: next})
		if err != nil || len(bs) != 1 || bs[0].ID != first.ID || next != "" || counts[0].Total != 2 {
			t.Fatalf("page 2 = %v %v %q %v", bs, counts, next, err)
		}
		bs, _, _, err = e.svc.List(e.ctx, tenantB, Filter{})
		if err != nil || len(bs) != 1 || bs[0].ID != other.ID {
			t.Fatalf("tenant B list = %v %v", bs, err)
		}
	})
	t.Run("422 bad cursor and limit", func(t *testing.T) {
		if _, _, _, err := e.svc.List(e.ctx, tenantA, Filter{Cursor: "nope"}); code1(err) != "invalid_cursor" {
			t.Errorf("err = %v", err)
		}
		if _, _, _, err := e.svc.List(e.ctx, tenantA, Filter{Limit: 201}); code1(err) != "invalid_field" {
			t.Errorf("err = %v", err)
		}
	})
}

func code1(err error) string { c, _ := code(err); return c }

func TestService_HandleRun(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 3)
	bc := e.create(b, cs)

	if err := e.run(bc.ID); err != nil {
		t.Fatalf("HandleRun: %v", err)
	}
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || got.StartedAt.IsZero() || got.CompletedAt.IsZero() {
		t.Errorf("broadcast = %s started %v completed %v", got.Status, got.StartedAt, got.CompletedAt)
	}
	if want := (Counts{Total: 3, Sent: 3}); counts != want {
		t.Errorf("counts = %+v, want %+v", counts, want)
	}
	for _, c := range cs {
		sent := e.emu.SentTo(b.emuID, c.TelegramChatID)
		if len(sent) != 1 || sent[0].Text != "Hello <b>there</b>" || sent[0].ParseMode != "HTML" {
			t.Errorf("chat %d got %+v, want one copy", c.TelegramChatID, sent)
			continue
		}
		r := e.recipientOf(bc.ID, c.TelegramChatID)
		if r.Status != RecipientSent || r.TelegramMessageID == nil || *r.TelegramMessageID != sent[0].MessageID || r.SentAt.IsZero() {
			t.Errorf("recipient = %+v", r)
		}
	}

	// A second run (a duplicate task, a sweep) sends nothing.
	if err := e.run(bc.ID); err != nil {
		t.Fatalf("second HandleRun: %v", err)
	}
	if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 3 {
		t.Errorf("sendMessage calls = %d, want 3", n)
	}
	if v := e.emu.Violations(b.emuID); v.PerBot != 0 || v.PerChat != 0 {
		t.Errorf("violations = %+v", v)
	}
}

func TestService_HandleRun_DailyLimit(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 2)
	bc := e.create(b, e.contactsOf(b, 3))

	err := e.run(bc.ID)
	var ra *telegram.RetryAfterError
	if !errors.As(err, &ra) {
		t.Fatalf("HandleRun = %v, want *telegram.RetryAfterError", err)
	}
	midnight := telegram.NextUTCMidnight(time.Now())
	if until := time.Until(midnight); ra.RetryAfter < until-time.Minute || ra.RetryAfter > until+time.Minute {
		t.Errorf("RetryAfter = %s, want about %s (next UTC midnight)", ra.RetryAfter, until)
	}
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusRunning {
		t.Errorf("status = %s, want running", got.Status)
	}
	if want := (Counts{Total: 3, Sent: 2, Deferred: 1}); counts != want {
		t.Errorf("counts = %+v, want %+v", counts, want)
	}
	for _, r := range e.recipients(bc.ID) {
		if r.Status == RecipientDeferred && !r.DueAt.Equal(midnight) {
			t.Errorf("deferred due_at = %s, want %s", r.DueAt.UTC(), midnight)
		}
		// A send counts an attempt (recorded before calling Telegram); a deferral does not.
		if want := map[string]int{RecipientSent: 1, RecipientDeferred: 0}[r.Status]; r.Attempts != want {
			t.Errorf("%s recipient: attempts = %d, want %d", r.Status, r.Attempts, want)
		}
	}
	if n := len(e.emu.Sent(b.emuID)); n != 2 {
		t.Errorf("sent = %d, want 2", n)
	}
	// Running again before midnight sends nothing and keeps waiting.
	if err := e.run(bc.ID); !errors.As(err, &ra) {
		t.Fatalf("second HandleRun = %v", err)
	}
	if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 2 {
		t.Errorf("sendMessage calls = %d, want 2", n)
	}
}

func TestService_HandleRun_TooManyRequests(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 3)
	hit := cs[1].TelegramChatID
	e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultTooManyRequests, ChatID: hit, RetryAfter: 1, Times: 1})
	bc := e.create(b, cs)

	err := e.run(bc.ID)
	var ra *telegram.RetryAfterError
	if !errors.As(err, &ra) {
		t.Fatalf("HandleRun = %v, want *telegram.RetryAfterError", err)
	}
	if ra.RetryAfter < 500*time.Millisecond || ra.RetryAfter > 2*time.Second {
		t.Errorf("RetryAfter = %s, want about 1s", ra.RetryAfter)
	}
	r := e.recipientOf(bc.ID, hit)
	if r.Status != RecipientQueued || r.Attempts != 0 || time.Until(r.DueAt) < 0 {
		t.Errorf("after 429: status %s attempts %d due in %s", r.Status, r.Attempts, time.Until(r.DueAt))
	}
	e.runToEnd(bc.ID, false, 10)
	r = e.recipientOf(bc.ID, hit)
	if r.Status != RecipientSent || r.Attempts != 1 { // the 429 gave its attempt back
		t.Errorf("finally: status %s attempts %d, want sent with 1", r.Status, r.Attempts)
	}
	if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 3, Sent: 3}) {
		t.Errorf("counts = %+v", counts)
	}
	if n := len(e.emu.SentTo(b.emuID, hit)); n != 1 {
		t.Errorf("chat got %d copies", n)
	}
	if n := e.sendCalls(b, hit); n != 2 {
		t.Errorf("sendMessage calls to the chat = %d, want 2 (429, then sent)", n)
	}
}

func TestService_HandleRun_Blocked(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 2)
	hit := cs[0]
	e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultBlocked, ChatID: hit.TelegramChatID})
	bc := e.create(b, cs)

	if err := e.run(bc.ID); err != nil {
		t.Fatalf("HandleRun: %v", err)
	}
	r := e.recipientOf(bc.ID, hit.TelegramChatID)
	if r.Status != RecipientFailed || r.Attempts != 1 || !strings.Contains(r.Error, "blocked") {
		t.Errorf("recipient: status %s attempts %d error %q", r.Status, r.Attempts, r.Error)
	}
	c, err := e.contacts.Get(e.ctx, tn, hit.ID)
	if err != nil || !c.Blocked {
		t.Errorf("contact blocked = %v (%v)", c.Blocked, err)
	}
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts != (Counts{Total: 2, Sent: 1, Failed: 1}) {
		t.Errorf("broadcast %s counts %+v", got.Status, counts)
	}
	if err := e.run(bc.ID); err != nil {
		t.Fatal(err)
	}
	if n := e.sendCalls(b, hit.TelegramChatID); n != 1 {
		t.Errorf("sendMessage calls to the blocked chat = %d, want 1", n)
	}
}

func TestService_HandleRun_ServerErrors(t *testing.T) {
	const maxRetries = 3
	e := newEnv(t, envOptions{maxRetries: maxRetries})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 2)
	hit := cs[1].TelegramChatID
	e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultServerError, ChatID: hit})
	bc := e.create(b, cs)

	err := e.run(bc.ID)
	var ra *telegram.RetryAfterError
	if !errors.As(err, &ra) {
		t.Fatalf("HandleRun = %v, want *telegram.RetryAfterError", err)
	}
	if r := e.recipientOf(bc.ID, hit); r.Status != RecipientQueued || r.Attempts != 1 || time.Until(r.DueAt) < 500*time.Millisecond {
		t.Errorf("after one 5xx: status %s attempts %d due in %s, want queued, 1, ~1s", r.Status, r.Attempts, time.Until(r.DueAt))
	}
	runs := e.runToEnd(bc.ID, true, 20)
	if n := e.sendCalls(b, hit); n != maxRetries+1 {
		t.Errorf("sendMessage calls to the chat = %d, want %d", n, maxRetries+1)
	}
	r := e.recipientOf(bc.ID, hit)
	if r.Status != RecipientFailed || r.Attempts != maxRetries+1 || r.Error == "" {
		t.Errorf("recipient: status %s attempts %d error %q", r.Status, r.Attempts, r.Error)
	}
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts != (Counts{Total: 2, Sent: 1, Failed: 1}) {
		t.Errorf("broadcast %s counts %+v after %d more runs", got.Status, counts, runs)
	}
}

func TestService_Cancel(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 3)

	t.Run("200 queued", func(t *testing.T) {
		bc := e.create(b, cs)
		got, counts, err := e.svc.Cancel(e.ctx, tn, bc.ID)
		if err != nil || got.Status != StatusCancelled || counts != (Counts{Total: 3, Cancelled: 3}) {
			t.Fatalf("Cancel = %s %+v %v", got.Status, counts, err)
		}
		if err := e.run(bc.ID); err != nil {
			t.Fatal(err)
		}
		if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 0 {
			t.Errorf("a cancelled broadcast sent %d messages", n)
		}
		if got, _, err := e.svc.Cancel(e.ctx, tn, bc.ID); err != nil || got.Status != StatusCancelled {
			t.Errorf("second Cancel = %s %v", got.Status, err)
		}
	})
	t.Run("409 completed", func(t *testing.T) {
		bc := e.create(b, cs)
		if err := e.run(bc.ID); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.Cancel(e.ctx, tn, bc.ID); !errors.Is(err, ErrNotCancellable) || apperr.KindOf(err) != apperr.KindConflict {
			t.Fatalf("Cancel = %v, want 409", err)
		}
	})
	t.Run("200 while running", func(t *testing.T) {
		before := len(e.emu.Sent(b.emuID))
		many := e.contactsOf(b, 6)
		for _, c := range many {
			e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultLatency, ChatID: c.TelegramChatID, Latency: 200 * time.Millisecond})
		}
		bc := e.create(b, many)
		e.svc.chunkSize, e.svc.senders = 1, 1
		defer func() { e.svc.chunkSize, e.svc.senders = ChunkSize, 16 }()
		errc := make(chan error, 1)
		go func() { errc <- e.run(bc.ID) }()
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		if _, err := e.emu.WaitSent(ctx, b.emuID, before+1); err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.svc.Cancel(e.ctx, tn, bc.ID); err != nil {
			t.Fatal(err)
		}
		if err := <-errc; err != nil {
			t.Fatalf("HandleRun = %v", err)
		}
		got, counts := e.get(b, bc.ID)
		if got.Status != StatusCancelled || counts.Sent < 1 || counts.Cancelled < 1 || counts.Sent+counts.Cancelled != 6 {
			t.Errorf("broadcast %s counts %+v", got.Status, counts)
		}
		if n := len(e.emu.Sent(b.emuID)) - before; n != counts.Sent {
			t.Errorf("emulator sent %d, counts say %d", n, counts.Sent)
		}
	})
}

func TestService_HandleRun_BotDeleted(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	bc := e.create(b, e.contactsOf(b, 2))
	if err := e.tg.DeleteBot(e.ctx, tn, b.ID); err != nil {
		t.Fatal(err)
	}
	if err := e.run(bc.ID); err != nil {
		t.Fatalf("HandleRun = %v", err)
	}
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusFailed || got.Error != "bot deleted" || counts != (Counts{Total: 2, Failed: 2}) {
		t.Errorf("broadcast %s %q counts %+v", got.Status, got.Error, counts)
	}
	for _, r := range e.recipients(bc.ID) {
		if r.Error != "bot deleted" {
			t.Errorf("recipient error %q", r.Error)
		}
	}
}

func TestService_HandleSweep(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	bc := e.create(b, e.contactsOf(b, 2))
	ins := asynq.NewInspectorFromRedisClient(e.rdb)
	taskID := TypeRun + ":" + bc.ID.String()
	// The run task was lost (e.g. Redis flushed) and a worker died holding a claim.
	if err := ins.DeleteTask(QueueBroadcast, taskID); err != nil {
		t.Fatal(err)
	}
	rs := e.recipients(bc.ID)
	if _, err := e.db.NewRaw("UPDATE broadcasts SET status = 'running' WHERE id = ?", bc.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.NewRaw("UPDATE broadcast_recipients SET status = 'sending', claimed_at = now() - interval '10 minutes' WHERE id = ?", rs[0].ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.NewRaw("UPDATE broadcast_recipients SET status = 'sending', claimed_at = now() - interval '5 seconds', due_at = now() + interval '1 hour' WHERE id = ?", rs[1].ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleSweep(e.ctx, NewSweepTask()); err != nil {
		t.Fatal(err)
	}
	got := e.recipients(bc.ID)
	if got[0].Status != RecipientQueued || !got[0].ClaimedAt.IsZero() {
		t.Errorf("stuck recipient: %s claimed %v, want queued", got[0].Status, got[0].ClaimedAt)
	}
	if got[1].Status != RecipientSending {
		t.Errorf("recently claimed recipient: %s, want sending", got[1].Status)
	}
	if _, err := ins.GetTaskInfo(QueueBroadcast, taskID); err != nil {
		t.Fatalf("sweep did not enqueue the run: %v", err)
	}
	// A second sweep finds the task scheduled (TaskID conflict) and is fine with it.
	if err := e.svc.HandleSweep(e.ctx, NewSweepTask()); err != nil {
		t.Fatal(err)
	}
}

// TestService_HandleSweep_NothingStuck checks that the sweep leaves no broadcast behind:
// it pages through every runnable broadcast (more than one page), replaces a run task that
// asynq archived after its retries (which would otherwise block the TaskID), and starts a
// new run at once for a broadcast whose recipients it took back from a dead worker while
// that worker's task still looks active.
func TestService_HandleSweep_NothingStuck(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	e.svc.sweepPage = 2
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 1)
	ins := asynq.NewInspectorFromRedisClient(e.rdb)
	var bcs []Broadcast
	for range 5 {
		bc := e.create(b, cs)
		bcs = append(bcs, bc)
		taskID := runTaskID(bc.ID)
		if err := ins.ArchiveTask(QueueBroadcast, taskID); err != nil {
			t.Fatalf("archive: %v", err)
		}
	}
	if err := e.svc.HandleSweep(e.ctx, NewSweepTask()); err != nil {
		t.Fatal(err)
	}
	for i, bc := range bcs {
		info, err := ins.GetTaskInfo(QueueBroadcast, runTaskID(bc.ID))
		if err != nil || info.State == asynq.TaskStateArchived {
			t.Errorf("broadcast %d: run task %v (%v), want a live task replacing the archived one", i, info, err)
		}
	}

	// A dead worker's claim: the rows come back and a rescue run is enqueued at once.
	bc := bcs[0]
	if _, err := e.db.NewRaw("UPDATE broadcasts SET status = 'running' WHERE id = ?", bc.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.NewRaw("UPDATE broadcast_recipients SET status = 'sending', attempts = 1, claimed_at = now() - interval '10 minutes' WHERE broadcast_id = ?", bc.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.HandleSweep(e.ctx, NewSweepTask()); err != nil {
		t.Fatal(err)
	}
	r := e.recipients(bc.ID)[0]
	if r.Status != RecipientQueued || r.Attempts != 1 || r.Error != errInterrupted {
		t.Errorf("released recipient: %s attempts %d error %q, want queued with its attempt and %q", r.Status, r.Attempts, r.Error, errInterrupted)
	}
	pending, err := ins.ListPendingTasks(QueueBroadcast)
	if err != nil {
		t.Fatal(err)
	}
	rescue := 0
	for _, ti := range pending {
		if strings.HasPrefix(ti.ID, runTaskID(bc.ID)+":rescue:") {
			rescue++
		}
	}
	if rescue != 1 {
		t.Errorf("rescue runs enqueued = %d, want 1", rescue)
	}
}

// TestService_Create_LargeAudience checks a broadcast larger than SyncRecipients: Create
// answers with every recipient pending before any row exists, the first run writes the rows
// (a contact blocked meanwhile is skipped, not sent) and sends them all once; a cancelled one
// is never written nor sent.
func TestService_Create_LargeAudience(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	e.svc.syncRecipients = 2
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 5)
	bc := e.create(b, cs)
	got, counts := e.get(b, bc.ID)
	if got.Materialized || counts != (Counts{Total: 5, Pending: 5}) || len(e.recipients(bc.ID)) != 0 {
		t.Fatalf("after Create: materialized %v counts %+v rows %d, want pending audience", got.Materialized, counts, len(e.recipients(bc.ID)))
	}
	if _, err := e.contacts.SetBlocked(e.ctx, e.db, b.ID, cs[0].TelegramChatID, true); err != nil {
		t.Fatal(err)
	}
	e.runToEnd(bc.ID, false, 10)
	got, counts = e.get(b, bc.ID)
	if !got.Materialized || got.Status != StatusCompleted || counts != (Counts{Total: 5, Sent: 4, Skipped: 1}) {
		t.Fatalf("after the run: %s materialized %v counts %+v", got.Status, got.Materialized, counts)
	}
	for _, c := range cs[1:] {
		if n := len(e.emu.SentTo(b.emuID, c.TelegramChatID)); n != 1 {
			t.Errorf("chat %d got %d copies", c.TelegramChatID, n)
		}
	}
	if n := len(e.emu.SentTo(b.emuID, cs[0].TelegramChatID)); n != 0 {
		t.Errorf("blocked chat got %d copies", n)
	}

	bc2 := e.create(b, cs[1:])
	if _, c, err := e.svc.Cancel(e.ctx, tn, bc2.ID); err != nil || c != (Counts{Total: 4, Cancelled: 4}) {
		t.Fatalf("cancel before the run: %+v %v", c, err)
	}
	if err := e.run(bc2.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(e.recipients(bc2.ID)); n != 0 {
		t.Errorf("a cancelled audience got %d recipient rows", n)
	}
}

// TestService_ReplyDuringBroadcast sends a reply (telegram.Send, interactive) while three
// broadcasts of the same bot keep it at Telegram's 30/s: the reply must not queue behind
// them (answered well within 2 s), and the emulator, enforcing Telegram's limits, must count
// no violation.
func TestService_ReplyDuringBroadcast(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3, tgCfg: func(c *telegram.Config) {
		c.BotRate = config.Rate{N: 30, Per: time.Second}
		c.ChatInterval = time.Second
	}})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	var wg sync.WaitGroup
	for range 3 {
		bc := e.create(b, e.contactsOf(b, 40))
		wg.Go(func() { e.runToEnd(bc.ID, false, 20) })
	}
	reply := e.contact(b)
	time.Sleep(time.Second) // the bot's window is full of broadcast sends now
	start := time.Now()
	out := e.tg.Send(e.ctx, b.Bot, reply.TelegramChatID, telegram.Outgoing{Text: "Hi! Welcome."})
	took := time.Since(start)
	wg.Wait()
	if out.Status != telegram.OutcomeSent {
		t.Fatalf("reply: %+v", out)
	}
	if took > 500*time.Millisecond {
		t.Errorf("the reply took %s during the broadcasts, want well under 2 s", took)
	}
	if v := e.emu.Violations(b.emuID); v != (tgemu.Violations{}) {
		t.Errorf("violations %+v", v)
	}
	t.Logf("reply during 3 broadcasts at the bot's cap: %s", took)
}

// TestService_WriteResultsCancelled checks the one-statement result write: in a cancelled
// broadcast a recipient that would wait again becomes cancelled, a sent one stays sent, and
// a row that is no longer "sending" (taken back by the sweep) is left alone.
func TestService_WriteResultsCancelled(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	bc := e.create(b, e.contactsOf(b, 3))
	rs := e.recipients(bc.ID)
	if _, err := e.db.NewRaw("UPDATE broadcast_recipients SET status = 'sending' WHERE id IN (?, ?)", rs[0].ID, rs[1].ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.NewRaw("UPDATE broadcasts SET status = 'cancelled' WHERE id = ?", bc.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	mid := int64(9)
	err := e.svc.writeResults(e.ctx, bc.ID, []result{
		{ID: rs[0].ID, Status: RecipientQueued, Attempts: 0, ChatID: rs[0].ChatID, KeepError: true},
		{ID: rs[1].ID, Status: RecipientSent, Attempts: 1, ChatID: rs[1].ChatID, MessageID: &mid, Sent: true},
		{ID: rs[2].ID, Status: RecipientSent, Attempts: 1, ChatID: rs[2].ChatID, MessageID: &mid, Sent: true},
	}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got := e.recipients(bc.ID)
	if got[0].Status != RecipientCancelled || got[1].Status != RecipientSent || got[1].SentAt.IsZero() || got[2].Status != RecipientQueued {
		t.Errorf("statuses %s %s %s, want cancelled, sent, queued (not claimed: untouched)", got[0].Status, got[1].Status, got[2].Status)
	}
}

func TestNewRunTask(t *testing.T) {
	id := uuid.New()
	task, err := NewRunTask(id)
	if err != nil {
		t.Fatal(err)
	}
	if task.Type() != TypeRun || !strings.Contains(string(task.Payload()), id.String()) {
		t.Errorf("task %s %s", task.Type(), task.Payload())
	}
	s := New(Deps{})
	if err := s.HandleRun(context.Background(), asynq.NewTask(TypeRun, []byte("{"))); !errors.Is(err, asynq.SkipRetry) {
		t.Errorf("bad payload: %v, want SkipRetry", err)
	}
}

func TestBackoff(t *testing.T) {
	for n, want := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 9: 256 * time.Second, 10: 5 * time.Minute, 60: 5 * time.Minute} {
		if got := backoff(n); got != want {
			t.Errorf("backoff(%d) = %s, want %s", n, got, want)
		}
	}
}

// BenchmarkBroadcast sends broadcasts of benchRecipients contacts through HandleRun against
// tgemu with Telegram's limits raised, and reports recipients/s (Create + runs until
// completed).
func BenchmarkBroadcast(b *testing.B) {
	const benchRecipients = 2000
	e := newEnv(b, envOptions{
		maxRetries: 3,
		emu:        tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1},
		tgCfg: func(c *telegram.Config) {
			c.GlobalRate = config.Rate{N: 1_000_000, Per: time.Second}
			c.BotRate = config.Rate{N: 1_000_000, Per: time.Second}
			c.ChatInterval = 0
		},
	})
	tn := e.tenant("bench")
	bot := e.bot(tn, 0)
	cs := e.contactsOf(bot, benchRecipients)
	b.ResetTimer()
	start := time.Now()
	runs, iters := 0, 0
	for b.Loop() {
		bc := e.create(bot, cs)
		runs += e.runToEnd(bc.ID, false, 100)
		iters++
	}
	elapsed := time.Since(start)
	if n := len(e.emu.Sent(bot.emuID)); n != benchRecipients*iters {
		b.Fatalf("sent %d, want %d", n, benchRecipients*iters)
	}
	b.ReportMetric(float64(benchRecipients*iters)/elapsed.Seconds(), "recipients/s")
	b.ReportMetric(float64(runs)/float64(iters), "runs/op")
}

// BenchmarkBroadcastManyBots runs one broadcast per bot at once (each run in its own
// goroutine, as worker slots would), with Telegram's limits on in the emulator (30/s per bot
// in sliding 1-second windows, 1/s per chat) and the platform's defaults (30/s per bot,
// 1 s per chat). It reports the total rate, the rate per bot and the emulator's violations.
//
// BENCH_BOTS and BENCH_PER_BOT change the shape (default 20 x 150); BENCH_UNLIMITED=1
// raises Telegram's limits in the emulator and the platform.
func BenchmarkBroadcastManyBots(b *testing.B) {
	bots, perBot := envInt("BENCH_BOTS", 20), envInt("BENCH_PER_BOT", 150)
	unlimited := os.Getenv("BENCH_UNLIMITED") != "" // Telegram's limits raised (paid broadcasts)
	e := newEnv(b, envOptions{
		maxRetries: 3,
		emu: func() tgemu.Options {
			if unlimited {
				return tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1}
			}
			return tgemu.Options{}
		}(),
		tgCfg: func(c *telegram.Config) {
			c.GlobalRate = config.Rate{N: 1_000_000, Per: time.Second}
			c.BotRate = config.Rate{N: 30, Per: time.Second}
			c.ChatInterval = time.Second
			if unlimited {
				c.BotRate = config.Rate{N: 1_000_000, Per: time.Second}
			}
		},
	})
	tn := e.tenant("bench")
	type target struct {
		bot testBot
		cs  []contacts.Contact
	}
	targets := make([]target, bots)
	for i := range targets {
		bt := e.bot(tn, 0)
		targets[i] = target{bt, e.contactsOf(bt, perBot)}
	}
	b.ResetTimer()
	var elapsed time.Duration
	for b.Loop() {
		start := time.Now()
		var wg sync.WaitGroup
		for _, tg := range targets {
			bc := e.create(tg.bot, tg.cs)
			wg.Go(func() { e.runToEnd(bc.ID, false, 100) })
		}
		wg.Wait()
		elapsed += time.Since(start)
	}
	total, viol := 0, 0
	for _, tg := range targets {
		total += len(e.emu.Sent(tg.bot.emuID))
		v := e.emu.Violations(tg.bot.emuID)
		viol += v.PerBot + v.PerChat
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(total)/elapsed.Seconds()/float64(bots), "msgs/s/bot")
	b.ReportMetric(float64(viol), "violations")
}

// envInt returns the integer in environment variable name, or def.
func envInt(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}
