package api

import (
	"time"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/internal/validate"
)

// broadcastTiming are the timing fields of POST /broadcast/ and of a broadcast in answers
// (issue 7, "Timing"; broadcast/timing.go).
type broadcastTiming struct {
	// ExpiresAt (RFC 3339, null: never) is when recipients not yet sent become "expired".
	ExpiresAt *string `json:"expires_at"`
	// Window (null: any time) is the daily send window.
	Window *windowJSON `json:"window"`
	// AllowPaidBroadcast sends with Telegram's allow_paid_broadcast at
	// TELEGRAM_PAID_BOT_RATE (core.telegram.org/bots/api#sendmessage). Default false.
	AllowPaidBroadcast bool `json:"allow_paid_broadcast"`
}

// windowJSON is a send window: {"from": "09:00", "to": "20:00", "time_zone": "Europe/Berlin"}.
type windowJSON struct {
	From     string `json:"from"`
	To       string `json:"to"`
	TimeZone string `json:"time_zone"`
}

// apply parses t into nb. Errors: invalid_field expires_at (not RFC 3339); the window's
// fields are validated by broadcast.Create.
func (t broadcastTiming) apply(nb *broadcast.NewBroadcast) error {
	if t.ExpiresAt != nil {
		at, err := time.Parse(time.RFC3339Nano, *t.ExpiresAt)
		if err != nil {
			return validate.Field("expires_at", "expires_at must be an RFC 3339 time, e.g. 2026-12-24T18:00:00Z")
		}
		nb.ExpiresAt = at
	}
	if t.Window != nil {
		nb.Window = &broadcast.Window{From: t.Window.From, To: t.Window.To, TimeZone: t.Window.TimeZone}
	}
	nb.AllowPaidBroadcast = t.AllowPaidBroadcast
	return nil
}

// broadcastTimingResponse are the timing fields of a broadcast as answered.
type broadcastTimingResponse struct {
	ExpiresAt          *time.Time  `json:"expires_at"`
	Window             *windowJSON `json:"window"`
	AllowPaidBroadcast bool        `json:"allow_paid_broadcast"`
}

func toBroadcastTimingResponse(b broadcast.Broadcast) broadcastTimingResponse {
	r := broadcastTimingResponse{ExpiresAt: timeOrNil(b.ExpiresAt), AllowPaidBroadcast: b.AllowPaidBroadcast}
	if b.Window != nil {
		r.Window = &windowJSON{From: b.Window.From, To: b.Window.To, TimeZone: b.Window.TimeZone}
	}
	return r
}
