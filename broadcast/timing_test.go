package broadcast

import (
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// testClock is a settable clock shared by the broadcast and telegram services of a test.
// Its times lie in the future of the real clock (2027), so that recipient rows written with
// PostgreSQL's now() are due by it.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock(t time.Time) *testClock { return &testClock{t: t} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

func utcAt(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// retryAfter runs broadcast id once and returns the wait it asks for (0 when it finished).
func (e *env) retryAfter(id uuid.UUID) time.Duration {
	e.t.Helper()
	err := e.run(id)
	if err == nil {
		return 0
	}
	var ra *telegram.RetryAfterError
	if !errors.As(err, &ra) {
		e.t.Fatalf("HandleRun = %v, want nil or *telegram.RetryAfterError", err)
	}
	return ra.RetryAfter
}

// createTimed creates a broadcast of b to cs with the timing of nb (Name, text, recipients
// and bot filled in).
func (e *env) createTimed(b testBot, cs []contacts.Contact, nb NewBroadcast) Broadcast {
	e.t.Helper()
	botID := b.ID
	nb.Name, nb.Platform, nb.MessageText, nb.Recipients, nb.BotID = "timed", "TELEGRAM", "Flash sale", ids(cs), &botID
	bc, _, err := e.svc.Create(e.ctx, b.TenantID, nb)
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return bc
}

func near(got, want, tol time.Duration) bool { return got >= want-tol && got <= want+tol }

// TestWindow_At checks the send window's open/closed state and next change, across time
// zones, daylight saving time and midnight.
func TestWindow_At(t *testing.T) {
	berlin := Window{From: "09:00", To: "20:00", TimeZone: "Europe/Berlin"}
	night := Window{From: "22:00", To: "06:00", TimeZone: "UTC"}
	nightNY := Window{From: "22:00", To: "06:00", TimeZone: "America/New_York"}
	for _, tc := range []struct {
		name     string
		w        Window
		now      string
		open     bool
		nextWant string
	}{
		{"winter 08:30 Berlin waits", berlin, "2027-01-15T07:30:00Z", false, "2027-01-15T08:00:00Z"},
		{"winter 09:00 Berlin opens", berlin, "2027-01-15T08:00:00Z", true, "2027-01-15T19:00:00Z"},
		{"winter 20:00 Berlin closed until tomorrow", berlin, "2027-01-15T19:00:00Z", false, "2027-01-16T08:00:00Z"},
		{"summer 08:30 Berlin waits", berlin, "2027-07-15T06:30:00Z", false, "2027-07-15T07:00:00Z"},
		{"summer 21:30 Berlin closed", berlin, "2027-07-15T19:30:00Z", false, "2027-07-16T07:00:00Z"},
		// Berlin moves to CEST on 2027-03-28 at 01:00 UTC: the evening before opens at 08:00
		// UTC, that morning at 07:00 UTC.
		{"across spring forward", berlin, "2027-03-27T20:00:00Z", false, "2027-03-28T07:00:00Z"},
		// And back to CET on 2027-10-31 at 01:00 UTC.
		{"across fall back", berlin, "2027-10-30T19:00:00Z", false, "2027-10-31T08:00:00Z"},
		{"night window before it", night, "2027-01-15T12:00:00Z", false, "2027-01-15T22:00:00Z"},
		{"night window evening", night, "2027-01-15T23:30:00Z", true, "2027-01-16T06:00:00Z"},
		{"night window after midnight", night, "2027-01-16T05:59:00Z", true, "2027-01-16T06:00:00Z"},
		{"night window closes at to", night, "2027-01-16T06:00:00Z", false, "2027-01-16T22:00:00Z"},
		{"night window New York (UTC-5)", nightNY, "2027-01-16T02:00:00Z", false, "2027-01-16T03:00:00Z"},
		{"night window New York open", nightNY, "2027-01-16T04:00:00Z", true, "2027-01-16T11:00:00Z"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			open, next := tc.w.At(utcAt(tc.now))
			if open != tc.open || !next.Equal(utcAt(tc.nextWant)) {
				t.Errorf("At(%s) = %v, %s; want %v, %s", tc.now, open, next.UTC().Format(time.RFC3339), tc.open, tc.nextWant)
			}
		})
	}
}

// TestService_Create_Timing checks the validation of expires_at and window (422
// invalid_field naming the field), and that they are stored and returned.
func TestService_Create_Timing(t *testing.T) {
	clock := newClock(utcAt("2027-01-15T10:00:00Z"))
	e := newEnv(t, envOptions{now: clock.Now})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 1)
	botID := b.ID
	now := clock.Now()
	for _, tc := range []struct {
		name  string
		nb    NewBroadcast
		field string
	}{
		{"expires in the past", NewBroadcast{ExpiresAt: now.Add(-time.Second)}, "expires_at"},
		{"expires now", NewBroadcast{ExpiresAt: now}, "expires_at"},
		{"from not HH:MM", NewBroadcast{Window: &Window{From: "9:00", To: "20:00", TimeZone: "UTC"}}, "window.from"},
		{"from 24:00", NewBroadcast{Window: &Window{From: "24:00", To: "20:00", TimeZone: "UTC"}}, "window.from"},
		{"to minutes 60", NewBroadcast{Window: &Window{From: "09:00", To: "20:60", TimeZone: "UTC"}}, "window.to"},
		{"from equals to", NewBroadcast{Window: &Window{From: "09:00", To: "09:00", TimeZone: "UTC"}}, "window.to"},
		{"unknown zone", NewBroadcast{Window: &Window{From: "09:00", To: "20:00", TimeZone: "Mars/Olympus"}}, "window.time_zone"},
		{"no zone", NewBroadcast{Window: &Window{From: "09:00", To: "20:00"}}, "window.time_zone"},
		{"Local zone", NewBroadcast{Window: &Window{From: "09:00", To: "20:00", TimeZone: "Local"}}, "window.time_zone"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nb := tc.nb
			nb.Name, nb.Platform, nb.MessageText, nb.Recipients, nb.BotID = "x", "TELEGRAM", "Hi", ids(cs), &botID
			_, _, err := e.svc.Create(e.ctx, tn, nb)
			if c, k := code(err); c != "invalid_field" || k != apperr.KindInvalid || validate.FieldOf(err) != tc.field {
				t.Fatalf("Create = %v, want invalid_field %s", err, tc.field)
			}
		})
	}
	if err := validateExpiry(now.Add(time.Hour), now.Add(2*time.Hour), now); validate.FieldOf(err) != "expires_at" {
		t.Errorf("expires_at before send_at: %v, want invalid_field expires_at", err)
	}

	exp := now.Add(time.Hour)
	w := &Window{From: "22:00", To: "06:00", TimeZone: "Europe/Berlin"}
	bc := e.createTimed(b, cs, NewBroadcast{ExpiresAt: exp, Window: w, AllowPaidBroadcast: true})
	got, _ := e.get(b, bc.ID)
	if !got.ExpiresAt.Equal(exp) || got.Window == nil || *got.Window != (Window{From: "22:00", To: "06:00", TimeZone: "Europe/Berlin"}) || !got.AllowPaidBroadcast {
		t.Errorf("stored timing = %s %+v %v", got.ExpiresAt, got.Window, got.AllowPaidBroadcast)
	}
	// The large-audience path stores them too.
	e.svc.syncRecipients = 0
	bc = e.createTimed(b, cs, NewBroadcast{ExpiresAt: exp, Window: w, AllowPaidBroadcast: true})
	e.svc.syncRecipients = SyncRecipients
	got, _ = e.get(b, bc.ID)
	if got.Materialized || !got.ExpiresAt.Equal(exp) || got.Window == nil || got.Window.TimeZone != "Europe/Berlin" || !got.AllowPaidBroadcast {
		t.Errorf("stored timing (large) = %v %s %+v %v", got.Materialized, got.ExpiresAt, got.Window, got.AllowPaidBroadcast)
	}
	plain := e.create(b, cs)
	if got, _ := e.get(b, plain.ID); !got.ExpiresAt.IsZero() || got.Window != nil || got.AllowPaidBroadcast {
		t.Errorf("defaults = %s %+v %v", got.ExpiresAt, got.Window, got.AllowPaidBroadcast)
	}
}

// TestService_HandleRun_Window checks that a broadcast outside its send window claims and
// sends nothing, counts nothing as failed, keeps its recipients queued and asks to run
// again at the opening (09:00 Berlin is 08:00 UTC in winter), then sends once it is open;
// and the same for a window across midnight.
func TestService_HandleRun_Window(t *testing.T) {
	clock := newClock(utcAt("2027-01-15T07:30:00Z")) // 08:30 in Berlin (CET, UTC+1)
	e := newEnv(t, envOptions{now: clock.Now})
	tn := e.tenant("a")
	b := e.bot(tn, 0)

	t.Run("Europe/Berlin", func(t *testing.T) {
		clock.Set(utcAt("2027-01-15T07:30:00Z"))
		cs := e.contactsOf(b, 3)
		bc := e.createTimed(b, cs, NewBroadcast{Window: &Window{From: "09:00", To: "20:00", TimeZone: "Europe/Berlin"}})
		if wait := e.retryAfter(bc.ID); !near(wait, 30*time.Minute, time.Second) {
			t.Errorf("RetryAfter at 08:30 Berlin = %s, want 30m (until 09:00 Berlin = 08:00 UTC)", wait)
		}
		got, counts := e.get(b, bc.ID)
		if counts != (Counts{Total: 3, Pending: 3}) || got.Status != StatusRunning {
			t.Errorf("outside the window: %s %+v, want running, all pending", got.Status, counts)
		}
		for _, r := range e.recipients(bc.ID) {
			if r.Status != RecipientQueued || r.Attempts != 0 {
				t.Errorf("recipient outside the window: %s attempts %d", r.Status, r.Attempts)
			}
		}
		if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 0 {
			t.Fatalf("sendMessage outside the window: %d calls", n)
		}
		clock.Set(utcAt("2027-01-15T07:59:59Z"))
		if wait := e.retryAfter(bc.ID); !near(wait, time.Second, 100*time.Millisecond) {
			t.Errorf("RetryAfter at 08:59:59 Berlin = %s, want 1s", wait)
		}
		clock.Set(utcAt("2027-01-15T08:00:00Z")) // 09:00 Berlin
		if wait := e.retryAfter(bc.ID); wait != 0 {
			t.Fatalf("run at 09:00 Berlin asks to wait %s", wait)
		}
		if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 3, Sent: 3}) {
			t.Errorf("in the window: %+v, want all sent", counts)
		}
	})

	t.Run("across midnight", func(t *testing.T) {
		clock.Set(utcAt("2027-01-15T12:00:00Z"))
		cs := e.contactsOf(b, 2)
		bc := e.createTimed(b, cs, NewBroadcast{Window: &Window{From: "22:00", To: "06:00", TimeZone: "UTC"}})
		if wait := e.retryAfter(bc.ID); !near(wait, 10*time.Hour, time.Second) {
			t.Errorf("RetryAfter at 12:00 = %s, want 10h", wait)
		}
		clock.Set(utcAt("2027-01-16T06:00:00Z")) // closed again
		if wait := e.retryAfter(bc.ID); !near(wait, 16*time.Hour, time.Second) {
			t.Errorf("RetryAfter at 06:00 = %s, want 16h", wait)
		}
		for _, c := range cs {
			if n := e.sendCalls(b, c.TelegramChatID); n != 0 {
				t.Fatalf("sent outside the window")
			}
		}
		clock.Set(utcAt("2027-01-17T01:30:00Z")) // inside, after midnight
		if wait := e.retryAfter(bc.ID); wait != 0 {
			t.Fatalf("run at 01:30 asks to wait %s", wait)
		}
		if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 2, Sent: 2}) {
			t.Errorf("in the window: %+v, want all sent", counts)
		}
	})
}

// TestService_HandleRun_DailyAcrossMidnight checks the bot's daily_limit per UTC day with
// a clock that crosses UTC midnight: past the limit the recipients are deferred to the next
// UTC midnight, nothing is sent before it (the daily counter is keyed by that clock's UTC
// day), and they are sent right after it without any manual step.
func TestService_HandleRun_DailyAcrossMidnight(t *testing.T) {
	clock := newClock(utcAt("2027-01-15T23:59:50Z"))
	e := newEnv(t, envOptions{now: clock.Now})
	tn := e.tenant("a")
	b := e.bot(tn, 2)
	cs := e.contactsOf(b, 5)
	bc := e.createTimed(b, cs, NewBroadcast{})

	midnight := utcAt("2027-01-16T00:00:00Z")
	if wait := e.retryAfter(bc.ID); !near(wait, 10*time.Second, time.Second) {
		t.Errorf("RetryAfter = %s, want 10s (until UTC midnight by the clock)", wait)
	}
	if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 5, Sent: 2, Deferred: 3}) {
		t.Fatalf("before midnight: %+v", counts)
	}
	for _, r := range e.recipients(bc.ID) {
		if r.Status == RecipientDeferred && !r.DueAt.Equal(midnight) {
			t.Errorf("deferred until %s, want %s", r.DueAt.UTC(), midnight)
		}
	}
	clock.Set(utcAt("2027-01-15T23:59:59Z"))
	if wait := e.retryAfter(bc.ID); !near(wait, time.Second, 100*time.Millisecond) {
		t.Errorf("RetryAfter at 23:59:59 = %s, want 1s", wait)
	}
	if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 2 {
		t.Fatalf("sendMessage before midnight = %d, want 2", n)
	}

	clock.Set(utcAt("2027-01-16T00:00:01Z"))
	if wait := e.retryAfter(bc.ID); !near(wait, 24*time.Hour-time.Second, time.Second) {
		t.Errorf("RetryAfter after midnight = %s, want the next midnight (limit used again)", wait)
	}
	if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 5, Sent: 4, Deferred: 1}) {
		t.Fatalf("after midnight: %+v, want 2 more sent (the new day's limit), 1 deferred", counts)
	}
	clock.Set(utcAt("2027-01-17T00:00:00Z"))
	if wait := e.retryAfter(bc.ID); wait != 0 {
		t.Fatalf("third day: RetryAfter %s", wait)
	}
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts != (Counts{Total: 5, Sent: 5}) {
		t.Fatalf("third day: %s %+v", got.Status, counts)
	}
	for _, c := range cs {
		if n := e.sendCalls(b, c.TelegramChatID); n != 1 {
			t.Errorf("chat %d: %d sendMessage, want 1", c.TelegramChatID, n)
		}
	}
}

// TestService_HandleRun_Expiry is a flash sale: recipients not sent by expires_at (here
// deferred by the daily limit) become expired at expires_at, the broadcast completes, and
// nothing is sent after it; a broadcast first run after its expiry sends nothing.
func TestService_HandleRun_Expiry(t *testing.T) {
	start := utcAt("2027-01-15T10:00:00Z")
	clock := newClock(start)
	e := newEnv(t, envOptions{now: clock.Now})
	tn := e.tenant("a")

	t.Run("deferred recipients expire", func(t *testing.T) {
		clock.Set(start)
		b := e.bot(tn, 2)
		cs := e.contactsOf(b, 5)
		bc := e.createTimed(b, cs, NewBroadcast{ExpiresAt: start.Add(time.Hour)})
		// Deferred to midnight (14 h away), the run comes back at the expiry instead.
		if wait := e.retryAfter(bc.ID); !near(wait, time.Hour, time.Second) {
			t.Errorf("RetryAfter = %s, want 1h (the expiry, before the daily reset)", wait)
		}
		if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 5, Sent: 2, Deferred: 3}) {
			t.Fatalf("before the expiry: %+v", counts)
		}
		clock.Set(start.Add(time.Hour))
		if wait := e.retryAfter(bc.ID); wait != 0 {
			t.Fatalf("run at the expiry asks to wait %s", wait)
		}
		got, counts := e.get(b, bc.ID)
		if got.Status != StatusCompleted || counts != (Counts{Total: 5, Sent: 2, Expired: 3}) {
			t.Fatalf("after the expiry: %s %+v, want completed with 3 expired", got.Status, counts)
		}
		for _, r := range e.recipients(bc.ID) {
			if r.Status == RecipientSent {
				continue
			}
			if r.Status != RecipientExpired || r.Error != ErrExpired || r.Attempts != 0 || r.TelegramMessageID != nil {
				t.Errorf("unsent recipient = %s %q attempts %d", r.Status, r.Error, r.Attempts)
			}
		}
		rows, _, err := e.svc.Recipients(e.ctx, tn, bc.ID, RecipientFilter{Status: "Expired"})
		if err != nil || len(rows) != 3 {
			t.Errorf("?status=expired: %d rows (%v), want 3", len(rows), err)
		}
		// The next day (the daily limit reset), nothing more is sent.
		clock.Set(utcAt("2027-01-16T00:00:05Z"))
		if wait := e.retryAfter(bc.ID); wait != 0 {
			t.Fatalf("run after completion: %s", wait)
		}
		if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 2 {
			t.Errorf("sendMessage = %d, want 2 (none after the expiry)", n)
		}
	})

	t.Run("first run after the expiry", func(t *testing.T) {
		clock.Set(start)
		b := e.bot(tn, 0)
		cs := e.contactsOf(b, 3)
		bc := e.createTimed(b, cs, NewBroadcast{ExpiresAt: start.Add(time.Minute)})
		clock.Set(start.Add(2 * time.Minute))
		if wait := e.retryAfter(bc.ID); wait != 0 {
			t.Fatalf("RetryAfter %s", wait)
		}
		got, counts := e.get(b, bc.ID)
		if got.Status != StatusCompleted || counts != (Counts{Total: 3, Expired: 3}) {
			t.Errorf("%s %+v, want completed, all expired", got.Status, counts)
		}
		if n := len(e.emu.Calls(b.emuID, "sendMessage")); n != 0 {
			t.Errorf("sendMessage = %d after the expiry", n)
		}
	})

	t.Run("window opens after the expiry", func(t *testing.T) {
		clock.Set(start) // 11:00 Berlin
		b := e.bot(tn, 0)
		cs := e.contactsOf(b, 2)
		bc := e.createTimed(b, cs, NewBroadcast{ExpiresAt: start.Add(3 * time.Hour),
			Window: &Window{From: "18:00", To: "20:00", TimeZone: "Europe/Berlin"}})
		if wait := e.retryAfter(bc.ID); !near(wait, 3*time.Hour, time.Second) {
			t.Errorf("RetryAfter = %s, want 3h (the expiry comes before the window)", wait)
		}
		clock.Set(start.Add(3 * time.Hour))
		if wait := e.retryAfter(bc.ID); wait != 0 {
			t.Fatalf("RetryAfter %s", wait)
		}
		if _, counts := e.get(b, bc.ID); counts != (Counts{Total: 2, Expired: 2}) {
			t.Errorf("%+v, want all expired", counts)
		}
	})
}

// quickContacts makes n contacts of b whose chats the emulator knows (AddUser: no webhook
// update), chat ids from base.
func (e *env) quickContacts(b testBot, n int, base int64) []contacts.Contact {
	e.t.Helper()
	cs := make([]contacts.Contact, n)
	for i := range cs {
		id := base + int64(i)
		if err := e.emu.AddUser(b.emuID, tgemu.User{ID: id, FirstName: "U"}); err != nil {
			e.t.Fatal(err)
		}
		c, err := e.contacts.UpsertFromTelegram(e.ctx, e.db, b.TenantID, b.ID, contacts.Identity{ChatID: id, UserID: id, FirstName: "U"}, time.Now())
		if err != nil {
			e.t.Fatal(err)
		}
		cs[i] = c
	}
	return cs
}

// maxInWindow is the most of the sorted times ts in any window (t-w, t].
func maxInWindow(ts []time.Time, w time.Duration) int {
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	best, lo := 0, 0
	for hi := range ts {
		for !ts[lo].After(ts[hi].Add(-w)) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// TestService_HandleRun_PaidBroadcast checks allow_paid_broadcast: a paid broadcast to 300
// chats of one bot runs well above the bot's 30/s (TELEGRAM_PAID_BOT_RATE, 1000/s) with
// the parameter on every sendMessage and no violation of the emulator's limits (1000/s for
// paid messages), while an unpaid one stays within 30 in every second.
func TestService_HandleRun_PaidBroadcast(t *testing.T) {
	e := newEnv(t, envOptions{tgCfg: func(c *telegram.Config) {
		c.BotRate = config.Rate{N: 30, Per: time.Second}
		c.PaidBotRate = config.Rate{N: 1000, Per: time.Second}
		c.GlobalRate = config.Rate{N: 1000, Per: time.Second}
	}})
	tn := e.tenant("a")
	b := e.bot(tn, 0)

	paid := e.createTimed(b, e.quickContacts(b, 300, 1_000_000), NewBroadcast{AllowPaidBroadcast: true})
	start := time.Now()
	e.runToEnd(paid.ID, false, 20)
	took := time.Since(start)
	if _, counts := e.get(b, paid.ID); counts != (Counts{Total: 300, Sent: 300}) {
		t.Fatalf("paid: %+v", counts)
	}
	calls := e.emu.Calls(b.emuID, "sendMessage")
	for _, c := range calls {
		if c.Params["allow_paid_broadcast"] != "true" {
			t.Fatalf("paid sendMessage without allow_paid_broadcast: %v", c.Params["allow_paid_broadcast"])
		}
	}
	rate := 300 / took.Seconds()
	t.Logf("paid: 300 sends in %s (%.0f/s)", took, rate)
	if rate < 60 {
		t.Errorf("paid broadcast ran at %.0f/s, want well above 30/s", rate)
	}
	if v := e.emu.Violations(b.emuID); v != (tgemu.Violations{}) {
		t.Errorf("paid: violations %+v", v)
	}

	unpaid := e.createTimed(b, e.quickContacts(b, 60, 2_000_000), NewBroadcast{})
	e.runToEnd(unpaid.ID, false, 20)
	var at []time.Time
	for _, m := range e.emu.Sent(b.emuID) {
		if m.ChatID >= 2_000_000 {
			at = append(at, m.At)
		}
	}
	if len(at) != 60 {
		t.Fatalf("unpaid: %d sent, want 60", len(at))
	}
	if n := maxInWindow(at, time.Second); n > 30 {
		t.Errorf("unpaid: %d sends in one second, want <= 30", n)
	}
	for _, c := range e.emu.Calls(b.emuID, "sendMessage")[len(calls):] {
		if c.Params["allow_paid_broadcast"] != "" && c.Params["allow_paid_broadcast"] != "false" {
			t.Fatalf("unpaid sendMessage with allow_paid_broadcast=%s", c.Params["allow_paid_broadcast"])
		}
	}
	if v := e.emu.Violations(b.emuID); v != (tgemu.Violations{}) {
		t.Errorf("unpaid: violations %+v", v)
	}
}

// TestService_GroupPacing broadcasts to group chats (negative chat ids) with a short group
// window (20 per 3 s instead of 20 per minute, on both sides): 25 broadcasts to the same two
// groups give each group 25 messages, and the emulator sees no group get more than 20 in
// any window.
func TestService_GroupPacing(t *testing.T) {
	const limit, window = 20, 3 * time.Second
	e := newEnv(t, envOptions{
		emu:   tgemu.Options{GroupChatLimit: limit, GroupChatWindow: window},
		tgCfg: func(c *telegram.Config) { c.GroupChatRate = config.Rate{N: limit, Per: window} },
	})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	groups := []int64{-1001000000001, -1001000000002}
	var cs []contacts.Contact
	for i, g := range groups {
		if err := e.emu.AddGroup(b.emuID, g, "Group "+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
		c, err := e.contacts.UpsertFromTelegram(e.ctx, e.db, tn, b.ID, contacts.Identity{ChatID: g, UserID: 42, FirstName: "Admin"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	var bcs []Broadcast
	for range 25 {
		bcs = append(bcs, e.create(b, cs))
	}
	for _, bc := range bcs {
		e.runToEnd(bc.ID, false, 20)
		if got, counts := e.get(b, bc.ID); got.Status != StatusCompleted || counts != (Counts{Total: 2, Sent: 2}) {
			t.Fatalf("broadcast %s: %s %+v", bc.ID, got.Status, counts)
		}
	}
	for _, g := range groups {
		var at []time.Time
		for _, m := range e.emu.SentTo(b.emuID, g) {
			at = append(at, m.At)
		}
		if len(at) != 25 {
			t.Errorf("group %d got %d messages, want 25", g, len(at))
		}
		if n := maxInWindow(at, window); n > limit {
			t.Errorf("group %d got %d messages in %s, want <= %d", g, n, window, limit)
		}
	}
	if v := e.emu.Violations(b.emuID); v != (tgemu.Violations{}) {
		t.Errorf("violations %+v", v)
	}
}

// TestService_OptedOut checks that contacts that opted out (/stop: contacts.opted_out) are
// skipped with reason opted_out and contacts that blocked the bot with reason blocked (both
// flags: blocked), on every create path, and that neither gets a sendMessage.
func TestService_OptedOut(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	ok, opted, blocked, both := e.contact(b), e.contact(b), e.contact(b), e.contact(b)
	for _, c := range []contacts.Contact{opted, blocked, both} {
		e.tagged(c, []string{"gone"}, `{}`)
	}
	e.tagged(ok, []string{"gone"}, `{}`)
	if _, err := e.db.NewRaw("UPDATE contact_bots SET opted_out = true, opted_out_at = now() WHERE contact_id IN (?, ?)", opted.ID, both.ID).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []contacts.Contact{blocked, both} {
		if _, err := e.contacts.SetBlocked(e.ctx, e.db, b.ID, c.TelegramChatID, true); err != nil {
			t.Fatal(err)
		}
	}
	want := map[uuid.UUID]string{opted.ID: SkipOptedOut, blocked.ID: SkipBlocked, both.ID: SkipBlocked}
	botID := b.ID
	all := []uuid.UUID{ok.ID, opted.ID, blocked.ID, both.ID}

	check := func(t *testing.T, id uuid.UUID) {
		t.Helper()
		e.runToEnd(id, false, 10)
		if got, counts := e.get(b, id); got.Status != StatusCompleted || counts != (Counts{Total: 4, Sent: 1, Skipped: 3}) {
			t.Fatalf("%s %+v", got.Status, counts)
		}
		for _, r := range e.recipients(id) {
			if reason, skipped := want[r.ContactID]; skipped && (r.Status != RecipientSkipped || r.Error != reason) {
				t.Errorf("contact %s: %s %q, want skipped %q", r.ContactID, r.Status, r.Error, reason)
			}
		}
	}
	t.Run("list", func(t *testing.T) {
		bc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "l", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Recipients: all})
		if err != nil {
			t.Fatal(err)
		}
		check(t, bc.ID)
	})
	t.Run("segment", func(t *testing.T) {
		bc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "s", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Segment: &Segment{TagsAny: []string{"gone"}}})
		if err != nil {
			t.Fatal(err)
		}
		check(t, bc.ID)
	})
	t.Run("large audience", func(t *testing.T) {
		e.svc.syncRecipients = 1
		defer func() { e.svc.syncRecipients = SyncRecipients }()
		bc, _, err := e.svc.Create(e.ctx, tn, NewBroadcast{Name: "L", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Recipients: all})
		if err != nil || bc.Materialized {
			t.Fatalf("Create: %v materialized %v", err, bc.Materialized)
		}
		check(t, bc.ID)
	})
	t.Run("preview", func(t *testing.T) {
		a, err := e.svc.PreviewAudience(e.ctx, tn, &botID, all, nil)
		if err != nil || a.Count != 4 || a.Blocked != 2 || a.OptedOut != 1 {
			t.Errorf("preview = %+v (%v), want 4, 2 blocked, 1 opted out", a, err)
		}
	})
	for _, c := range []contacts.Contact{opted, blocked, both} {
		if n := e.sendCalls(b, c.TelegramChatID); n != 0 {
			t.Errorf("chat %d: %d sendMessage, want none", c.TelegramChatID, n)
		}
	}
}

// TestService_HandleSweep_Expired checks that the sweep finds a broadcast whose expires_at
// has passed although its recipients are deferred to the next UTC midnight (so that its
// run expires them on time even if its task was lost), and that the run then completes it.
func TestService_HandleSweep_Expired(t *testing.T) {
	e := newEnv(t, envOptions{})
	tn := e.tenant("a")
	b := e.bot(tn, 1)
	bc := e.createTimed(b, e.contactsOf(b, 3), NewBroadcast{ExpiresAt: time.Now().Add(1500 * time.Millisecond)})
	if wait := e.retryAfter(bc.ID); wait <= 0 || wait > 1500*time.Millisecond {
		t.Fatalf("RetryAfter = %s, want the time to the expiry", wait)
	}
	ids, err := runnable(e.ctx, e.db, uuid.Nil, 100)
	if err != nil || slices.Contains(ids, bc.ID) {
		t.Fatalf("runnable before the expiry = %v (%v), want without the deferred broadcast", ids, err)
	}
	time.Sleep(time.Until(bc.ExpiresAt) + 50*time.Millisecond)
	if ids, err = runnable(e.ctx, e.db, uuid.Nil, 100); err != nil || !slices.Contains(ids, bc.ID) {
		t.Fatalf("runnable after the expiry = %v (%v), want the expired broadcast", ids, err)
	}
	if wait := e.retryAfter(bc.ID); wait != 0 {
		t.Fatalf("run after the expiry: RetryAfter %s", wait)
	}
	if got, counts := e.get(b, bc.ID); got.Status != StatusCompleted || counts != (Counts{Total: 3, Sent: 1, Expired: 2}) {
		t.Errorf("%s %+v", got.Status, counts)
	}
}
