package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// Bounds of the alert throttle of POST /messages/ (throttle_key, throttle_seconds).
const (
	throttleKeyMax     = 64
	throttleSecondsMax = 7 * 24 * 3600
)

// suppressedResponse is the 200 of POST /messages/ when throttle_key suppressed the message:
// nothing was stored or sent.
type suppressedResponse struct {
	Suppressed  bool   `json:"suppressed"`
	ThrottleKey string `json:"throttle_key"`
}

// checkThrottle validates throttle_key and throttle_seconds: both or neither; the key 1-64
// characters without control characters, the window 1 s to 7 days (422 invalid_field).
func (r createMessageRequest) checkThrottle() error {
	if r.ThrottleKey == "" && r.ThrottleSeconds == 0 {
		return nil
	}
	if r.ThrottleKey == "" {
		return validate.Field("throttle_key", "throttle_key is required with throttle_seconds")
	}
	if _, err := validate.Name("throttle_key", r.ThrottleKey, throttleKeyMax); err != nil {
		return err
	}
	return validate.IntRange("throttle_seconds", r.ThrottleSeconds, 1, throttleSecondsMax)
}

// throttleRedisKey names the window of key for one recipient (a contact, or a bot's chat):
// a hash in a Redis Cluster hash tag, like rateKey.
func throttleRedisKey(tenantID string, nm telegram.NewMessage, key string) string {
	recipient := "contact:" + nm.ContactID.String()
	if nm.ChatID != 0 {
		recipient = "chat:" + nm.BotID.String() + ":" + strconv.FormatInt(nm.ChatID, 10)
	}
	h := sha256.Sum256([]byte("botfleet throttle\x00" + tenantID + "\x00" + recipient + "\x00" + key))
	return "throttle:{" + hex.EncodeToString(h[:16]) + "}"
}

// takeThrottle opens the window of rkey for seconds (SET NX EX): false when a window is
// already open (the message is suppressed). Redis unreachable: ErrUnavailable.
func (s *server) takeThrottle(ctx context.Context, rkey string, seconds int64) (bool, error) {
	if s.d.Redis == nil {
		return true, nil
	}
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ok, err := s.d.Redis.SetNX(cctx, rkey, "1", time.Duration(seconds)*time.Second).Result()
	if err != nil {
		return false, apperr.ErrUnavailable.Wrap(err)
	}
	return ok, nil
}

// releaseThrottle closes the window of rkey again (the message was not created).
func (s *server) releaseThrottle(ctx context.Context, rkey string) {
	if s.d.Redis == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
	defer cancel()
	s.d.Redis.Del(cctx, rkey)
}
