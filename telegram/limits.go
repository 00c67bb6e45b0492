package telegram

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/metrics"
)

// DefaultGroupChatRate is the most messages to one group, supergroup or channel (chat id < 0)
// in any window of its Per: Telegram allows about 20 messages per minute in a group
// (core.telegram.org/bots/faq, "My bot is hitting limits, how do I avoid this?").
var DefaultGroupChatRate = config.Rate{N: 20, Per: time.Minute}

// limDailyKeyTTL keeps a day's counter a little longer than the day itself.
const limDailyKeyTTL = 48 * time.Hour

// Priority orders the sends of one bot when its rate is the bottleneck.
type Priority int

const (
	// PriorityInteractive is a reply or a single message: a user is waiting for it. While an
	// interactive send of a bot waits for a slot, bulk sends of that bot get none.
	PriorityInteractive Priority = iota
	// PriorityBulk is a broadcast send.
	PriorityBulk
)

// Refusal reasons of Limiter.Acquire.
const (
	RefusedPaused = "paused" // the bot is paused after Telegram's 429 retry_after
	RefusedChat   = "chat"   // this chat had a message too recently (per-chat limit)
	RefusedBot    = "bot"    // the bot's per-second window is full
	RefusedGlobal = "global" // TELEGRAM_RATE_LIMIT's next slot is too far away
)

// LimiterConfig configures a Limiter. A zero rate or interval disables that limit.
type LimiterConfig struct {
	// GlobalRate caps sends across all bots and all worker processes (TELEGRAM_RATE_LIMIT).
	// Sends are spaced by GlobalRate.Interval(). Zero disables it.
	GlobalRate config.Rate
	// BotRate is the most sends of one bot, across all workers, whose arrival at Telegram can
	// fall in any window of BotRate.Per (TELEGRAM_BOT_RATE_LIMIT, e.g. 30/s: Telegram's
	// broadcast limit, core.telegram.org/bots/faq). Zero disables it.
	BotRate config.Rate
	// PaidBotRate replaces BotRate for permits with AcquireOpts.Paid (sends with
	// allow_paid_broadcast: Telegram allows up to 1000/s per bot for a fee,
	// core.telegram.org/bots/api#sendmessage; TELEGRAM_PAID_BOT_RATE). Paid and unpaid sends
	// of a bot share its window: a paid send is granted while the window holds fewer than
	// PaidBotRate.N, an unpaid one while it holds fewer than BotRate.N. GlobalRate, the chat
	// windows and 429 pauses apply to paid sends as to any. Zero: BotRate.
	PaidBotRate config.Rate
	// ChatInterval is the window of one private chat (chat id > 0): at most one message may
	// arrive in any ChatInterval (Telegram: about 1 message/s per chat,
	// core.telegram.org/bots/faq). Zero disables it.
	ChatInterval time.Duration
	// GroupChatRate limits one group, supergroup or channel (chat id < 0). Default (zero):
	// DefaultGroupChatRate (20/min). N < 0 disables it.
	GroupChatRate config.Rate
	// InFlight bounds how long a send can be in flight: the Bot API request timeout plus a
	// margin. A permit whose Done is never called (its process died) counts as completing
	// InFlight after it was granted. Default: 35s.
	InFlight time.Duration
	// MaxWaiters is the most goroutines of one process that may queue for one bot's slots at
	// once; more are refused at once with a RetryAfter that reflects the queue (so that a
	// bot's backlog never holds a process's task slots). Default: 8.
	MaxWaiters int
	// DailySeed reseeds a bot's daily counter that Redis lost (daily.go). Nil: a missing
	// counter starts at zero.
	DailySeed DailySeedFunc
}

// Limiter holds the send limits shared by every worker process, in Redis: a global rate, a
// sliding window per bot and per chat, Telegram's 429 pause per bot, the priority of
// interactive sends and a daily counter per bot. All decisions use the Redis server's clock
// (TIME), so processes with skewed clocks share one schedule.
//
// Windows count a send from the moment its permit is granted until Permit.Done records its
// completion (Redis time), so a send is counted over the whole interval in which Telegram
// could have received it: a send may start only while fewer than N sends of the bot were in
// flight or completed within the last window. Whatever the network jitter, no window of
// Telegram's arrivals can then hold more than N sends (see Acquire). Achieved rate per bot:
// N / (window + round-trip time), e.g. 29.9/s for 30/s with a 5 ms round trip.
//
// Keys (db of the given client). Every key that one script touches on a Redis Cluster shares
// a hash tag, so that the Limiter works there as on a single Redis: the bot's keys carry
// {<botID>}, and the global key is touched alone, by its own script:
//
//	tg:rate:global                        next free send time, all bots (µs since the epoch)
//	tg:{<botID>}:win                      sorted set: sends of the bot, score = completion (µs)
//	tg:{<botID>}:chat:<chatID>            sorted set: sends to one chat of the bot
//	tg:{<botID>}:pause                    time until which the bot is paused after a 429
//	tg:{<botID>}:prio                     set while an interactive send of the bot waits
//	tg:{<botID>}:next                     earliest start of the bot's next send (spacing)
//	tg:{<botID>}:daily:<YYYYMMDD>         sends reserved on that UTC day
//
// On a Redis Cluster (any client but a single-server *redis.Client), Acquire runs the bot's
// script first (pause, chat, window, spacing; it adds the permit to the windows), then, only
// when the bot granted a slot, the global script, which reserves the next
// TELEGRAM_RATE_LIMIT slot at or after the bot's slot. When the global slot is beyond the
// caller's wait, the bot's permit is cancelled (removed from its windows): no global slot is
// ever spent on a send the bot refused, and no send starts before its global slot. Each
// script uses the clock of the Redis node that holds its keys; only durations (never
// instants) pass from one to the other, so clock skew between Cluster nodes cannot move a
// slot earlier. On a single Redis the bot's script also takes the global slot (one round
// trip per send instead of two; the keys' slots do not matter there). Completions are
// recorded per bot, in one pipeline per batch.
type Limiter struct {
	rdb redis.UniversalClient
	cfg LimiterConfig
	// split runs the global step as its own script (limGlobalScript) after the bot's: needed
	// when the keys may live on different servers (Redis Cluster, Ring). On a single Redis
	// the bot's script takes the global slot too, saving a round trip per send.
	split bool

	mu    sync.Mutex
	gates map[uuid.UUID]*botGate

	// globalNext is this process's lower bound on the next free global slot (local
	// UnixNano), learnt from the global script's answers: the global slot never moves back,
	// so a send whose wait ends before it can be refused without asking Redis.
	globalNext atomic.Int64

	doneMu      sync.Mutex
	donePending []Permit // completions not yet recorded
	doneRunning bool     // a flusher goroutine is running
}

// Completions are recorded in batches: at most doneBatch permits per script call, at most
// doneDelay after the send completed. Recording a completion later than it happened only
// keeps the send in its windows a little longer: it can never let a window overflow.
const (
	doneBatch = 256
	doneDelay = 2 * time.Millisecond
)

// botGate lets one goroutine of this process at a time ask Redis for a bot's slots, so that
// many waiters of one bot do not poll Redis together.
type botGate struct {
	ch      chan struct{}
	waiters int // guarded by Limiter.mu
}

// NewLimiter returns a Limiter on rdb with cfg. It does not contact Redis. With a
// single-server client (*redis.Client, also the Sentinel failover client) Acquire takes the
// global slot in the bot's script; with any other (*redis.ClusterClient, *redis.Ring) in a
// script of its own (see Limiter).
func NewLimiter(rdb redis.UniversalClient, cfg LimiterConfig) *Limiter {
	if cfg.GroupChatRate.N == 0 {
		cfg.GroupChatRate = DefaultGroupChatRate
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 35 * time.Second
	}
	if cfg.MaxWaiters <= 0 {
		cfg.MaxWaiters = 8
	}
	_, single := rdb.(*redis.Client)
	return &Limiter{rdb: rdb, cfg: cfg, split: !single, gates: map[uuid.UUID]*botGate{}}
}

// limAcquireScript grants one send permit of a bot if the bot's limits allow it now. KEYS[1]
// to KEYS[5] carry the bot's hash tag; KEYS[6], the global key, is passed on a single Redis
// only (Limiter.split false), where the script also takes the global slot.
//
//	KEYS[1] pause  KEYS[2] prio  KEYS[3] chat window  KEYS[4] bot window
//	KEYS[5] the bot's next start   KEYS[6] (optional) the global next free time
//	ARGV[1] member (unique per permit)   ARGV[2] priority (0 interactive, 1 bulk)
//	ARGV[3] chat N    ARGV[4] chat window µs   ARGV[5] bot N   ARGV[6] bot window µs
//	ARGV[7] in-flight bound µs (from the slot; without KEYS[6] it includes the longest
//	global wait)   ARGV[8] the bot's spacing µs (0: none)   ARGV[9] how far ahead a spaced
//	slot may be granted µs (the caller sleeps until it, so that its next request overlaps
//	the wait)   ARGV[10] global interval µs   ARGV[11] max wait µs (with KEYS[6])
//
// Returns {code, wait µs}: code 0 granted (wait = time until the slot), 1 paused, 2 chat
// window full, 3 bot window full (or yielding to an interactive send), 4 (with KEYS[6]) the
// global slot is beyond the max wait. A granted
// permit is added to both windows with score = slot + in-flight bound; Done lowers the score
// to the completion time. Entries whose score is a full window in the past are dropped first.
var limAcquireScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local p = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if p > now then
  return {1, p - now}
end
local prio = tonumber(ARGV[2])
local chatN, chatW = tonumber(ARGV[3]), tonumber(ARGV[4])
local botN, botW = tonumber(ARGV[5]), tonumber(ARGV[6])
if chatN > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now - chatW)
  if redis.call('ZCARD', KEYS[3]) >= chatN then
    local e = redis.call('ZRANGE', KEYS[3], 0, 0, 'WITHSCORES')
    local s = tonumber(e[2])
    local w = s + chatW - now
    if s > now then w = 20000 end
    return {2, w}
  end
end
if botN > 0 then
  if prio == 1 and redis.call('EXISTS', KEYS[2]) == 1 then
    return {3, 10000}
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now - botW)
  if redis.call('ZCARD', KEYS[4]) >= botN then
    if prio == 0 then
      redis.call('SET', KEYS[2], '1', 'PX', 2000)
    end
    local e = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
    local s = tonumber(e[2])
    local w = s + botW - now
    if s > now then w = 20000 end
    if w < 1000 then w = 1000 end
    return {3, w}
  end
end
local slot = now
if botN > 0 then
  local nx = tonumber(redis.call('GET', KEYS[5]) or '0') or 0
  if nx > now + tonumber(ARGV[9]) then
    return {3, nx - now - tonumber(ARGV[9])}
  end
  if nx > slot then slot = nx end
end
if #KEYS >= 6 then
  local g = tonumber(redis.call('GET', KEYS[6]) or '0') or 0
  if g > slot then slot = g end
  if slot - now > tonumber(ARGV[11]) then
    if g < slot then
      return {3, slot - now}
    end
    return {4, slot - now}
  end
  local nxt = slot + tonumber(ARGV[10])
  redis.call('SET', KEYS[6], string.format('%.0f', nxt), 'PX', math.floor((nxt - now) / 1000) + 1000)
end
if prio == 0 then
  redis.call('DEL', KEYS[2])
end
local score = string.format('%.0f', slot + tonumber(ARGV[7]))
if chatN > 0 then
  redis.call('ZADD', KEYS[3], score, ARGV[1])
  redis.call('PEXPIRE', KEYS[3], math.floor((slot + tonumber(ARGV[7]) + chatW - now) / 1000) + 1000)
end
if botN > 0 then
  redis.call('ZADD', KEYS[4], score, ARGV[1])
  redis.call('PEXPIRE', KEYS[4], math.floor((slot + tonumber(ARGV[7]) + botW - now) / 1000) + 1000)
  local sp = tonumber(ARGV[8])
  if sp > 0 then
    redis.call('SET', KEYS[5], string.format('%.0f', slot + sp), 'PX', math.floor((slot + sp - now) / 1000) + 1000)
  end
end
return {0, slot - now}
`)

// limGlobalScript reserves the next global slot (TELEGRAM_RATE_LIMIT) for a send that the
// bot's limits allow in ARGV[2] µs: slot = max(now + ARGV[2], KEYS[1]). When slot is within
// ARGV[3] µs of now, KEYS[1] becomes slot + ARGV[1] µs (the global interval) and it returns
// {0, slot - now, the new KEYS[1] - now}; otherwise it reserves nothing and returns
// {1, slot - now, KEYS[1] - now}.
var limGlobalScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local slot = now + tonumber(ARGV[2])
local g = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if g > slot then slot = g end
if slot - now > tonumber(ARGV[3]) then
  return {1, slot - now, g - now}
end
local nxt = slot + tonumber(ARGV[1])
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.floor((nxt - now) / 1000) + 1000)
return {0, slot - now, nxt - now}
`)

// limDoneScript records the completion (now, Redis time) of permits of one bot in the
// windows that still hold them: permit ARGV[i] is in KEYS[2i-1] and KEYS[2i] (the same key
// twice when it has one window). All keys carry the bot's hash tag.
var limDoneScript = redis.NewScript(`
local t = redis.call('TIME')
local now = string.format('%.0f', tonumber(t[1]) * 1000000 + tonumber(t[2]))
for i = 1, #ARGV do
  redis.call('ZADD', KEYS[2 * i - 1], 'XX', now, ARGV[i])
  redis.call('ZADD', KEYS[2 * i], 'XX', now, ARGV[i])
end
return 1
`)

// limPauseScript sets KEYS[1] to max(existing, now + ARGV[1] µs) with a matching expiry.
var limPauseScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local untilT = now + tonumber(ARGV[1])
local cur = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if cur > untilT then untilT = cur end
local ttl = math.floor((untilT - now) / 1000) + 1000
redis.call('SET', KEYS[1], string.format('%.0f', untilT), 'PX', ttl)
return untilT - now
`)

// limDailyReleaseScript decrements KEYS[1] when it is above zero.
var limDailyReleaseScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if n > 0 then
  return redis.call('DECR', KEYS[1])
end
return 0
`)

func limGlobalKey() string               { return "tg:rate:global" }
func limBotTag(botID uuid.UUID) string   { return "tg:{" + botID.String() + "}" }
func limBotKey(botID uuid.UUID) string   { return limBotTag(botID) + ":win" }
func limPauseKey(botID uuid.UUID) string { return limBotTag(botID) + ":pause" }
func limPrioKey(botID uuid.UUID) string  { return limBotTag(botID) + ":prio" }
func limNextKey(botID uuid.UUID) string  { return limBotTag(botID) + ":next" }
func limChatKey(botID uuid.UUID, chatID int64) string {
	return limBotTag(botID) + ":chat:" + strconv.FormatInt(chatID, 10)
}
func limDailyKey(botID uuid.UUID, now time.Time) string {
	return limBotTag(botID) + ":daily:" + now.UTC().Format("20060102")
}

// chatLimit is the (count, window) of chatID: one per ChatInterval for private chats
// (id > 0), GroupChatRate for groups and channels (id < 0). count 0 disables it.
func (l *Limiter) chatLimit(chatID int64) (int, time.Duration) {
	if chatID < 0 {
		if l.cfg.GroupChatRate.N <= 0 {
			return 0, 0
		}
		return l.cfg.GroupChatRate.N, l.cfg.GroupChatRate.Per
	}
	if l.cfg.ChatInterval <= 0 {
		return 0, 0
	}
	return 1, l.cfg.ChatInterval
}

// Permit is one granted send slot of a bot to a chat. Call Done once the Bot API call has
// returned (whatever its result), or Cancel if the call was never made.
type Permit struct {
	// StartAt is when the send may start (now, unless AcquireOpts.NoSleep returned a permit
	// for a slot a little ahead).
	StartAt time.Time

	l      *Limiter
	bot    uuid.UUID
	keys   []string // the windows that hold the permit, all tagged {bot}
	member string
}

// Done records that the send of p has completed: within doneDelay its completion time
// (Redis time) is written, and the send leaves the windows one window after it. Done does
// not wait for Redis; if the write fails, the permit simply counts until its in-flight
// bound.
func (p Permit) Done() {
	if p.l == nil || len(p.keys) == 0 {
		return
	}
	l := p.l
	l.doneMu.Lock()
	l.donePending = append(l.donePending, p)
	start := !l.doneRunning
	l.doneRunning = true
	l.doneMu.Unlock()
	if start {
		go l.flushDone()
	}
}

// flushDone writes pending completions every doneDelay until none is left.
func (l *Limiter) flushDone() {
	for {
		time.Sleep(doneDelay)
		l.doneMu.Lock()
		batch := l.donePending
		if len(batch) > doneBatch {
			batch = batch[:doneBatch]
		}
		l.donePending = l.donePending[len(batch):]
		if len(batch) == 0 {
			l.doneRunning = false
			l.donePending = nil
			l.doneMu.Unlock()
			return
		}
		l.doneMu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		l.recordDone(ctx, batch) // on failure: counted until InFlight
		cancel()
	}
}

// recordDone writes the completions of batch: on a single Redis in one limDoneScript call;
// on a Cluster (split) one call per bot (a script's keys must share a hash slot), all in one
// pipeline, which the client sends to each master in parallel. Errors are dropped: a permit
// whose completion is not recorded counts until its in-flight bound.
func (l *Limiter) recordDone(ctx context.Context, batch []Permit) {
	type group struct {
		keys    []string
		members []any
	}
	var order []uuid.UUID
	groups := map[uuid.UUID]*group{}
	for _, p := range batch {
		bot := uuid.Nil // one group: any keys may go together in one call
		if l.split {
			bot = p.bot
		}
		g := groups[bot]
		if g == nil {
			g = &group{}
			groups[bot] = g
			order = append(order, bot)
		}
		g.keys = append(g.keys, p.keys[0], p.keys[len(p.keys)-1])
		g.members = append(g.members, p.member)
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(order))
	for i, bot := range order {
		cmds[i] = limDoneScript.EvalSha(ctx, pipe, groups[bot].keys, groups[bot].members...)
	}
	_, _ = pipe.Exec(ctx)
	for i, bot := range order {
		if err := cmds[i].Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// Not loaded on that node yet (first use, restart, fail-over): EVAL loads it.
			_ = limDoneScript.Run(ctx, l.rdb, groups[bot].keys, groups[bot].members...).Err()
		}
	}
}

// Cancel gives the slot of p back: use it only when the Bot API was not called.
func (p Permit) Cancel(ctx context.Context) error {
	if p.l == nil || len(p.keys) == 0 {
		return nil
	}
	pipe := p.l.rdb.Pipeline()
	for _, k := range p.keys {
		pipe.ZRem(context.WithoutCancel(ctx), k, p.member)
	}
	if _, err := pipe.Exec(context.WithoutCancel(ctx)); err != nil {
		return fmt.Errorf("cancel send permit: %w", err)
	}
	return nil
}

// Refusal says why Acquire granted no permit and when to try again.
type Refusal struct {
	// Reason is RefusedPaused, RefusedChat, RefusedBot or RefusedGlobal.
	Reason string
	// RetryAfter is the expected time from now until a permit could be granted.
	RetryAfter time.Duration
}

// AcquireOpts are the options of Acquire.
type AcquireOpts struct {
	// Priority of the send; see PriorityInteractive.
	Priority Priority
	// MaxWait is how long Acquire may block waiting for the bot's window, the global slot,
	// the chat (WaitForChat) or a pause (WaitForPause) before it gives up with a Refusal.
	MaxWait time.Duration
	// WaitForChat makes Acquire wait for a busy chat (within MaxWait); otherwise a busy chat
	// is refused at once (RefusedChat), so that a broadcast moves on to other chats.
	WaitForChat bool
	// WaitForPause makes Acquire wait out a 429 pause (within MaxWait); otherwise it is
	// refused at once (RefusedPaused).
	WaitForPause bool
	// Paid paces the send at LimiterConfig.PaidBotRate instead of BotRate (a send with
	// allow_paid_broadcast).
	Paid bool
	// NoSleep returns a permit granted for a slot a little ahead (at most spacingAhead) at
	// once, with Permit.StartAt set, instead of sleeping until it: the caller waits until
	// StartAt before sending, and can meanwhile ask for the next permit.
	NoSleep bool
}

// Acquire grants a permit to send one message of bot botID to chatID under every limit:
// the bot's 429 pause, the chat's window, the bot's window (interactive sends first) and
// the global rate, for all processes sharing Redis. It blocks (ctx-aware) while the wait is
// within opts.MaxWait; when it returns a permit the send may start at once.
//
// Why no window of arrivals can exceed N: let W be any window and j the send in it whose
// permit was granted last, at time g_j (Redis time) ≤ its start ≤ its arrival ≤ W's end.
// Every other send i arriving in W was granted before g_j and arrived after W's start ≥
// g_j - window, so its completion (score) was > g_j - window: it was still in the bot's
// window when j was granted. Acquire grants j only while the window holds fewer than N.
//
// When the global slot is already known (from an earlier answer in this process) to be beyond
// the wait, the refusal is RefusedGlobal at once, whatever the bot's own limits would say.
//
// Exactly one of the results is meaningful: a Permit (refusal nil, err nil), a *Refusal, or
// err (Redis failure or ctx's error; nothing granted).
func (l *Limiter) Acquire(ctx context.Context, botID uuid.UUID, chatID int64, opts AcquireOpts) (Permit, *Refusal, error) {
	deadline := time.Now().Add(opts.MaxWait)
	g, ok := l.enterGate(botID)
	if !ok {
		// Too many of this process's goroutines queue for this bot already.
		return Permit{}, &Refusal{Reason: RefusedBot, RetryAfter: l.queueWait(botID)}, nil
	}
	select {
	case g.ch <- struct{}{}:
	case <-ctx.Done():
		l.leaveGate(g)
		return Permit{}, nil, ctx.Err()
	}
	release := func() {
		<-g.ch
		l.leaveGate(g)
	}
	chatN, chatW := l.chatLimit(chatID)
	keys := []string{limPauseKey(botID), limPrioKey(botID), limChatKey(botID, chatID), limBotKey(botID), limNextKey(botID)}
	member := newPermitID()
	gi := max(l.cfg.GlobalRate.Interval(), 0)
	botRate := l.botRate(opts.Paid)
	args := []any{member, int(opts.Priority), chatN, chatW.Microseconds(), max(botRate.N, 0),
		botRate.Per.Microseconds(), l.cfg.InFlight.Microseconds(), l.spacing(botRate).Microseconds(), spacingAhead.Microseconds(),
		gi.Microseconds(), 0}
	inScript := gi > 0 && !l.split // the bot's script takes the global slot too
	if inScript {
		keys = append(keys, limGlobalKey())
	}
	for {
		maxWait := max(time.Until(deadline), 0)
		if gi > 0 {
			// The global slot never moves back: when it is known to be beyond the wait,
			// neither script is needed.
			if w := time.Duration(l.globalNext.Load() - time.Now().UnixNano()); w > maxWait {
				release()
				return Permit{}, &Refusal{Reason: RefusedGlobal, RetryAfter: w}, nil
			}
			args[10] = maxWait.Microseconds()
			if l.split {
				// The send may start up to maxWait after the bot's slot (the global wait):
				// count it in the windows for that long too should its process die first.
				args[6] = (l.cfg.InFlight + maxWait).Microseconds()
			}
		}
		asked := time.Now()
		res, err := runPair(ctx, limAcquireScript, l.rdb, keys, args...)
		if err != nil {
			release()
			if ctx.Err() != nil {
				return Permit{}, nil, ctx.Err()
			}
			return Permit{}, nil, fmt.Errorf("acquire send slot: %w", err)
		}
		wait := time.Duration(max(res[1], 0)) * time.Microsecond
		var reason string
		switch res[0] {
		case 0:
			p := Permit{l: l, bot: botID, member: member}
			if chatN > 0 {
				p.keys = append(p.keys, keys[2])
			}
			if botRate.N > 0 {
				p.keys = append(p.keys, keys[3])
			}
			// The bot's next request may go to Redis while this one takes its global slot.
			release()
			if l.split && gi > 0 {
				gw, gNext, ok, err := l.reserveGlobal(ctx, wait, maxWait)
				if err != nil || !ok {
					// Nothing may be sent: the bot's windows are given back.
					_ = p.Cancel(ctx)
					if err != nil {
						if ctx.Err() != nil {
							return Permit{}, nil, ctx.Err()
						}
						return Permit{}, nil, fmt.Errorf("acquire global send slot: %w", err)
					}
					if gNext < gw { // the bot's own spacing put the slot beyond the wait
						return Permit{}, &Refusal{Reason: RefusedBot, RetryAfter: gw}, nil
					}
					return Permit{}, &Refusal{Reason: RefusedGlobal, RetryAfter: gw}, nil
				}
				wait = gw
			}
			metrics.ObserveLimiterWait(metrics.WaitSlot, wait)
			p.StartAt = time.Now().Add(wait)
			if opts.NoSleep {
				return p, nil, nil
			}
			if wait > 0 && !sleepCtx(ctx, wait) {
				// The global slot is spent either way; the windows are given back.
				_ = p.Cancel(ctx)
				return Permit{}, nil, ctx.Err()
			}
			return p, nil, nil
		case 1:
			reason = RefusedPaused
			if !opts.WaitForPause {
				release()
				return Permit{}, &Refusal{Reason: reason, RetryAfter: wait}, nil
			}
		case 2:
			reason = RefusedChat
			if !opts.WaitForChat {
				release()
				return Permit{}, &Refusal{Reason: reason, RetryAfter: wait}, nil
			}
		case 3:
			reason = RefusedBot
		default:
			reason = RefusedGlobal
			l.learnGlobalNext(asked.Add(wait))
		}
		if time.Now().Add(wait).After(deadline) {
			release()
			return Permit{}, &Refusal{Reason: reason, RetryAfter: wait}, nil
		}
		metrics.ObserveLimiterWait(reason, wait)
		if !sleepCtx(ctx, wait) {
			release()
			return Permit{}, nil, ctx.Err()
		}
	}
}

// reserveGlobal reserves the next TELEGRAM_RATE_LIMIT slot no earlier than botWait from now
// and within maxWait. It returns the wait until the slot, the wait until the next free
// global slot as Redis held it before the call (next), and ok; when the slot is beyond
// maxWait, ok is false, nothing is reserved and wait is the time until the slot. It keeps
// globalNext up to date either way.
func (l *Limiter) reserveGlobal(ctx context.Context, botWait, maxWait time.Duration) (wait, next time.Duration, ok bool, err error) {
	gi := l.cfg.GlobalRate.Interval()
	asked := time.Now()
	res, err := limGlobalScript.Run(ctx, l.rdb, []string{limGlobalKey()},
		gi.Microseconds(), botWait.Microseconds(), maxWait.Microseconds()).Int64Slice()
	if err != nil {
		return 0, 0, false, err
	}
	if len(res) != 3 {
		return 0, 0, false, errors.New("unexpected script reply")
	}
	wait = time.Duration(max(res[1], 0)) * time.Microsecond
	// A lower bound of the next free slot in local time: measured from before the call, so
	// that the round trip never makes it later than the slot Redis holds.
	l.learnGlobalNext(asked.Add(time.Duration(res[2]) * time.Microsecond))
	if res[0] == 0 {
		return wait, 0, true, nil
	}
	return wait, time.Duration(res[2]) * time.Microsecond, false, nil
}

// learnGlobalNext raises globalNext to next (local time) when next is later.
func (l *Limiter) learnGlobalNext(next time.Time) {
	for {
		cur := l.globalNext.Load()
		if next.UnixNano() <= cur || l.globalNext.CompareAndSwap(cur, next.UnixNano()) {
			return
		}
	}
}

// runPair runs script and decodes its {code, value} reply.
func runPair(ctx context.Context, script *redis.Script, rdb redis.Scripter, keys []string, args ...any) ([]int64, error) {
	res, err := script.Run(ctx, rdb, keys, args...).Int64Slice()
	if err != nil {
		return nil, err
	}
	if len(res) != 2 {
		return nil, errors.New("unexpected script reply")
	}
	return res, nil
}

// spacingAhead is how far in the future a bot's next spaced slot may be granted: the permit
// then waits until its slot, and the Redis round trip of the next request overlaps that
// wait instead of adding to the spacing. Counting the send in the windows from the grant,
// before its start, only makes them stricter.
const spacingAhead = 100 * time.Millisecond

// botRate is the per-bot rate of a send: PaidBotRate for a paid one (when set), else BotRate.
func (l *Limiter) botRate(paid bool) config.Rate {
	if paid && l.cfg.PaidBotRate.N > 0 {
		return l.cfg.PaidBotRate
	}
	return l.cfg.BotRate
}

// spacing is the least time between two sends of one bot: 90% of botRate's interval, so
// that a bot's sends are spread over its window rather than sent in bursts (fewer sends in
// flight at once, smoother arrivals), while the window stays the binding limit.
func (l *Limiter) spacing(botRate config.Rate) time.Duration {
	return botRate.Interval() * 9 / 10
}

// enterGate registers a waiter for botID's gate; false when MaxWaiters already wait.
func (l *Limiter) enterGate(botID uuid.UUID) (*botGate, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	g := l.gates[botID]
	if g == nil {
		g = &botGate{ch: make(chan struct{}, 1)}
		l.gates[botID] = g
	}
	if g.waiters >= l.cfg.MaxWaiters {
		return nil, false
	}
	g.waiters++
	return g, true
}

func (l *Limiter) leaveGate(g *botGate) {
	l.mu.Lock()
	g.waiters--
	l.mu.Unlock()
}

// queueWait estimates how long the waiters queued for botID's gate will take: one bot
// interval each (at least a second).
func (l *Limiter) queueWait(botID uuid.UUID) time.Duration {
	l.mu.Lock()
	n := 0
	if g := l.gates[botID]; g != nil {
		n = g.waiters
	}
	l.mu.Unlock()
	return max(time.Duration(n+1)*l.cfg.BotRate.Interval(), time.Second)
}

// sleepCtx sleeps d; false when ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// newPermitID returns a random member name for a permit.
func newPermitID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// PauseBot pauses every send of bot botID, in all processes, for d from now (Redis time):
// pause-until becomes max(existing pause-until, now+d). Used after Telegram's 429 with
// parameters.retry_after (core.telegram.org/bots/api#responseparameters). d <= 0 is a no-op.
func (l *Limiter) PauseBot(ctx context.Context, botID uuid.UUID, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	if err := limPauseScript.Run(ctx, l.rdb, []string{limPauseKey(botID)}, d.Microseconds()).Err(); err != nil {
		return fmt.Errorf("pause bot: %w", err)
	}
	return nil
}

// ReserveDaily counts one send of bot botID against its daily limit for the UTC day of now.
// It returns false, reserving nothing, when limit sends are already counted that day.
// limit 0 means unlimited: true without touching Redis. Counters live 48 h. A missing
// counter (Redis lost it) is first reseeded from PostgreSQL with LimiterConfig.DailySeed
// (daily.go).
func (l *Limiter) ReserveDaily(ctx context.Context, botID uuid.UUID, limit int, now time.Time) (ok bool, err error) {
	if limit <= 0 {
		return true, nil
	}
	return l.reserveDaily(ctx, botID, limit, now)
}

// ReleaseDaily gives back one send reserved by ReserveDaily for the UTC day of now, when the
// send did not happen. Pass the same now as to ReserveDaily. It never goes below zero.
func (l *Limiter) ReleaseDaily(ctx context.Context, botID uuid.UUID, now time.Time) error {
	if err := limDailyReleaseScript.Run(ctx, l.rdb, []string{limDailyKey(botID, now)}).Err(); err != nil {
		return fmt.Errorf("release daily send: %w", err)
	}
	return nil
}

// DailyCount returns how many sends of bot botID are counted for the UTC day of now; a
// missing counter is reseeded as by ReserveDaily.
func (l *Limiter) DailyCount(ctx context.Context, botID uuid.UUID, now time.Time) (int, error) {
	return l.dailyCount(ctx, botID, now)
}

// NextUTCMidnight returns the first instant of the UTC day after now's: when a bot's daily
// limit resets.
func NextUTCMidnight(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}
