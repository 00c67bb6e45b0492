package tgemu

import (
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// FaultKind selects what an injected Fault answers.
type FaultKind string

// Fault kinds. Texts and codes are Telegram's (core.telegram.org/bots/api#making-requests,
// core.telegram.org/bots/faq).
const (
	// FaultTooManyRequests answers 429 "Too Many Requests: retry after N"
	// with parameters.retry_after = Fault.RetryAfter (at least 1).
	FaultTooManyRequests FaultKind = "too_many_requests"
	// FaultBlocked answers 403 "Forbidden: bot was blocked by the user".
	FaultBlocked FaultKind = "blocked"
	// FaultChatNotFound answers 400 "Bad Request: chat not found".
	FaultChatNotFound FaultKind = "chat_not_found"
	// FaultMigrate answers 400 "Bad Request: group chat was upgraded to a
	// supergroup chat" with parameters.migrate_to_chat_id =
	// Fault.MigrateToChatID (default -100<chat_id digits>).
	FaultMigrate FaultKind = "migrate"
	// FaultServerError answers 500 {"ok":false,"error_code":500,
	// "description":"Internal Server Error"}.
	FaultServerError FaultKind = "server_error"
	// FaultBadGatewayHTML answers 502 with an nginx-style HTML page, as a
	// proxy in front of the Bot API would; clients fail to decode it.
	FaultBadGatewayHTML FaultKind = "bad_gateway_html"
	// FaultLatency only delays the request by Fault.Latency; it is then
	// processed normally.
	FaultLatency FaultKind = "latency"
	// FaultUnauthorized answers 401 "Unauthorized", as Telegram does to every call of a
	// bot whose token was revoked (BotFather /revoke) while the call is still recorded.
	FaultUnauthorized FaultKind = "unauthorized"
)

// validKind reports whether k is one of the FaultKind constants.
func validKind(k FaultKind) bool {
	switch k {
	case FaultTooManyRequests, FaultBlocked, FaultChatNotFound, FaultMigrate,
		FaultServerError, FaultBadGatewayHTML, FaultLatency, FaultUnauthorized:
		return true
	}
	return false
}

// Fault is an error injected into a bot's Bot API calls.
//
// A request matches when its method equals Method (case-insensitive; ""
// means "sendMessage", "*" any method) and, if ChatID != 0, its chat_id
// parameter equals ChatID. Faults are consulted in the order added (FIFO):
// the first matching one applies, and it is removed after Times uses
// (0 = until ClearFaults). With 0 < Probability < 1 a matching request is
// faulted only with that probability (independently each time; a request
// left alone goes on to the next fault and uses nothing); 0 means always.
// Latency delays the answer of any kind; for
// FaultLatency it is the whole effect. Faulted calls are logged in Calls but
// are neither sent messages nor rate-limit arrivals.
type Fault struct {
	Method          string
	ChatID          int64
	Kind            FaultKind
	RetryAfter      int
	MigrateToChatID int64
	Latency         time.Duration
	Times           int
	Probability     float64
}

type faultState struct {
	f    Fault
	left int // remaining uses; 0 = unlimited
}

// AddFault appends f to the bot's fault list. Unknown bots and unknown kinds
// are ignored (and logged).
func (s *Server) AddFault(botID int64, f Fault) {
	b := s.bot(botID)
	if b == nil {
		s.log.Warn("tgemu: AddFault: unknown bot", "bot_id", botID)
		return
	}
	if !validKind(f.Kind) {
		s.log.Warn("tgemu: AddFault: unknown kind", "bot_id", botID, "kind", string(f.Kind))
		return
	}
	if f.Method == "" {
		f.Method = "sendMessage"
	}
	if f.Times < 0 {
		f.Times = 0
	}
	b.mu.Lock()
	b.faults = append(b.faults, &faultState{f: f, left: f.Times})
	b.mu.Unlock()
}

// ClearFaults removes all of the bot's faults.
func (s *Server) ClearFaults(botID int64) {
	if b := s.bot(botID); b != nil {
		b.mu.Lock()
		b.faults = nil
		b.mu.Unlock()
	}
}

// takeFault returns the first fault matching method and the raw chat_id, and
// consumes one use of it.
func (b *bot) takeFault(method, chatID string) (Fault, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, fs := range b.faults {
		if fs.f.Method != "*" && !strings.EqualFold(fs.f.Method, method) {
			continue
		}
		if fs.f.ChatID != 0 {
			id, err := strconv.ParseInt(strings.TrimSpace(chatID), 10, 64)
			if err != nil || id != fs.f.ChatID {
				continue
			}
		}
		if p := fs.f.Probability; p > 0 && p < 1 && mrand.Float64() >= p { //nolint:gosec // G404: fault sampling, not a secret
			continue
		}
		if fs.left > 0 {
			fs.left--
			if fs.left == 0 {
				b.faults = append(b.faults[:i:i], b.faults[i+1:]...)
			}
		}
		return fs.f, true
	}
	return Fault{}, false
}

// badGatewayHTML is what nginx answers when the upstream is down.
const badGatewayHTML = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n" +
	"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"

// faultResult turns a (non-latency) fault into the answer.
func faultResult(f Fault, chatID string) apiResult {
	switch f.Kind {
	case FaultTooManyRequests:
		return tooManyRequests(max(f.RetryAfter, 1))
	case FaultBlocked:
		return apiError(http.StatusForbidden, "Forbidden: bot was blocked by the user")
	case FaultChatNotFound:
		return apiError(http.StatusBadRequest, "Bad Request: chat not found")
	case FaultMigrate:
		to := f.MigrateToChatID
		if to == 0 {
			id, _ := strconv.ParseInt(strings.TrimSpace(chatID), 10, 64)
			to = migratedID(id)
		}
		r := apiError(http.StatusBadRequest, "Bad Request: group chat was upgraded to a supergroup chat")
		r.params = &respParams{MigrateToChatID: to}
		return r
	case FaultBadGatewayHTML:
		return apiResult{status: http.StatusBadGateway, rawBody: []byte(badGatewayHTML), rawType: "text/html"}
	case FaultUnauthorized:
		return apiError(http.StatusUnauthorized, "Unauthorized")
	default: // FaultServerError
		return apiError(http.StatusInternalServerError, "Internal Server Error")
	}
}

// migratedID returns a supergroup id derived from a group id: -100 followed
// by the group's digits, as Telegram's ids look (-1001234567890).
func migratedID(chatID int64) int64 {
	if chatID < 0 {
		chatID = -chatID
	}
	if chatID == 0 || chatID > 999_999_999_999 {
		return -1001234567890
	}
	return -(1_000_000_000_000 + chatID)
}

// tooManyRequests is Telegram's flood-wait answer.
func tooManyRequests(retryAfter int) apiResult {
	r := apiError(http.StatusTooManyRequests, fmt.Sprintf("Too Many Requests: retry after %d", retryAfter))
	r.params = &respParams{RetryAfter: retryAfter}
	return r
}

// ceilSeconds rounds d up to whole seconds, at least 1.
func ceilSeconds(d time.Duration) int {
	return max(1, int(math.Ceil(d.Seconds())))
}

// checkRateLocked applies the per-chat and per-bot sendMessage limits at now.
// It returns ok=false with the 429 answer (and counts the violation) when a
// limit is exceeded; otherwise it records the arrival. Caller holds b.mu.
func (b *bot) checkRateLocked(chatID int64, now time.Time) (apiResult, bool) {
	return b.checkSendLocked(chatID, now, false)
}

// checkSendLocked is checkRateLocked for a message with allow_paid_broadcast
// (paid: the bot may send Options.PaidPerBotPerSecond instead of
// PerBotPerSecond) to a private chat or a group (chat id < 0: at most
// Options.GroupChatLimit in any Options.GroupChatWindow, counted in
// Violations.PerGroup, instead of the private chats' PerChatInterval).
// Caller holds b.mu.
func (b *bot) checkSendLocked(chatID int64, now time.Time, paid bool) (apiResult, bool) {
	o := b.s.opts
	if chatID < 0 && o.GroupChatLimit > 0 {
		cut := now.Add(-o.GroupChatWindow)
		win := b.groupWin[chatID]
		i := 0
		for i < len(win) && !win[i].After(cut) {
			i++
		}
		win = win[i:]
		b.groupWin[chatID] = win
		if len(win) >= o.GroupChatLimit {
			b.viol.PerGroup++
			return tooManyRequests(ceilSeconds(win[len(win)-o.GroupChatLimit].Add(o.GroupChatWindow).Sub(now))), false
		}
	}
	if o.PerChatInterval > 0 && chatID > 0 {
		if last, ok := b.lastSend[chatID]; ok {
			if wait := last.Add(o.PerChatInterval).Sub(now); wait > 0 {
				b.viol.PerChat++
				return tooManyRequests(ceilSeconds(wait)), false
			}
		}
	}
	perBot := o.PerBotPerSecond
	if paid && perBot > 0 {
		perBot = o.PaidPerBotPerSecond
	}
	if perBot > 0 {
		cut := now.Add(-time.Second)
		i := 0
		for i < len(b.sendWin) && !b.sendWin[i].After(cut) {
			i++
		}
		b.sendWin = b.sendWin[i:]
		if len(b.sendWin) >= perBot {
			b.viol.PerBot++
			// The window frees a slot when its oldest arrival leaves it.
			idx := len(b.sendWin) - perBot
			return tooManyRequests(ceilSeconds(b.sendWin[idx].Add(time.Second).Sub(now))), false
		}
		b.sendWin = append(b.sendWin, now)
	}
	if o.PerChatInterval > 0 && chatID > 0 {
		b.lastSend[chatID] = now
	}
	if chatID < 0 && o.GroupChatLimit > 0 {
		b.groupWin[chatID] = append(b.groupWin[chatID], now)
	}
	return apiResult{}, true
}
