package api

import (
	"bytes"
	"context"
	"encoding/csv"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
)

// TestContacts_PatchDetails: external_id (unique per tenant, null clears), email and phone
// (validated, normalised, "" clears) through PATCH /contacts/{id}/.
func TestContacts_PatchDetails(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("A")
	tidB, keyB := te.newTenant("B")
	bot, _ := te.newBot(key, "Bot")
	botB, _ := te.newBot(keyB, "BotB")
	c1 := te.newContact(tid, bot.BotAppID, 501)
	c2 := te.newContact(tid, bot.BotAppID, 502)
	cB := te.newContact(tidB, botB.BotAppID, 503)
	path := func(id interface{ String() string }) string { return "/contacts/" + id.String() + "/" }

	r := te.do(http.MethodPatch, path(c1.ID), key, map[string]any{"external_id": " acct-1 ", "email": "ann@example.com", "phone": "+49 151 1234-5678"})
	mustStatus(t, r, http.StatusOK)
	var got contactResponse
	r.decode(t, &got)
	if got.ExternalID == nil || *got.ExternalID != "acct-1" || got.Email != "ann@example.com" || got.Phone != "+4915112345678" {
		t.Fatalf("patched: %s", r.Body)
	}
	// Unique per tenant: 409 on another contact of A, allowed for B's contact.
	if r := te.do(http.MethodPatch, path(c2.ID), key, map[string]any{"external_id": "acct-1"}); r.Code != http.StatusConflict || r.errorCode(t) != "external_id_taken" {
		t.Fatalf("taken: %d %s", r.Code, r.Body)
	}
	mustStatus(t, te.do(http.MethodPatch, path(cB.ID), keyB, map[string]any{"external_id": "acct-1"}), http.StatusOK)
	// Bad values: 422 naming the field; nothing changes.
	for field, v := range map[string]any{"email": "Ann <ann@example.com>", "phone": "12345", "external_id": ""} {
		r := te.do(http.MethodPatch, path(c1.ID), key, map[string]any{field: v})
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
			t.Errorf("%s=%v: %d %s, want 422 invalid_field", field, v, r.Code, r.Body)
		}
	}
	if r := te.do(http.MethodPatch, path(c1.ID), key, map[string]any{"external_id": 7}); r.Code != http.StatusUnprocessableEntity && r.Code != http.StatusBadRequest {
		t.Errorf("external_id 7: %d %s", r.Code, r.Body)
	}
	// Tags untouched by a details patch; null and "" clear.
	r = te.do(http.MethodPatch, path(c1.ID), key, map[string]any{"external_id": nil, "email": "", "phone": ""})
	mustStatus(t, r, http.StatusOK)
	got = contactResponse{}
	r.decode(t, &got)
	if got.ExternalID != nil || got.Email != "" || got.Phone != "" {
		t.Fatalf("cleared: %s", r.Body)
	}
	mustStatus(t, te.do(http.MethodPatch, path(c2.ID), key, map[string]any{"external_id": "acct-1"}), http.StatusOK)
}

// TestContacts_Erase: DELETE /contacts/{id}/ removes the contact, its messages and the raw
// updates of its chat; another contact's data and another tenant's answer stay.
func TestContacts_Erase(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(key, "Bot")
	c1 := te.newContact(tid, bot.BotAppID, 601)
	c2 := te.newContact(tid, bot.BotAppID, 602)
	ctx := context.Background()
	for _, c := range []any{c1.ID, c2.ID} {
		mustStatus(t, te.do(http.MethodPost, "/messages/", key, map[string]any{"bot_app_id": bot.BotAppID, "contact_id": c, "text": "hi"}), http.StatusAccepted)
	}
	for i, chat := range []int64{601, 602} {
		if _, err := te.db.ExecContext(ctx, `INSERT INTO webhook_events (tenant_id, bot_id, update_id, update_type, payload, processed_at)
			VALUES (?, ?, ?, 'message', jsonb_build_object('update_id', ?::bigint, 'message', jsonb_build_object('chat', jsonb_build_object('id', ?::bigint), 'text', 'secret')), now())`,
			tid, bot.BotAppID, 9000+i, 9000+i, chat); err != nil {
			t.Fatal(err)
		}
	}
	count := func(q string, args ...any) int {
		var n int
		if err := te.db.NewRaw(q, args...).Scan(ctx, &n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	if r := te.do(http.MethodDelete, "/contacts/"+c1.ID.String()+"/", keyB, nil); r.Code != http.StatusNotFound || r.errorCode(t) != "contact_not_found" {
		t.Fatalf("B deletes A's contact: %d %s", r.Code, r.Body)
	}
	mustStatus(t, te.do(http.MethodDelete, "/contacts/"+c1.ID.String()+"/", key, nil), http.StatusNoContent)
	if r := te.do(http.MethodGet, "/contacts/"+c1.ID.String()+"/", key, nil); r.Code != http.StatusNotFound {
		t.Fatalf("erased contact still answers %d", r.Code)
	}
	if n := count("SELECT count(*) FROM messages WHERE chat_id = 601"); n != 0 {
		t.Errorf("%d messages of the erased contact left", n)
	}
	if n := count("SELECT count(*) FROM webhook_events WHERE payload->'message'->'chat'->>'id' = '601'"); n != 0 {
		t.Errorf("%d raw updates of the erased contact left", n)
	}
	if n := count("SELECT count(*) FROM messages WHERE contact_id = ?", c2.ID); n != 1 {
		t.Errorf("other contact's messages = %d, want 1", n)
	}
	if n := count("SELECT count(*) FROM webhook_events WHERE payload->'message'->'chat'->>'id' = '602'"); n != 1 {
		t.Errorf("other contact's raw updates = %d, want 1", n)
	}
	if r := te.do(http.MethodDelete, "/contacts/"+c1.ID.String()+"/", key, nil); r.Code != http.StatusNotFound {
		t.Errorf("second delete: %d, want 404", r.Code)
	}
}

// TestContacts_ListFilters: q (prefix of username, first or last name, case-insensitive,
// wildcards literal), blocked, opted_out and external_id on GET /contacts/.
func TestContacts_ListFilters(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("A")
	bot, _ := te.newBot(key, "Bot")
	ctx := context.Background()
	mk := func(chat int64, username, first, last string) contacts.Contact {
		c, err := te.contacts.UpsertFromTelegram(ctx, te.db, tid, bot.BotAppID,
			contacts.Identity{ChatID: chat, UserID: chat, Username: username, FirstName: first, LastName: last}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	mk(801, "annabel", "Ann", "Smith")
	bob := mk(802, "bobby", "Bob", "Annett")
	cy := mk(803, "c_y", "Cy", "Young")
	if _, err := te.db.ExecContext(ctx, "UPDATE contact_bots SET blocked = true WHERE contact_id = ?", bob.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := te.db.ExecContext(ctx, "UPDATE contact_bots SET opted_out = true WHERE contact_id = ?", cy.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := te.db.ExecContext(ctx, "UPDATE contacts SET external_id = 'x-1' WHERE id = ?", cy.ID); err != nil {
		t.Fatal(err)
	}
	ids := func(query string) []string {
		r := te.do(http.MethodGet, "/contacts/?"+query, key, nil)
		mustStatus(t, r, http.StatusOK)
		var p struct{ Items []contactResponse }
		r.decode(t, &p)
		var out []string
		for _, c := range p.Items {
			out = append(out, c.TelegramUsername)
		}
		slices.Sort(out)
		return out
	}
	for query, want := range map[string][]string{
		"q=ANN":               {"annabel", "bobby"}, // username annabel; last name Annett
		"q=%40bob":            {"bobby"},
		"q=c_":                {"c_y"},
		"q=c%25":              nil,     // % is literal
		"q=y":                 {"c_y"}, // last name Young
		"blocked=true":        {"bobby"},
		"blocked=false":       {"annabel", "c_y"},
		"opted_out=true":      {"c_y"},
		"external_id=x-1":     {"c_y"},
		"q=ann&blocked=false": {"annabel"},
		"external_id=x-2":     nil,
	} {
		if got := ids(query); !slices.Equal(got, want) {
			t.Errorf("?%s = %q, want %q", query, got, want)
		}
	}
	if r := te.do(http.MethodGet, "/contacts/?blocked=yes", key, nil); r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
		t.Errorf("blocked=yes: %d %s", r.Code, r.Body)
	}
}

// TestContacts_ExportImport: the export lists every contact (formula cells guarded); an
// edited export imported back updates tags, attributes, external_id, email and phone of
// existing contacts only, and reports each refused row with its reason.
func TestContacts_ExportImport(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("A")
	bot, _ := te.newBot(key, "Bot")
	ctx := context.Background()
	var ids []string
	for i := range 250 { // more than one export page (200)
		c, err := te.contacts.UpsertFromTelegram(ctx, te.db, tid, bot.BotAppID,
			contacts.Identity{ChatID: int64(900 + i), UserID: int64(900 + i), FirstName: "=cmd|' /C calc'!A0"}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID.String())
	}
	r := te.do(http.MethodGet, "/contacts/export/", key, nil)
	mustStatus(t, r, http.StatusOK)
	recs, err := csv.NewReader(bytes.NewReader(r.Body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 251 || recs[0][0] != "id" || recs[0][10] != "tags" {
		t.Fatalf("export: %d records, header %q", len(recs), recs[0])
	}
	if _, err := uuid.Parse(recs[1][14]); recs[0][14] != "bot_app_ids" || err != nil {
		t.Errorf("bot_app_ids: header %q, cell %q", recs[0][14], recs[1][14])
	}
	if recs[1][5] != "'=cmd|' /C calc'!A0" {
		t.Errorf("first_name cell %q: want the formula guarded with a leading '", recs[1][5])
	}
	seen := map[string]bool{}
	for _, rec := range recs[1:] {
		seen[rec[0]] = true
	}
	for _, id := range ids {
		if !seen[id] {
			t.Fatalf("contact %s missing from the export", id)
		}
	}

	// Edit two rows of the export and import it back with a bad row and an unknown one.
	header := strings.Join(recs[0], ",")
	row := func(rec []string) string {
		var b strings.Builder
		w := csv.NewWriter(&b)
		_ = w.Write(rec)
		w.Flush()
		return b.String()
	}
	a, b := recs[1], recs[2]
	a[1], a[9], a[10], a[11] = "crm-1", "+4915112345678", "vip|beta", `{"plan":"pro"}`
	b[8] = "not an email"
	body := header + "\n" + row(a) + row(b) + "00000000-0000-4000-8000-000000000000,,,,,,,,,,gold,,,,\n"
	req := request(t, http.MethodPost, "/contacts/import/", key, body)
	req.Header.Set("Content-Type", "text/csv")
	r = te.serve(req)
	mustStatus(t, r, http.StatusOK)
	var res contactImportResponse
	r.decode(t, &res)
	if res.Applied != 1 || res.RejectedCount != 2 || len(res.Rejected) != 2 ||
		res.Rejected[0].Row != 2 || res.Rejected[0].Field != "email" || res.Rejected[1].Row != 3 || res.Rejected[1].Code != "contact_not_found" {
		t.Fatalf("import: %s", r.Body)
	}
	var got contactResponse
	g := te.do(http.MethodGet, "/contacts/"+a[0]+"/", key, nil)
	g.decode(t, &got)
	if got.ExternalID == nil || *got.ExternalID != "crm-1" || got.Phone != "+4915112345678" ||
		!slices.Equal(got.Tags, []string{"beta", "vip"}) || string(got.Attributes["plan"]) != `"pro"` {
		t.Fatalf("imported contact: %s", g.Body)
	}
	// Matched by external_id now; never creates a contact.
	req = request(t, http.MethodPost, "/contacts/import/", key, "external_id,tags\ncrm-1,gold\nnobody,gold\n")
	req.Header.Set("Content-Type", "text/csv; charset=utf-8")
	r = te.serve(req)
	mustStatus(t, r, http.StatusOK)
	res = contactImportResponse{}
	r.decode(t, &res)
	if res.Applied != 1 || res.RejectedCount != 1 || res.Rejected[0].Code != "contact_not_found" {
		t.Fatalf("by external_id: %s", r.Body)
	}
	var n int
	if err := te.db.NewRaw("SELECT count(*) FROM contacts WHERE tenant_id = ?", tid).Scan(ctx, &n); err != nil || n != 250 {
		t.Fatalf("contacts = %d (%v), want 250: an import never creates one", n, err)
	}
	// Whole-file errors.
	for name, c := range map[string]struct {
		ct, body string
		status   int
	}{
		"json body":      {"application/json", `{"id":"x"}`, http.StatusUnsupportedMediaType},
		"no id column":   {"text/csv", "tags\nvip\n", http.StatusUnprocessableEntity},
		"unknown column": {"text/csv", "id,color\nx,red\n", http.StatusUnprocessableEntity},
		"empty":          {"text/csv", "", http.StatusUnprocessableEntity},
		"bad quotes":     {"text/csv", "id,tags\n\"x,vip\n", http.StatusUnprocessableEntity},
	} {
		req := request(t, http.MethodPost, "/contacts/import/", key, c.body)
		req.Header.Set("Content-Type", c.ct)
		if r := te.serve(req); r.Code != c.status {
			t.Errorf("%s: %d %s, want %d", name, r.Code, r.Body, c.status)
		}
	}
}
