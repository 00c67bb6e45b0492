package telegram

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
)

// Daily counters survive a Redis that lost them. A bot's daily counter (see
// Limiter.ReserveDaily) lives only in Redis; when Redis restarts without persistence, is
// flushed, or evicts the key, the counter would start again at zero and the bot could send
// its daily limit a second time that day. So a missing counter is reseeded, before anything
// is reserved, from what PostgreSQL recorded as sent that UTC day (LimiterConfig.DailySeed,
// DailySent): the count then continues where it was, short only of the sends that were in
// flight (reserved but not yet recorded) when the key was lost.

// DailySeedFunc returns how many sends of bot botID were recorded as sent during the UTC day
// [dayStart, dayStart+24h). Limiter calls it when the day's counter is missing in Redis.
type DailySeedFunc func(ctx context.Context, botID uuid.UUID, dayStart time.Time) (int, error)

// limDailySeedReserveScript reserves one send of a day: KEYS[1] the day's counter, ARGV[1]
// the limit, ARGV[2] the key's expiry in seconds, ARGV[3] the seed ("" = none). When the key
// is missing it is first set to the seed, or, without one, -1 is returned and nothing is
// changed (the caller computes the seed and calls again). It returns 1 when a send was
// reserved, 0 at the limit.
var limDailySeedReserveScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
  if ARGV[3] == '' then
    return -1
  end
  v = ARGV[3]
  redis.call('SET', KEYS[1], v, 'EX', ARGV[2])
end
local n = tonumber(v) or 0
if n >= tonumber(ARGV[1]) then
  return 0
end
redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
`)

// utcDayStart returns the first instant of now's UTC day.
func utcDayStart(now time.Time) time.Time {
	y, m, d := now.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// reserveDaily is ReserveDaily for limit > 0: one script call while the counter exists; a
// missing counter costs one PostgreSQL count (DailySeed) and a second call.
func (l *Limiter) reserveDaily(ctx context.Context, botID uuid.UUID, limit int, now time.Time) (bool, error) {
	key := limDailyKey(botID, now)
	ttl := int(limDailyKeyTTL / time.Second)
	seed := ""
	if l.cfg.DailySeed == nil {
		seed = "0"
	}
	n, err := limDailySeedReserveScript.Run(ctx, l.rdb, []string{key}, limit, ttl, seed).Int()
	if err == nil && n == -1 {
		var c int
		if c, err = l.dailySeed(ctx, botID, now); err == nil {
			n, err = limDailySeedReserveScript.Run(ctx, l.rdb, []string{key}, limit, ttl, strconv.Itoa(c)).Int()
		}
	}
	if err != nil {
		return false, fmt.Errorf("reserve daily send: %w", err)
	}
	return n == 1, nil
}

// dailyCount is DailyCount: the counter, or when it is missing the seed, stored (SET NX) so
// that the count continues from it.
func (l *Limiter) dailyCount(ctx context.Context, botID uuid.UUID, now time.Time) (int, error) {
	key := limDailyKey(botID, now)
	n, err := l.rdb.Get(ctx, key).Int()
	if errors.Is(err, redis.Nil) {
		if l.cfg.DailySeed == nil {
			return 0, nil
		}
		if n, err = l.dailySeed(ctx, botID, now); err != nil {
			return 0, fmt.Errorf("daily count: %w", err)
		}
		set, serr := l.rdb.SetNX(ctx, key, n, limDailyKeyTTL).Result()
		if serr != nil || set {
			return n, serr
		}
		n, err = l.rdb.Get(ctx, key).Int() // set concurrently
	}
	if err != nil {
		return 0, fmt.Errorf("daily count: %w", err)
	}
	return n, nil
}

func (l *Limiter) dailySeed(ctx context.Context, botID uuid.UUID, now time.Time) (int, error) {
	n, err := l.cfg.DailySeed(ctx, botID, utcDayStart(now))
	if err != nil {
		return 0, fmt.Errorf("reseed daily counter from PostgreSQL: %w", err)
	}
	return n, nil
}

// DailySent counts the sends of bot botID recorded as sent in PostgreSQL during the UTC day
// [dayStart, dayStart+24h): outbound messages and broadcast recipients with status "sent"
// and sent_at in the day. It is the Limiter's DailySeed. Errors: PostgreSQL failures.
func (s *Service) DailySent(ctx context.Context, botID uuid.UUID, dayStart time.Time) (int, error) {
	if s.db == nil {
		return 0, nil
	}
	dayEnd := dayStart.Add(24 * time.Hour)
	var n int
	err := s.db.NewRaw(`SELECT
		(SELECT count(*) FROM messages
		  WHERE bot_id = ? AND direction = 'outbound' AND status = 'sent' AND sent_at >= ? AND sent_at < ?)
		+ (SELECT count(*) FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id
		  WHERE b.bot_id = ? AND (b.completed_at IS NULL OR b.completed_at >= ?)
		    AND r.status = 'sent' AND r.sent_at >= ? AND r.sent_at < ?)`,
		botID, dayStart, dayEnd, botID, dayStart, dayStart, dayEnd).Scan(ctx, &n)
	if err != nil {
		return 0, fmt.Errorf("count sends of the day: %w", err)
	}
	return n, nil
}
