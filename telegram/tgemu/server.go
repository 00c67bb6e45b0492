// Package tgemu is an in-process HTTP emulator of the Telegram Bot API
// (core.telegram.org/bots/api) for tests, offline demos and the
// `botfleet emulator` command.
//
// A client talks to it exactly as to api.telegram.org: only the base URL
// changes (gotgbot: RequestOpts.APIURL = Server.URL()). The emulator serves
// `POST|GET /bot<token>/<method>` with Telegram's envelope, error texts and
// limits, simulates users who message, block and unblock bots, delivers their
// updates to a webhook (or keeps them for getUpdates), and injects faults on
// demand. A JSON control API under /control/ drives the same state over HTTP
// for curl demos and out-of-process tests.
//
// Everything is in memory and goroutine-safe. Logs never contain bot tokens:
// a Bot API request is logged by method name and bot id only.
package tgemu

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/botfleet/botfleet/internal/testlog"
)

// Options configures a Server. The zero value gives Telegram's documented
// behaviour.
type Options struct {
	// Logger receives the emulator's logs (method name and bot id, never a
	// token). Nil discards logs.
	Logger *slog.Logger
	// PerBotPerSecond is the most sendMessage calls one bot may make in any
	// sliding 1 s window (arrivals in (t-1s, t]); the next is answered 429.
	// 0 means 30, Telegram's documented broadcast limit
	// (core.telegram.org/bots/faq#my-bot-is-hitting-limits-how-do-i-avoid-this).
	// Negative disables the per-bot limit.
	PerBotPerSecond int
	// PerChatInterval is the minimum spacing of messages to one chat ("avoid
	// sending more than one message per second" in a chat, same FAQ entry).
	// 0 means 1 s. Negative disables the per-chat limit.
	PerChatInterval time.Duration
	// PaidPerBotPerSecond replaces PerBotPerSecond for messages sent with
	// allow_paid_broadcast=true (paid broadcasts: up to 1000 messages/s per
	// bot, core.telegram.org/bots/api#sendmessage); they share the bot's
	// window. 0 means 1000. Ignored when PerBotPerSecond is negative.
	PaidPerBotPerSecond int
	// GroupChatLimit is the most messages one group (chat id < 0) may get in
	// any GroupChatWindow (Telegram: about 20 per minute in a group, Bot FAQ);
	// the next is answered 429 and counted in Violations.PerGroup. Groups are
	// not subject to PerChatInterval. 0 means 20; negative disables it.
	GroupChatLimit int
	// GroupChatWindow is the window of GroupChatLimit. 0 means 1 minute.
	GroupChatWindow time.Duration
	// RetryBackoff is the first delay before re-trying a failed webhook
	// delivery; it doubles after each consecutive failure up to
	// MaxRetryBackoff. Defaults 500 ms and 5 s.
	RetryBackoff, MaxRetryBackoff time.Duration
	// HTTPClient posts updates to webhooks. Nil means a client with a 10 s
	// timeout (a timeout counts as a failed delivery, as with Telegram).
	HTTPClient *http.Client
	// OnSecret, when set, is called with every secret the emulator issues or
	// is given: kind "bot_token" for each CreateBot token, "secret_token" for
	// each setWebhook secret_token. NewTest sets it to testlog.RecordSecret, so
	// that `make test` can check that no process logged them.
	OnSecret func(kind, value string)
}

// Server is one emulated Telegram Bot API with any number of bots.
// Create it with New (then Handler or Start) or NewTest.
type Server struct {
	opts   Options
	log    *slog.Logger
	client *http.Client
	mux    *http.ServeMux

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	bots      map[int64]*bot
	byToken   map[string]*bot
	order     []int64 // bot ids in creation order
	nextBotID int64
	httpSrv   *http.Server
	baseURL   string
	closed    bool
	files     fileStore // files.go
}

// New returns a Server with opts (defaults filled in). It serves nothing until
// Start is called or Handler is mounted; webhook delivery runs from the
// moment a bot is created.
func New(opts Options) *Server {
	if opts.PerBotPerSecond == 0 {
		opts.PerBotPerSecond = 30
	}
	if opts.PerChatInterval == 0 {
		opts.PerChatInterval = time.Second
	}
	if opts.PaidPerBotPerSecond <= 0 {
		opts.PaidPerBotPerSecond = 1000
	}
	if opts.GroupChatLimit == 0 {
		opts.GroupChatLimit = 20
	}
	if opts.GroupChatWindow <= 0 {
		opts.GroupChatWindow = time.Minute
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 500 * time.Millisecond
	}
	if opts.MaxRetryBackoff <= 0 {
		opts.MaxRetryBackoff = 5 * time.Second
	}
	if opts.MaxRetryBackoff < opts.RetryBackoff {
		opts.MaxRetryBackoff = opts.RetryBackoff
	}
	s := &Server{
		opts:    opts,
		log:     opts.Logger,
		client:  opts.HTTPClient,
		bots:    map[int64]*bot{},
		byToken: map[string]*bot{},
		// Real bot ids are 10-digit numbers; start somewhere random so ids
		// from two emulator runs rarely collide.
		nextBotID: 7_000_000_000 + mrand.Int64N(1_000_000_000), //nolint:gosec // G404: emulator ids need not be unpredictable
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.client == nil {
		s.client = &http.Client{Timeout: 10 * time.Second}
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.mux = http.NewServeMux()
	s.routeControl(s.mux)
	s.mux.HandleFunc("/file/", s.serveFile) // files.go
	s.mux.HandleFunc("/", s.serveBotAPI)
	return s
}

// NewTest starts a Server on 127.0.0.1:0 and closes it in t.Cleanup.
// It calls t.Fatal when the listener cannot be opened. Unset, Logger and
// OnSecret default to internal/testlog's (files under BOTFLEET_TEST_LOG_DIR
// when `make test` sets it, else nothing).
func NewTest(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = testlog.Logger(t)
	}
	if opts.OnSecret == nil {
		opts.OnSecret = testlog.RecordSecret
	}
	s := New(opts)
	if _, err := s.Start("127.0.0.1:0"); err != nil {
		t.Fatalf("tgemu: start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Handler returns the Bot API (`/bot<token>/<method>`) and the control API
// (`/control/...`) on one http.Handler.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on addr ("127.0.0.1:0" picks a free port), serves Handler in
// the background and returns the base URL, e.g. "http://127.0.0.1:41234"
// (the value for gotgbot's RequestOpts.APIURL / TELEGRAM_API_URL).
func (s *Server) Start(addr string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", errors.New("tgemu: server closed")
	}
	if s.httpSrv != nil {
		return "", errors.New("tgemu: already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("tgemu: listen %s: %w", addr, err)
	}
	srv := &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.httpSrv = srv
	s.baseURL = "http://" + ln.Addr().String()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("tgemu: serve", "error", err)
		}
	}()
	s.log.Info("tgemu: listening", "url", s.baseURL)
	return s.baseURL, nil
}

// URL returns the base URL given by Start ("" before Start).
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// Close stops the HTTP server (if started), webhook delivery and pending
// long polls. It is idempotent.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv := s.httpSrv
	s.mu.Unlock()

	s.cancel()
	var err error
	if srv != nil {
		err = srv.Close()
	}
	s.wg.Wait()
	return err
}

// BotInfo identifies an emulated bot. Token has Telegram's shape
// "<id>:<35 chars of [A-Za-z0-9_-]>".
type BotInfo struct {
	ID        int64  `json:"id"`
	Token     string `json:"token"`
	Username  string `json:"username"`
	FirstName string `json:"first_name"`
}

// CreateBot registers a new bot and starts its webhook delivery goroutine.
// An empty username becomes "test<n>_bot", an empty firstName "Test Bot".
func (s *Server) CreateBot(username, firstName string) BotInfo {
	s.mu.Lock()
	id := s.nextBotID
	s.nextBotID++
	if username == "" {
		username = fmt.Sprintf("test%d_bot", id%100000)
	}
	if firstName == "" {
		firstName = "Test Bot"
	}
	info := BotInfo{ID: id, Token: fmt.Sprintf("%d:%s", id, randomSecret(35)), Username: username, FirstName: firstName}
	if s.opts.OnSecret != nil {
		s.opts.OnSecret("bot_token", info.Token)
	}
	b := newBot(s, info)
	s.bots[id] = b
	s.byToken[info.Token] = b
	s.order = append(s.order, id)
	closed := s.closed
	if !closed {
		s.wg.Add(1)
	}
	s.mu.Unlock()

	if !closed {
		go b.deliverLoop(s.ctx)
	}
	s.log.Info("tgemu: bot created", "bot_id", id, "username", username)
	return info
}

// bot returns the bot with id, or nil.
func (s *Server) bot(id int64) *bot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.bots[id]
}

// botOrErr returns the bot with id or an error naming it.
func (s *Server) botOrErr(id int64) (*bot, error) {
	if b := s.bot(id); b != nil {
		return b, nil
	}
	return nil, fmt.Errorf("tgemu: unknown bot %d", id)
}

func (s *Server) botByToken(token string) *bot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byToken[token]
}

// allBots returns the bots in creation order.
func (s *Server) allBots() []*bot {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*bot, 0, len(s.order))
	for _, id := range s.order {
		out = append(out, s.bots[id])
	}
	return out
}

const secretAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"

// randomSecret returns n characters of [A-Za-z0-9_-] from crypto/rand.
func randomSecret(n int) string {
	buf := make([]byte, n)
	max := big.NewInt(int64(len(secretAlphabet)))
	for i := range buf {
		v, err := rand.Int(rand.Reader, max)
		if err != nil { // crypto/rand does not fail on supported platforms
			buf[i] = secretAlphabet[mrand.IntN(len(secretAlphabet))] //nolint:gosec // G404: fake emulator tokens, never real credentials
			continue
		}
		buf[i] = secretAlphabet[v.Int64()]
	}
	return string(buf)
}
