package telegram_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

// botEnv is a telegram.Service on a fresh database, a flushed Redis database and a tgemu
// emulator, with a webhook server (hook) that feeds deliveries to Service.Ingest.
type botEnv struct {
	db      *bun.DB
	rdb     *redis.Client
	queue   *asynq.Client
	insp    *asynq.Inspector
	emu     *tgemu.Server
	hook    *httptest.Server
	svc     *telegram.Service
	cfg     telegram.Config
	tenants *tenant.Service
}

var testKey = []byte("0123456789abcdef0123456789abcdef")

func newBotEnv(t *testing.T) *botEnv {
	t.Helper()
	e := &botEnv{db: testenv.DB(t), rdb: testenv.Redis(t)}
	e.queue = asynq.NewClientFromRedisClient(e.rdb)
	e.insp = asynq.NewInspectorFromRedisClient(e.rdb)
	e.emu = tgemu.NewTest(t, tgemu.Options{RetryBackoff: 50 * time.Millisecond, MaxRetryBackoff: 200 * time.Millisecond})
	e.hook = httptest.NewServer(http.HandlerFunc(e.serveWebhook))
	t.Cleanup(e.hook.Close)
	e.cfg = telegram.Config{
		APIURL: e.emu.URL(), PublicBaseURL: e.hook.URL + "/", RequestTimeout: 5 * time.Second, MaxRetries: 3,
		GlobalRate: config.Rate{N: 1000, Per: time.Second}, BotRate: config.Rate{N: 25, Per: time.Second},
		EncryptionKey: testKey,
	}
	e.svc = e.newService(t, e.db, e.queue)
	e.tenants = tenant.New(e.db)
	return e
}

// newService returns a Service like e.svc but on db and queue.
func (e *botEnv) newService(t *testing.T, db *bun.DB, queue *asynq.Client) *telegram.Service {
	t.Helper()
	svc, err := telegram.New(telegram.Deps{
		DB: db, Redis: e.rdb, Queue: queue, Contacts: contacts.New(db), Cfg: e.cfg,
		Log: testlog.Logger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// serveWebhook is the API's webhook handler in miniature.
func (e *botEnv) serveWebhook(w http.ResponseWriter, r *http.Request) {
	rest, ok := strings.CutPrefix(r.URL.Path, telegram.WebhookPath)
	id, err := uuid.Parse(strings.TrimSuffix(rest, "/"))
	if !ok || err != nil {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	w.WriteHeader(statusOf(e.svc.Ingest(r.Context(), id, r.Header.Get(telegram.SecretHeader), body)))
}

// statusOf maps an error to the HTTP status of DESIGN.md's REST conventions.
func statusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	switch apperr.KindOf(err) {
	case apperr.KindInvalid:
		return http.StatusUnprocessableEntity
	case apperr.KindMalformed:
		return http.StatusBadRequest
	case apperr.KindUnauthorized:
		return http.StatusUnauthorized
	case apperr.KindNotFound:
		return http.StatusNotFound
	case apperr.KindConflict:
		return http.StatusConflict
	case apperr.KindUpstream:
		return http.StatusBadGateway
	case apperr.KindUnavailable:
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func (e *botEnv) tenant(t *testing.T, name string) uuid.UUID {
	t.Helper()
	tn, _, err := e.tenants.Create(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	return tn.ID
}

// register creates an emulated bot and registers it for tenantID.
func (e *botEnv) register(t *testing.T, tenantID uuid.UUID, name string) (telegram.Bot, tgemu.BotInfo) {
	t.Helper()
	info := e.emu.CreateBot("", name)
	b, err := e.svc.RegisterBot(context.Background(), tenantID, telegram.NewBot{Name: name, Token: info.Token})
	if err != nil {
		t.Fatalf("RegisterBot: %v", err)
	}
	return b, info
}

// closedURL returns a URL on which nothing listens.
func closedURL(t *testing.T, scheme string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return scheme + "://" + addr
}

func wantErr(t *testing.T, err, want error, wantStatus int) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error = %v, want %v", err, want)
	}
	if got := statusOf(err); got != wantStatus {
		t.Fatalf("status = %d, want %d (error %v)", got, wantStatus, err)
	}
}

func TestService_RegisterBot(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")

	t.Run("201", func(t *testing.T) {
		info := e.emu.CreateBot("shop_bot", "Shop")
		b, err := e.svc.RegisterBot(ctx, tn, telegram.NewBot{Name: "  Shop  ", Token: info.Token, DailyLimit: 100})
		if err != nil {
			t.Fatal(err)
		}
		if b.ID == uuid.Nil || b.TenantID != tn || b.Name != "Shop" || b.TelegramBotID != info.ID ||
			b.Username != "shop_bot" || b.DailyLimit != 100 || b.WebhookStatus != telegram.WebhookActive || b.WebhookError != "" {
			t.Fatalf("bot = %+v", b)
		}
		if want := e.hook.URL + "/telegram/v1/webhooks/" + b.ID.String() + "/"; b.WebhookURL != want {
			t.Fatalf("webhook url = %q, want %q", b.WebhookURL, want)
		}
		secretPart := info.Token[strings.Index(info.Token, ":")+1:]
		if dump := fmt.Sprintf("%+v %#v", b, b); strings.Contains(dump, secretPart) || len(b.TokenSealed) == 0 {
			t.Fatal("the returned bot holds the token in clear text")
		}
		if n := len(e.emu.Calls(info.ID, "getMe")); n != 1 {
			t.Fatalf("getMe calls = %d, want 1", n)
		}
		calls := e.emu.Calls(info.ID, "setWebhook")
		if len(calls) != 1 {
			t.Fatalf("setWebhook calls = %d, want 1", len(calls))
		}
		p := calls[0].Params
		if p["url"] != b.WebhookURL {
			t.Errorf("setWebhook url = %q", p["url"])
		}
		secret := p["secret_token"]
		if !regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`).MatchString(secret) {
			t.Errorf("secret_token %q is not 1-256 of [A-Za-z0-9_-]", secret)
		}
		if h := sha256.Sum256([]byte(secret)); string(h[:]) != string(b.WebhookSecretHash) {
			t.Error("stored hash is not the SHA-256 of the secret_token given to Telegram")
		}
		var allowed []string
		if err := json.Unmarshal([]byte(p["allowed_updates"]), &allowed); err != nil || strings.Join(allowed, ",") != strings.Join(telegram.AllowedUpdates, ",") {
			t.Errorf("allowed_updates = %q", p["allowed_updates"])
		}
		if v, ok := p["drop_pending_updates"]; ok && v != "false" {
			t.Errorf("drop_pending_updates = %q, want it unset", v)
		}
		if p["max_connections"] != "40" {
			t.Errorf("max_connections = %q", p["max_connections"])
		}
		if wi := e.emu.WebhookInfo(info.ID); wi.URL != b.WebhookURL || wi.SecretToken != secret {
			t.Errorf("emulator webhook = %+v", wi)
		}
		var cmds []string
		for _, c := range e.emu.Commands(info.ID) {
			cmds = append(cmds, c.Command+"="+c.Description)
		}
		if got, want := strings.Join(cmds, ","), "start=Start the bot,help=Show help,stop=Stop receiving messages"; got != want {
			t.Errorf("commands = %q, want %q", got, want)
		}
		got, err := e.svc.GetBot(ctx, tn, b.ID)
		if err != nil || got.ID != b.ID || got.WebhookStatus != telegram.WebhookActive {
			t.Fatalf("GetBot = %+v, %v", got, err)
		}
		// The token is stored sealed, not in clear text.
		var n int
		if err := e.db.NewRaw("SELECT count(*) FROM bots WHERE position(?::bytea in token_sealed) > 0", secretPart).Scan(ctx, &n); err != nil || n != 0 {
			t.Fatalf("clear-text token in bots: n=%d err=%v", n, err)
		}
	})

	t.Run("422", func(t *testing.T) {
		good := e.emu.CreateBot("", "").Token
		unknown := "123456789:" + strings.Repeat("A", 35)
		tests := []struct {
			name string
			nb   telegram.NewBot
			want error
		}{
			{"empty name", telegram.NewBot{Name: "  ", Token: good}, telegram.ErrInvalidField},
			{"long name", telegram.NewBot{Name: strings.Repeat("é", 201), Token: good}, telegram.ErrInvalidField},
			{"negative daily limit", telegram.NewBot{Name: "x", Token: good, DailyLimit: -1}, telegram.ErrInvalidField},
			{"NUL in name", telegram.NewBot{Name: "a\x00", Token: good}, telegram.ErrInvalidField},
			{"newline in name", telegram.NewBot{Name: "a\nb", Token: good}, telegram.ErrInvalidField},
			{"token without colon", telegram.NewBot{Name: "x", Token: "abc"}, telegram.ErrInvalidField},
			{"token secret too short", telegram.NewBot{Name: "x", Token: "123:abc"}, telegram.ErrInvalidField},
			{"token bad characters", telegram.NewBot{Name: "x", Token: "123:" + strings.Repeat("a", 20) + "/x"}, telegram.ErrInvalidField},
			{"token NUL", telegram.NewBot{Name: "x", Token: "123:\x00" + strings.Repeat("a", 20)}, telegram.ErrInvalidField},
			{"token unknown to Telegram", telegram.NewBot{Name: "x", Token: unknown}, telegram.ErrInvalidBotToken},
		}
		for _, tc := range tests {
			t.Run(tc.name, func(t *testing.T) {
				_, err := e.svc.RegisterBot(ctx, tn, tc.nb)
				wantErr(t, err, tc.want, http.StatusUnprocessableEntity)
			})
		}
		var n int
		if err := e.db.NewRaw("SELECT count(*) FROM bots WHERE name = 'x'").Scan(ctx, &n); err != nil || n != 0 {
			t.Fatalf("rejected bots stored: %d %v", n, err)
		}
	})

	t.Run("502 Telegram down", func(t *testing.T) {
		cfg := e.cfg
		cfg.APIURL = closedURL(t, "http")
		svc, err := telegram.New(telegram.Deps{DB: e.db, Redis: e.rdb, Queue: e.queue, Contacts: contacts.New(e.db), Cfg: cfg})
		if err != nil {
			t.Fatal(err)
		}
		info := e.emu.CreateBot("", "")
		_, err = svc.RegisterBot(ctx, tn, telegram.NewBot{Name: "down", Token: info.Token})
		wantErr(t, err, telegram.ErrTelegramDown, http.StatusBadGateway)
		if strings.Contains(err.Error(), info.Token) {
			t.Fatalf("error leaks the token: %v", err)
		}
	})

	t.Run("502 Telegram error", func(t *testing.T) {
		info := e.emu.CreateBot("", "")
		e.emu.AddFault(info.ID, tgemu.Fault{Method: "getMe", Kind: tgemu.FaultServerError, Times: 1})
		_, err := e.svc.RegisterBot(ctx, tn, telegram.NewBot{Name: "err", Token: info.Token})
		wantErr(t, err, telegram.ErrTelegramError, http.StatusBadGateway)
	})

	t.Run("409", func(t *testing.T) {
		info := e.emu.CreateBot("", "")
		first, err := e.svc.RegisterBot(ctx, tn, telegram.NewBot{Name: "one", Token: info.Token})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.RegisterBot(ctx, tn, telegram.NewBot{Name: "again", Token: info.Token})
		wantErr(t, err, telegram.ErrBotExists, http.StatusConflict)
		other := e.tenant(t, "other")
		_, err = e.svc.RegisterBot(ctx, other, telegram.NewBot{Name: "theirs", Token: info.Token})
		wantErr(t, err, telegram.ErrBotExists, http.StatusConflict)
		// Once deleted, the Telegram bot may be registered again.
		if err := e.svc.DeleteBot(ctx, tn, first.ID); err != nil {
			t.Fatal(err)
		}
		again, err := e.svc.RegisterBot(ctx, other, telegram.NewBot{Name: "theirs", Token: info.Token})
		if err != nil || again.ID == first.ID {
			t.Fatalf("re-register after delete: %+v, %v", again, err)
		}
	})

	t.Run("409 concurrent", func(t *testing.T) {
		info := e.emu.CreateBot("", "")
		const n = 8
		errs := make(chan error, n)
		for i := range n {
			go func() {
				_, err := e.svc.RegisterBot(ctx, tn, telegram.NewBot{Name: fmt.Sprintf("race %d", i), Token: info.Token})
				errs <- err
			}()
		}
		ok := 0
		for range n {
			err := <-errs
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, telegram.ErrBotExists):
				t.Errorf("error = %v, want ErrBotExists", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d registrations succeeded, want 1", ok)
		}
	})

	t.Run("setWebhook fails", func(t *testing.T) {
		info := e.emu.CreateBot("", "")
		e.emu.AddFault(info.ID, tgemu.Fault{Method: "setWebhook", Kind: tgemu.FaultServerError, Times: 1})
		b, err := e.svc.RegisterBot(ctx, tn, telegram.NewBot{Name: "nohook", Token: info.Token})
		if err != nil {
			t.Fatal(err)
		}
		if b.WebhookStatus != telegram.WebhookFailed || b.WebhookError == "" || strings.Contains(b.WebhookError, info.Token) {
			t.Fatalf("status %q error %q", b.WebhookStatus, b.WebhookError)
		}
		got, err := e.svc.GetBot(ctx, tn, b.ID)
		if err != nil || got.WebhookStatus != telegram.WebhookFailed {
			t.Fatalf("GetBot = %+v, %v", got, err)
		}
	})
}

func TestService_BotsTenantScope(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	mine, theirs := e.tenant(t, "mine"), e.tenant(t, "theirs")
	b, info := e.register(t, theirs, "Theirs")
	name, limit := "stolen", 5

	_, err := e.svc.GetBot(ctx, mine, b.ID)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	_, err = e.svc.UpdateBot(ctx, mine, b.ID, telegram.UpdateBot{Name: &name, DailyLimit: &limit})
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	err = e.svc.DeleteBot(ctx, mine, b.ID)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	_, err = e.svc.BotForTenant(ctx, mine, &b.ID)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	list, _, err := e.svc.ListBots(ctx, mine, telegram.BotFilter{})
	if err != nil || len(list) != 0 {
		t.Fatalf("ListBots(mine) = %d bots, %v", len(list), err)
	}
	if n := len(e.emu.Calls(info.ID, "deleteWebhook")); n != 0 {
		t.Fatalf("deleteWebhook called %d times for another tenant's delete", n)
	}
	got, err := e.svc.GetBot(ctx, theirs, b.ID)
	if err != nil || got.Name != "Theirs" || got.DailyLimit != 0 {
		t.Fatalf("owner's bot changed: %+v, %v", got, err)
	}
}

func TestService_UpdateBot(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b, _ := e.register(t, tn, "Shop")
	str := func(s string) *string { return &s }
	num := func(n int) *int { return &n }

	tests := []struct {
		name      string
		u         telegram.UpdateBot
		want      error
		wantName  string
		wantLimit int
	}{
		{"rename", telegram.UpdateBot{Name: str(" Store ")}, nil, "Store", 0},
		{"limit", telegram.UpdateBot{DailyLimit: num(250)}, nil, "Store", 250},
		{"nothing", telegram.UpdateBot{}, nil, "Store", 250},
		{"both", telegram.UpdateBot{Name: str("Shop"), DailyLimit: num(0)}, nil, "Shop", 0},
		{"empty name 422", telegram.UpdateBot{Name: str("")}, telegram.ErrInvalidField, "Shop", 0},
		{"negative limit 422", telegram.UpdateBot{DailyLimit: num(-3)}, telegram.ErrInvalidField, "Shop", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.svc.UpdateBot(ctx, tn, b.ID, tc.u)
			if tc.want != nil {
				wantErr(t, err, tc.want, http.StatusUnprocessableEntity)
				got, err = e.svc.GetBot(ctx, tn, b.ID)
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Name != tc.wantName || got.DailyLimit != tc.wantLimit || got.ID != b.ID || got.TelegramBotID != b.TelegramBotID {
				t.Fatalf("bot = %+v, want name %q limit %d", got, tc.wantName, tc.wantLimit)
			}
		})
	}
	_, err := e.svc.UpdateBot(ctx, tn, uuid.New(), telegram.UpdateBot{Name: str("x")})
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
}

func TestService_ListBots(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	var want []uuid.UUID
	for i := range 5 {
		b, _ := e.register(t, tn, fmt.Sprintf("bot %d", i))
		want = append([]uuid.UUID{b.ID}, want...) // newest first
	}
	var got []uuid.UUID
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("too many pages")
		}
		list, next, err := e.svc.ListBots(ctx, tn, telegram.BotFilter{Cursor: cursor, Limit: 2})
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range list {
			got = append(got, b.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ids = %v, want %v", got, want)
	}
	_, _, err := e.svc.ListBots(ctx, tn, telegram.BotFilter{Cursor: "garbage!"})
	wantErr(t, err, page.ErrBadCursor, http.StatusUnprocessableEntity)
	_, _, err = e.svc.ListBots(ctx, tn, telegram.BotFilter{Limit: 201})
	wantErr(t, err, page.ErrBadLimit, http.StatusUnprocessableEntity)
}

func TestService_DeleteBot(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")
	b, info := e.register(t, tn, "Shop")
	secret := e.emu.WebhookInfo(info.ID).SecretToken

	if err := e.svc.DeleteBot(ctx, tn, b.ID); err != nil {
		t.Fatal(err)
	}
	if n := len(e.emu.Calls(info.ID, "deleteWebhook")); n != 1 {
		t.Fatalf("deleteWebhook calls = %d, want 1", n)
	}
	if wi := e.emu.WebhookInfo(info.ID); wi.URL != "" {
		t.Fatalf("webhook still set: %+v", wi)
	}
	_, err := e.svc.GetBot(ctx, tn, b.ID)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	_, err = e.svc.BotByID(ctx, b.ID)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	err = e.svc.DeleteBot(ctx, tn, b.ID)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	err = e.svc.Ingest(ctx, b.ID, secret, []byte(`{"update_id":1,"message":{}}`))
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	var status string
	if err := e.db.NewRaw("SELECT webhook_status FROM bots WHERE id = ? AND deleted_at IS NOT NULL", b.ID).Scan(ctx, &status); err != nil || status != telegram.WebhookDeleted {
		t.Fatalf("stored status %q, %v", status, err)
	}

	t.Run("Telegram failure does not prevent deletion", func(t *testing.T) {
		b, info := e.register(t, tn, "Flaky")
		e.emu.AddFault(info.ID, tgemu.Fault{Method: "deleteWebhook", Kind: tgemu.FaultBadGatewayHTML, Times: 1})
		if err := e.svc.DeleteBot(ctx, tn, b.ID); err != nil {
			t.Fatal(err)
		}
		_, err := e.svc.GetBot(ctx, tn, b.ID)
		wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	})
}

func TestService_BotForTenant(t *testing.T) {
	e := newBotEnv(t)
	ctx := context.Background()
	tn := e.tenant(t, "acme")

	_, err := e.svc.BotForTenant(ctx, tn, nil)
	wantErr(t, err, telegram.ErrBotRequired, http.StatusUnprocessableEntity)
	only, _ := e.register(t, tn, "One")
	got, err := e.svc.BotForTenant(ctx, tn, nil)
	if err != nil || got.ID != only.ID {
		t.Fatalf("only bot = %v, %v", got.ID, err)
	}
	second, _ := e.register(t, tn, "Two")
	_, err = e.svc.BotForTenant(ctx, tn, nil)
	wantErr(t, err, telegram.ErrBotRequired, http.StatusUnprocessableEntity)
	got, err = e.svc.BotForTenant(ctx, tn, &second.ID)
	if err != nil || got.ID != second.ID {
		t.Fatalf("explicit bot = %v, %v", got.ID, err)
	}
	missing := uuid.New()
	_, err = e.svc.BotForTenant(ctx, tn, &missing)
	wantErr(t, err, telegram.ErrBotNotFound, http.StatusNotFound)
	byID, err := e.svc.BotByID(ctx, second.ID)
	if err != nil || byID.TenantID != tn {
		t.Fatalf("BotByID = %+v, %v", byID, err)
	}
}
