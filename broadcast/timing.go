package broadcast

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"
	_ "time/tzdata" // IANA zones of send windows on machines without zoneinfo

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
)

// Timing of a broadcast (issue 7, "Timing"): an expiry, a send window and Telegram's paid
// broadcasts. Every check of the run uses the Service's clock (Service.now, time.Now unless
// a test sets it), as does the daily limit in telegram (telegram.Deps.Now), so that a test
// can cross a UTC midnight, a send window or an expiry without sleeping.
//
// The clock also decides which recipients are due (claim compares due_at with it): a
// deferred recipient becomes due when the same clock that keys the bot's daily counter has
// reached the next UTC day. Retry and rate-limit delays are still written relative to
// PostgreSQL's now(); with NTP the two clocks differ by milliseconds.

// SkipOptedOut is the reason (the Error) of a skipped recipient whose contact had opted out
// with /stop (contacts.opted_out) when the recipient rows were written. A contact that is
// both blocked and opted out is skipped as SkipBlocked: it could not be reached anyway.
const SkipOptedOut = "opted_out"

// RecipientExpired is the final status of a recipient not sent by its broadcast's
// ExpiresAt (Error: ErrExpired).
const RecipientExpired = "expired"

// ErrExpired is the Error of an expired recipient.
const ErrExpired = "not sent before the broadcast expired (expires_at)"

// recipientStatusSQL and recipientErrorSQL are the status and error of a recipient row
// written from contact row c for broadcast row b: skipped with SkipBlocked, SkipOptedOut or
// SkipUnsubscribed (in that order; unsubscribedSQL, topic.go), or queued. Constants only: no
// user input reaches the SQL text.
const (
	recipientStatusSQL = "CASE WHEN cb.blocked OR cb.opted_out OR " + unsubscribedSQL + " THEN '" + RecipientSkipped + "' ELSE '" + RecipientQueued + "' END"
	recipientErrorSQL  = "CASE WHEN cb.blocked THEN '" + SkipBlocked + "' WHEN cb.opted_out THEN '" + SkipOptedOut + "' WHEN " + unsubscribedSQL + " THEN '" + SkipUnsubscribed + "' ELSE '' END"
)

// Window is a broadcast's daily send window: sends start only while the local time of day
// in TimeZone is in [From, To). From and To are "HH:MM" (24 h, 00:00-23:59); From after To
// is a window across midnight (22:00-06:00: from 22:00 until 06:00 the next morning). From
// equal to To is refused (it would be empty or the whole day: give no window instead).
// TimeZone is an IANA name (Europe/Berlin, UTC), resolved with time.LoadLocation (the
// binary embeds time/tzdata), so daylight saving time is followed: 09:00 in Berlin is 08:00
// UTC in winter and 07:00 UTC in summer. Stored as JSON in broadcasts.send_window.
type Window struct {
	From     string `json:"from"`
	To       string `json:"to"`
	TimeZone string `json:"time_zone"`
}

// hhmm matches a 24-hour "HH:MM".
var hhmm = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)

// minutes returns the minutes since midnight of a valid "HH:MM".
func minutes(s string) int {
	h, _ := strconv.Atoi(s[:2])
	m, _ := strconv.Atoi(s[3:])
	return h*60 + m
}

// validateWindow checks w (nil: no window) and stores its zone in its canonical spelling.
// Errors: invalid_field window.from, window.to (not HH:MM, or equal to from) and
// window.time_zone (empty, "Local", or not an IANA zone).
func validateWindow(w *Window) error {
	if w == nil {
		return nil
	}
	if !hhmm.MatchString(w.From) {
		return validate.Field("window.from", "window.from must be a time of day as HH:MM (24 h), e.g. 09:00")
	}
	if !hhmm.MatchString(w.To) {
		return validate.Field("window.to", "window.to must be a time of day as HH:MM (24 h), e.g. 20:00")
	}
	if w.From == w.To {
		return validate.Field("window.to", "window.to must differ from window.from (from after to is a window across midnight)")
	}
	if w.TimeZone == "" || w.TimeZone == "Local" {
		return validate.Field("window.time_zone", "window.time_zone must be an IANA time zone, e.g. Europe/Berlin or UTC")
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return validate.Field("window.time_zone", "window.time_zone %q is not an IANA time zone (e.g. Europe/Berlin, UTC)", w.TimeZone)
	}
	w.TimeZone = loc.String()
	return nil
}

// zones caches loaded time zones by name: time.LoadLocation reads the zone database on
// every call, and a run checks its window before every chunk.
var zones sync.Map // string → *time.Location

// location returns w's zone (UTC if it cannot be loaded, which validateWindow prevents).
func (w Window) location() *time.Location {
	if loc, ok := zones.Load(w.TimeZone); ok {
		return loc.(*time.Location)
	}
	loc, err := time.LoadLocation(w.TimeZone)
	if err != nil {
		return time.UTC
	}
	zones.Store(w.TimeZone, loc)
	return loc
}

// At reports whether w is open at now and when that changes: the next closing time when
// open, the next opening time when closed. Times of day are taken on the local calendar
// of w's zone, so the instants follow daylight saving time; a From or To that falls in a
// skipped hour (spring forward) is taken as time.Date normalises it (02:30 becomes 03:30).
func (w Window) At(now time.Time) (open bool, next time.Time) {
	loc := w.location()
	local := now.In(loc)
	from, to := minutes(w.From), minutes(w.To)
	cur := local.Hour()*60 + local.Minute()
	if from < to {
		open = cur >= from && cur < to
	} else {
		open = cur >= from || cur < to
	}
	edge := from
	if open {
		edge = to
	}
	y, m, d := local.Date()
	for i := 0; i < 3; i++ {
		t := time.Date(y, m, d+i, edge/60, edge%60, 0, 0, loc)
		if t.After(now) {
			return open, t
		}
	}
	return open, now.Add(24 * time.Hour) // not reached
}

// validateExpiry checks expiresAt (zero: none): it must be after now and after sendAt (zero:
// sent at once). Errors: invalid_field expires_at.
func validateExpiry(expiresAt, sendAt, now time.Time) error {
	if expiresAt.IsZero() {
		return nil
	}
	if !expiresAt.After(now) {
		return validate.Field("expires_at", "expires_at must be in the future")
	}
	if !sendAt.IsZero() && !expiresAt.After(sendAt) {
		return validate.Field("expires_at", "expires_at must be after send_at")
	}
	return nil
}

// validateTiming checks the timing fields of nb at now (Create). send_at is the control
// part's field; a broadcast without it is sent at once (sendAt zero).
func validateTiming(nb *NewBroadcast, sendAt, now time.Time) error {
	if err := validateExpiry(nb.ExpiresAt, sendAt, now); err != nil {
		return err
	}
	return validateWindow(nb.Window)
}

// gate is what the timing of broadcast b allows at now: expired (no claim ever again: the
// unsent recipients expire), or closed until openAt (the window), or open, in which case
// stopAt is when sends must stop starting (window closing or expiry; zero: none).
type gate struct {
	expired bool
	openAt  time.Time
	stopAt  time.Time
}

// gateOf returns the gate of b at now.
func gateOf(b Broadcast, now time.Time) gate {
	if !b.ExpiresAt.IsZero() && !now.Before(b.ExpiresAt) {
		return gate{expired: true}
	}
	var g gate
	if b.Window != nil {
		open, next := b.Window.At(now)
		if !open {
			if !b.ExpiresAt.IsZero() && !next.Before(b.ExpiresAt) {
				// It would open only after the expiry: wait for the expiry instead.
				return gate{openAt: b.ExpiresAt}
			}
			return gate{openAt: next}
		}
		g.stopAt = next
	}
	if !b.ExpiresAt.IsZero() && (g.stopAt.IsZero() || b.ExpiresAt.Before(g.stopAt)) {
		g.stopAt = b.ExpiresAt
	}
	return g
}

// realTime converts instant t of the service clock into the process's clock (they differ
// only in tests, which set Service.now).
func (s *Service) realTime(t time.Time) time.Time {
	return time.Now().Add(t.Sub(s.now()))
}

// expireRecipients marks the recipients of running broadcast id that are still waiting
// (queued, deferred: also those given back by the sweep) expired with ErrExpired, in one
// UPDATE; recipients being sent keep their result. It returns how many expired.
func expireRecipients(ctx context.Context, idb bun.IDB, id uuid.UUID) (int, error) {
	res, err := idb.NewRaw(`UPDATE broadcast_recipients SET status = ?, error = ?, claimed_at = NULL, updated_at = now()
WHERE broadcast_id = ? AND status IN (?, ?)
  AND EXISTS (SELECT 1 FROM broadcasts WHERE id = ? AND status = ?)`,
		RecipientExpired, ErrExpired, id, RecipientQueued, RecipientDeferred, id, StatusRunning).Exec(ctx)
	if err != nil {
		return 0, apperr.Classify(fmt.Errorf("expire recipients: %w", err))
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// sendAtOrZero is sc.SendAt, or the zero time when the broadcast is sent at once.
func (sc Schedule) sendAtOrZero() time.Time {
	if sc.SendAt == nil {
		return time.Time{}
	}
	return *sc.SendAt
}
