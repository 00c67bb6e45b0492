package tgemu

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"time"

	mrand "math/rand/v2"
)

// User is a simulated Telegram user. The private chat with a user has
// chat id == ID (core.telegram.org/bots/api#chat). An empty FirstName is
// sent as "User" (Telegram requires a first name).
type User struct {
	ID           int64  `json:"id"`
	FirstName    string `json:"first_name"`
	LastName     string `json:"last_name,omitempty"`
	Username     string `json:"username,omitempty"`
	LanguageCode string `json:"language_code,omitempty"`
}

// SentMessage is one successful sendMessage, sendPhoto or sendDocument call.
// Text (the caption of a photo or document) and ParseMode are exactly as the
// bot sent them; At is when the emulator accepted the call. The options are
// recorded as sent: ReplyMarkup and LinkPreviewOptions as their JSON text
// ("" when absent).
type SentMessage struct {
	BotID     int64
	ChatID    int64
	MessageID int64
	Text      string
	ParseMode string
	At        time.Time
	// Method is the Bot API method as called: "sendMessage", "sendPhoto" or
	// "sendDocument" ("" is read as sendMessage).
	Method string
	// Photo and Document are the photo/document parameter (a URL or file_id;
	// "attach://..." for an upload).
	Photo, Document     string
	ReplyMarkup         string
	LinkPreviewOptions  string
	DisableNotification bool
	ProtectContent      bool
	AllowPaidBroadcast  bool
}

// Call is one Bot API request of a known bot, including rejected and
// faulted ones. Params are the raw string values as received (query string
// and body merged; JSON-body non-strings as JSON text), secrets included:
// the call log is for tests only. Status is the HTTP status answered.
type Call struct {
	Method string
	Params map[string]string
	Status int
	At     time.Time
}

// Violations counts sendMessage calls answered 429 because the bot exceeded
// Options.PerBotPerSecond (PerBot; PaidPerBotPerSecond for paid messages),
// Options.PerChatInterval (PerChat) or Options.GroupChatLimit (PerGroup).
// Injected too_many_requests faults are not violations.
type Violations struct {
	PerBot   int `json:"per_bot"`
	PerChat  int `json:"per_chat"`
	PerGroup int `json:"per_group"`
}

// BotCommand is one entry of setMyCommands
// (core.telegram.org/bots/api#botcommand).
type BotCommand struct {
	Command     string `json:"command"`
	Description string `json:"description"`
}

// WebhookInfo mirrors getWebhookInfo (core.telegram.org/bots/api#webhookinfo)
// plus the settings Telegram does not reveal (SecretToken). Dates are unix
// seconds. AllowedUpdates is nil when the default set applies.
type WebhookInfo struct {
	URL                  string   `json:"url"`
	HasCustomCertificate bool     `json:"has_custom_certificate"`
	PendingUpdateCount   int      `json:"pending_update_count"`
	LastErrorDate        int64    `json:"last_error_date,omitempty"`
	LastErrorMessage     string   `json:"last_error_message,omitempty"`
	MaxConnections       int      `json:"max_connections,omitempty"`
	AllowedUpdates       []string `json:"allowed_updates,omitempty"`
	IPAddress            string   `json:"ip_address,omitempty"`
	SecretToken          string   `json:"-"` // never serialised: the control API must not leak it
}

// update is one Update object as queued for delivery.
type update struct {
	id   int64
	kind string // "message", "my_chat_member", ...
	raw  json.RawMessage
}

// chatState is a private chat between the bot and a simulated user, or a
// group the bot is a member of (AddGroup: group set, user empty).
type chatState struct {
	user      User
	blocked   bool
	lastMsgID int64  // message ids are per chat, shared by both directions
	group     string // the group's title; "" for a private chat
	botStatus string // the bot's status in a group set by BotChatMember ("" before; groups.go)
}

// bot is the state of one emulated bot. All fields below mu are guarded by it.
type bot struct {
	s    *Server
	info BotInfo

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every state change

	// Webhook (core.telegram.org/bots/api#setwebhook).
	hookURL     string
	hookSecret  string
	hookMaxConn int
	hookGen     int64    // bumped by setWebhook/deleteWebhook
	allowed     []string // nil = default set; kept across setWebhook/getUpdates
	lastErrDate int64
	lastErrMsg  string
	backoff     time.Duration
	nextAttempt time.Time

	nextUpdateID int64
	queue        []*update // pending (head may be in flight)
	history      map[int64]*update

	chats    map[int64]*chatState
	sent     []SentMessage
	calls    []Call
	faults   []*faultState
	sendWin  []time.Time // accepted sendMessage arrivals in the last second
	lastSend map[int64]time.Time
	groupWin map[int64][]time.Time // accepted arrivals per group in the last GroupChatWindow
	viol     Violations
	commands map[string][]BotCommand
}

func newBot(s *Server, info BotInfo) *bot {
	return &bot{
		s:       s,
		info:    info,
		changed: make(chan struct{}),
		// "update identifiers start from a certain positive number"
		// (core.telegram.org/bots/api#update).
		nextUpdateID: 100_000_000 + mrand.Int64N(800_000_000), //nolint:gosec // G404: emulator ids need not be unpredictable
		history:      map[int64]*update{},
		chats:        map[int64]*chatState{},
		lastSend:     map[int64]time.Time{},
		groupWin:     map[int64][]time.Time{},
		commands:     map[string][]BotCommand{},
	}
}

// notifyLocked wakes everyone waiting on b.changed. Caller holds b.mu.
func (b *bot) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// waitFor blocks until cond (evaluated under b.mu) is true, ctx is done or
// the server closes.
func (b *bot) waitFor(ctx context.Context, cond func() bool) error {
	for {
		b.mu.Lock()
		if cond() {
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-b.s.ctx.Done():
			return errServerClosed
		}
	}
}

// recordCall appends to the call log.
func (b *bot) recordCall(method string, vals map[string]string, status int, at time.Time) {
	b.mu.Lock()
	b.calls = append(b.calls, Call{Method: method, Params: vals, Status: status, At: at})
	b.notifyLocked()
	b.mu.Unlock()
}

// webhookInfoLocked builds the exported WebhookInfo. Caller holds b.mu.
func (b *bot) webhookInfoLocked() WebhookInfo {
	wi := WebhookInfo{
		URL:                b.hookURL,
		PendingUpdateCount: len(b.queue),
		LastErrorDate:      b.lastErrDate,
		LastErrorMessage:   b.lastErrMsg,
		SecretToken:        b.hookSecret,
	}
	if b.hookURL != "" {
		wi.MaxConnections = b.hookMaxConn
		wi.IPAddress = webhookIP(b.hookURL)
	}
	if b.allowed != nil {
		wi.AllowedUpdates = append([]string(nil), b.allowed...)
	}
	return wi
}

// Sent returns the bot's successful sendMessage calls in order (nil for an
// unknown bot).
func (s *Server) Sent(botID int64) []SentMessage {
	b := s.bot(botID)
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]SentMessage(nil), b.sent...)
}

// SentCount returns how many successful sendMessage calls the bot has had (0 for an unknown
// bot). It copies nothing, so it is cheap enough to poll while a benchmark sends millions.
func (s *Server) SentCount(botID int64) int {
	b := s.bot(botID)
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.sent)
}

// SentTo returns the bot's successful sendMessage calls to chatID in order.
func (s *Server) SentTo(botID, chatID int64) []SentMessage {
	var out []SentMessage
	for _, m := range s.Sent(botID) {
		if m.ChatID == chatID {
			out = append(out, m)
		}
	}
	return out
}

// WaitSent blocks until the bot has at least n successful sendMessage calls
// and returns all of them, or returns ctx's error (with what was sent so far).
func (s *Server) WaitSent(ctx context.Context, botID int64, n int) ([]SentMessage, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return nil, err
	}
	err = b.waitFor(ctx, func() bool { return len(b.sent) >= n })
	return s.Sent(botID), err
}

// Calls returns the bot's call log in order; method "" returns all calls,
// otherwise only calls whose method matches case-insensitively (the Bot API
// treats method names case-insensitively).
func (s *Server) Calls(botID int64, method string) []Call {
	b := s.bot(botID)
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []Call
	for _, c := range b.calls {
		if method == "" || strings.EqualFold(c.Method, method) {
			out = append(out, c)
		}
	}
	return out
}

// Violations returns the bot's rate-limit violations (zero for an unknown
// bot).
func (s *Server) Violations(botID int64) Violations {
	b := s.bot(botID)
	if b == nil {
		return Violations{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.viol
}

// TotalViolations sums Violations over all bots.
func (s *Server) TotalViolations() Violations {
	var t Violations
	for _, b := range s.allBots() {
		b.mu.Lock()
		t.PerBot += b.viol.PerBot
		t.PerChat += b.viol.PerChat
		t.PerGroup += b.viol.PerGroup
		b.mu.Unlock()
	}
	return t
}

// WebhookInfo returns the bot's webhook state (zero for an unknown bot).
func (s *Server) WebhookInfo(botID int64) WebhookInfo {
	b := s.bot(botID)
	if b == nil {
		return WebhookInfo{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.webhookInfoLocked()
}

// Commands returns the commands set for the default scope and no language
// (what getMyCommands without parameters returns).
func (s *Server) Commands(botID int64) []BotCommand {
	b := s.bot(botID)
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]BotCommand(nil), b.commands[commandsKey("default", "", "", "")]...)
}
