package api

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestBroadcastTiming covers the timing fields over HTTP: expires_at, window and
// allow_paid_broadcast are stored and answered by POST /broadcast/ and GET
// /broadcast/{id}/ (null and false by default); a bad window, zone or expires_at is 422
// invalid_field naming the field; a contact's opted_out is shown by GET /contacts/{id}/.
func TestBroadcastTiming(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("A")
	bot, _ := te.newBot(key, "Bot")
	c := te.newContact(tid, bot.BotAppID, 601)
	base := map[string]any{"name": "sale", "platform": "TELEGRAM", "message_text": "Flash sale", "recipients": []string{c.ID.String()}}
	with := func(kv ...any) map[string]any {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	}
	post := func(body any) response {
		t.Helper()
		return te.do(http.MethodPost, "/broadcast/", key, body)
	}
	window := func(from, to, zone string) map[string]any {
		return map[string]any{"from": from, "to": to, "time_zone": zone}
	}

	exp := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Second)
	r := post(with("expires_at", exp.Format(time.RFC3339), "window", window("22:00", "06:00", "Europe/Berlin"), "allow_paid_broadcast", true))
	mustStatus(t, r, http.StatusAccepted)
	var bc broadcastResponse
	r.decode(t, &bc)
	check := func(what string, got broadcastResponse) {
		t.Helper()
		if got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) || got.Window == nil ||
			*got.Window != (windowJSON{From: "22:00", To: "06:00", TimeZone: "Europe/Berlin"}) || !got.AllowPaidBroadcast {
			t.Errorf("%s: expires_at %v window %+v paid %v", what, got.ExpiresAt, got.Window, got.AllowPaidBroadcast)
		}
	}
	check("POST", bc)
	r = te.do(http.MethodGet, "/broadcast/"+bc.ID.String()+"/", key, nil)
	mustStatus(t, r, http.StatusOK)
	var got broadcastResponse
	r.decode(t, &got)
	check("GET", got)

	r = post(base)
	mustStatus(t, r, http.StatusAccepted)
	r.decode(t, &got)
	if got.ExpiresAt != nil || got.Window != nil || got.AllowPaidBroadcast {
		t.Errorf("defaults: %s", r.Body)
	}

	for _, tc := range []struct {
		name  string
		body  map[string]any
		field string
	}{
		{"expires_at not RFC 3339", with("expires_at", "tomorrow"), "expires_at"},
		{"expires_at date only", with("expires_at", "2030-01-01"), "expires_at"},
		{"expires_at in the past", with("expires_at", time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)), "expires_at"},
		{"window from 9:00", with("window", window("9:00", "20:00", "UTC")), "window.from"},
		{"window to 25:00", with("window", window("09:00", "25:00", "UTC")), "window.to"},
		{"window from equals to", with("window", window("09:00", "09:00", "UTC")), "window.to"},
		{"window unknown zone", with("window", window("09:00", "20:00", "Europe/Atlantis")), "window.time_zone"},
		{"window without zone", with("window", map[string]any{"from": "09:00", "to": "20:00"}), "window.time_zone"},
	} {
		t.Run(tc.name, func(t *testing.T) { invalidField(t, post(tc.body), tc.field) })
	}
	mustStatus(t, post(with("window", map[string]any{"from": "09:00", "to": "20:00", "time_zone": "UTC", "days": 5})), http.StatusBadRequest)
	mustStatus(t, post(with("allow_paid_broadcast", "yes")), http.StatusBadRequest)

	// opted_out on contacts.
	if _, err := te.db.NewRaw("UPDATE contact_bots SET opted_out = true WHERE contact_id = ?", c.ID).Exec(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = te.do(http.MethodGet, "/contacts/"+c.ID.String()+"/", key, nil)
	mustStatus(t, r, http.StatusOK)
	var ct contactResponse
	r.decode(t, &ct)
	if !ct.OptedOut || ct.Blocked {
		t.Errorf("contact: %s, want opted_out true", r.Body)
	}
}
