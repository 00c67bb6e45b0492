package telegram

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/config"
)

// DefaultGroupChatInterval is the spacing of sends to one group or channel (chat id < 0):
// Telegram allows about 20 messages per minute in a group (core.telegram.org/bots/faq,
// "My bot is hitting limits, how do I avoid this?").
const DefaultGroupChatInterval = 3 * time.Second

// limDailyKeyTTL keeps a day's counter a little longer than the day itself.
const limDailyKeyTTL = 48 * time.Hour

// LimiterConfig configures a Limiter. A zero rate or interval disables that limit.
type LimiterConfig struct {
	// GlobalRate caps sends across all bots and all worker processes (TELEGRAM_RATE_LIMIT).
	// Sends are spaced by GlobalRate.Interval(). Zero disables it.
	GlobalRate config.Rate
	// BotRate caps the sends of one bot across all workers (TELEGRAM_BOT_RATE_LIMIT).
	// Telegram allows about 30 messages/s per bot (core.telegram.org/bots/faq); keep a
	// margin for arrival jitter. Sends are spaced by BotRate.Interval(). Zero disables it.
	BotRate config.Rate
	// ChatInterval is the minimum spacing of sends to one private chat (chat id > 0);
	// Telegram allows about 1 message/s per chat (core.telegram.org/bots/faq). Zero
	// disables it.
	ChatInterval time.Duration
	// GroupChatInterval is the minimum spacing of sends to one group, supergroup or
	// channel (chat id < 0). Default (0): DefaultGroupChatInterval (3s, 20/min).
	// Negative disables it.
	GroupChatInterval time.Duration
}

// Limiter holds the send limits shared by every worker process, in Redis: a global rate,
// a rate per bot, a minimum spacing per chat, Telegram's 429 pause per bot and a daily
// counter per bot. All decisions use the Redis server's clock (TIME), so processes with
// skewed clocks still share one schedule.
//
// Keys (db of the given client):
//
//	tg:rate:global                 next free send time, all bots (µs since the epoch)
//	tg:rate:bot:{botID}            next free send time of one bot
//	tg:rate:chat:{botID}:{chatID}  next free send time of one chat of one bot
//	tg:pause:{botID}               time until which the bot is paused after a 429
//	tg:daily:{botID}:{YYYYMMDD}    sends reserved on that UTC day
//
// Redis Cluster: Reserve touches several keys in one script, which Cluster only allows when
// they hash to the same slot. Running on Cluster would need a shared hash tag (for example
// "tg:{rate}:bot:..."), which puts every limit key on one shard; the global limit
// inherently needs that.
type Limiter struct {
	rdb redis.UniversalClient
	cfg LimiterConfig
}

// NewLimiter returns a Limiter on rdb with cfg. It does not contact Redis.
func NewLimiter(rdb redis.UniversalClient, cfg LimiterConfig) *Limiter {
	if cfg.GroupChatInterval == 0 {
		cfg.GroupChatInterval = DefaultGroupChatInterval
	}
	return &Limiter{rdb: rdb, cfg: cfg}
}

// limReserveScript reserves the next send slot across several "next free time" keys.
//
//	KEYS[1]     the bot's pause key (read only)
//	KEYS[2]     the chat key
//	KEYS[3..n]  the other rate keys (global, bot)
//	ARGV[1]     maxWait in µs
//	ARGV[2]     slack in µs (see below)
//	ARGV[i]     for i >= 3: the interval in µs of KEYS[i-1] (0 = that key is disabled)
//
// gate = max(pause-until, chat key) and rate = max(now, global key, bot key). When the gate
// is more than slack after rate, the chat (or the paused bot) is what delays the send:
// nothing is reserved and {2, gate-now, gate} tells the caller to come back then (or {0, ...}
// if that is beyond maxWait). Reserving a far slot there would push the bot's and the global
// schedule past it and idle every other chat meanwhile. Otherwise slot = max(rate, gate); if
// slot-now > maxWait nothing is written and {0, wait, slot} is returned, else every enabled
// key becomes slot+interval (expiring a second after that) and {1, wait, slot} is returned.
// Times are µs since the epoch from Redis TIME, stored with %.0f so that Lua's %.14g number
// formatting never rounds them.
var limReserveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local maxWait = tonumber(ARGV[1])
local gate = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tonumber(ARGV[3]) > 0 then
  local c = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
  if c > gate then gate = c end
end
local rate = now
for i = 3, #KEYS do
  if tonumber(ARGV[i + 1]) > 0 then
    local v = tonumber(redis.call('GET', KEYS[i]) or '0') or 0
    if v > rate then rate = v end
  end
end
if gate > rate + tonumber(ARGV[2]) then
  if gate - now > maxWait then
    return {0, gate - now, gate}
  end
  return {2, gate - now, gate}
end
local slot = rate
if gate > slot then slot = gate end
local wait = slot - now
if wait > maxWait then
  return {0, wait, slot}
end
for i = 2, #KEYS do
  local iv = tonumber(ARGV[i + 1])
  if iv > 0 then
    local nxt = slot + iv
    local ttl = math.floor((nxt - now) / 1000) + 1000
    redis.call('SET', KEYS[i], string.format('%.0f', nxt), 'PX', ttl)
  end
end
return {1, wait, slot}
`)

// reserveSlack is how far past the global/bot schedule a busy chat or a pause may place a
// slot and still have it reserved at once (see limReserveScript).
const reserveSlack = 20 * time.Millisecond

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

// limDailyReserveScript increments KEYS[1] only while it is below ARGV[1]; ARGV[2] is the
// key's expiry in seconds. It returns 1 when a send was reserved, 0 at the limit.
var limDailyReserveScript = redis.NewScript(`
local n = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if n >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
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
func limBotKey(botID uuid.UUID) string   { return "tg:rate:bot:" + botID.String() }
func limPauseKey(botID uuid.UUID) string { return "tg:pause:" + botID.String() }
func limChatKey(botID uuid.UUID, chatID int64) string {
	return "tg:rate:chat:" + botID.String() + ":" + strconv.FormatInt(chatID, 10)
}
func limDailyKey(botID uuid.UUID, now time.Time) string {
	return "tg:daily:" + botID.String() + ":" + now.UTC().Format("20060102")
}

// chatInterval is the spacing for chatID: ChatInterval for private chats (id > 0),
// GroupChatInterval for groups and channels (id < 0).
func (l *Limiter) chatInterval(chatID int64) time.Duration {
	if chatID < 0 {
		return l.cfg.GroupChatInterval
	}
	return l.cfg.ChatInterval
}

// Reserve atomically reserves the next send slot of bot botID to chatID under the global,
// per-bot and per-chat limits and the bot's 429 pause, for all processes sharing Redis.
//
// On ok, wait is how long the caller must still sleep before sending (0 when the slot is
// now). While only the chat's own interval or the bot's pause delays the send, Reserve does
// not book a far slot (that would stall the bot's other chats): it sleeps (ctx-aware) until
// the chat is free and tries again, so it may block, in total no longer than maxWait.
// When the send cannot happen within maxWait of the call, nothing is reserved, ok is false
// and wait is the expected delay from now: retry after about wait (as an asynq
// RetryAfterError) instead of sleeping. A reserved slot is consumed even if the caller then
// does not send. err is a Redis error or ctx's error (nothing reserved).
func (l *Limiter) Reserve(ctx context.Context, botID uuid.UUID, chatID int64, maxWait time.Duration) (wait time.Duration, ok bool, err error) {
	wait, ok, _, err = l.reserve(ctx, botID, chatID, maxWait)
	return wait, ok, err
}

// reserve is Reserve that also returns the slot, in µs since the epoch by the Redis clock.
func (l *Limiter) reserve(ctx context.Context, botID uuid.UUID, chatID int64, maxWait time.Duration) (wait time.Duration, ok bool, slot int64, err error) {
	keys := []string{limPauseKey(botID), limChatKey(botID, chatID), limGlobalKey(), limBotKey(botID)}
	intervals := []time.Duration{l.chatInterval(chatID), l.cfg.GlobalRate.Interval(), l.cfg.BotRate.Interval()}
	args := make([]any, 2, 5)
	args[1] = reserveSlack.Microseconds()
	for _, iv := range intervals {
		args = append(args, max(iv, 0).Microseconds())
	}
	deadline := time.Now().Add(maxWait)
	for {
		args[0] = max(time.Until(deadline), 0).Microseconds()
		res, err := limReserveScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
		if err != nil {
			return 0, false, 0, fmt.Errorf("reserve send slot: %w", err)
		}
		if len(res) != 3 {
			return 0, false, 0, errors.New("reserve send slot: unexpected script reply")
		}
		wait = time.Duration(max(res[1], 0)) * time.Microsecond
		switch res[0] {
		case 1:
			return wait, true, res[2], nil
		case 0:
			return wait, false, 0, nil
		}
		// 2: the chat or the pause is busy until wait; nothing reserved. Sleep and retry.
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, false, 0, ctx.Err()
		}
	}
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
// limit 0 means unlimited: true without touching Redis. Counters live 48 h.
func (l *Limiter) ReserveDaily(ctx context.Context, botID uuid.UUID, limit int, now time.Time) (ok bool, err error) {
	if limit <= 0 {
		return true, nil
	}
	n, err := limDailyReserveScript.Run(ctx, l.rdb, []string{limDailyKey(botID, now)}, limit, int(limDailyKeyTTL/time.Second)).Int()
	if err != nil {
		return false, fmt.Errorf("reserve daily send: %w", err)
	}
	return n == 1, nil
}

// ReleaseDaily gives back one send reserved by ReserveDaily for the UTC day of now, when the
// send did not happen. Pass the same now as to ReserveDaily. It never goes below zero.
func (l *Limiter) ReleaseDaily(ctx context.Context, botID uuid.UUID, now time.Time) error {
	if err := limDailyReleaseScript.Run(ctx, l.rdb, []string{limDailyKey(botID, now)}).Err(); err != nil {
		return fmt.Errorf("release daily send: %w", err)
	}
	return nil
}

// DailyCount returns how many sends of bot botID are counted for the UTC day of now.
func (l *Limiter) DailyCount(ctx context.Context, botID uuid.UUID, now time.Time) (int, error) {
	n, err := l.rdb.Get(ctx, limDailyKey(botID, now)).Int()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("daily count: %w", err)
	}
	return n, nil
}

// NextUTCMidnight returns the first instant of the UTC day after now's: when a bot's daily
// limit resets.
func NextUTCMidnight(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d+1, 0, 0, 0, 0, time.UTC)
}
