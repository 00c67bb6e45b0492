package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/validate"
)

// invalidField asserts a 422 invalid_field naming field.
func invalidField(t *testing.T, r response, field string) {
	t.Helper()
	if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != validate.CodeInvalidField {
		t.Fatalf("want 422 invalid_field on %s, got %d %s", field, r.Code, r.Body)
	}
	var env struct {
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &env)
	if env.Error.Details["field"] != field {
		t.Fatalf("details.field %v, want %q: %s", env.Error.Details["field"], field, r.Body)
	}
}

func tagList(n int, prefix string) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%02d", prefix, i)
	}
	return out
}

// TestContactPatch covers PATCH /contacts/{id}/: set tags, merge and remove attributes, the
// limits and rules with the field named, another tenant's contact, unknown fields.
func TestContactPatch(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	c := te.newContact(tidA, bot.BotAppID, 4242)
	path := "/contacts/" + c.ID.String() + "/"

	// A new contact has [] and {}, never null.
	r := te.do(http.MethodGet, path, keyA, nil)
	mustStatus(t, r, http.StatusOK)
	if !strings.Contains(string(r.Body), `"tags":[]`) || !strings.Contains(string(r.Body), `"attributes":{}`) {
		t.Fatalf("new contact: %s", r.Body)
	}

	patch := func(body any) contactResponse {
		t.Helper()
		r := te.do(http.MethodPatch, path, keyA, body)
		mustStatus(t, r, http.StatusOK)
		var got contactResponse
		r.decode(t, &got)
		return got
	}
	got := patch(map[string]any{"tags": []string{"vip", "VIP", "beta", "vip"}, "attributes": map[string]any{"plan": "pro", "seats": 12, "trial": false, "big": json.Number("12345678901234567890")}})
	if !slices.Equal(got.Tags, []string{"VIP", "beta", "vip"}) {
		t.Fatalf("tags %v: want deduplicated, case-sensitive, sorted", got.Tags)
	}
	if string(got.Attributes["plan"]) != `"pro"` || string(got.Attributes["seats"]) != "12" || string(got.Attributes["trial"]) != "false" || string(got.Attributes["big"]) != "12345678901234567890" {
		t.Fatalf("attributes %v", got.Attributes)
	}
	// Merge: plan changes, seats removed, trial kept; tags not given stay.
	got = patch(map[string]any{"attributes": map[string]any{"plan": "team", "seats": nil, "city": "Zürich"}})
	if len(got.Attributes) != 4 || string(got.Attributes["plan"]) != `"team"` || got.Attributes["seats"] != nil ||
		string(got.Attributes["trial"]) != "false" || string(got.Attributes["city"]) != `"Zürich"` || len(got.Tags) != 3 {
		t.Fatalf("after merge: %+v", got)
	}
	// Tags replace the set; an empty list clears it.
	if got = patch(map[string]any{"tags": []string{}}); len(got.Tags) != 0 || len(got.Attributes) != 4 {
		t.Fatalf("cleared tags: %+v", got)
	}
	// Stored, not just answered.
	r = te.do(http.MethodGet, path, keyA, nil)
	r.decode(t, &got)
	if len(got.Tags) != 0 || string(got.Attributes["city"]) != `"Zürich"` {
		t.Fatalf("GET after PATCH: %s", r.Body)
	}

	// Limits: 50 tags pass, 51 do not; 51 keys after the merge do not.
	if got = patch(map[string]any{"tags": tagList(50, "t")}); len(got.Tags) != 50 {
		t.Fatalf("50 tags: %d", len(got.Tags))
	}
	invalidField(t, te.do(http.MethodPatch, path, keyA, map[string]any{"tags": tagList(51, "t")}), "tags")
	many := map[string]any{}
	for i := 0; i < 47; i++ { // 4 stored + 47 = 51
		many[fmt.Sprintf("k%d", i)] = i
	}
	invalidField(t, te.do(http.MethodPatch, path, keyA, map[string]any{"attributes": many}), "attributes")
	delete(many, "k0") // 50: passes
	if got = patch(map[string]any{"attributes": many}); len(got.Attributes) != 50 {
		t.Fatalf("50 keys: %d", len(got.Attributes))
	}

	for _, tc := range []struct {
		name, field string
		body        any
	}{
		{"empty tag", "tags[1]", map[string]any{"tags": []string{"ok", ""}}},
		{"padded tag", "tags[0]", map[string]any{"tags": []string{" vip"}}},
		{"control character", "tags[0]", map[string]any{"tags": []string{"a\u0007b"}}},
		{"65-character tag", "tags[0]", map[string]any{"tags": []string{strings.Repeat("é", 65)}}},
		{"bad key", "attributes.first-name", map[string]any{"attributes": map[string]any{"first-name": "x"}}},
		{"65-character key", "attributes." + strings.Repeat("k", 65), map[string]any{"attributes": map[string]any{strings.Repeat("k", 65): 1}}},
		{"nested object", "attributes.plan", map[string]any{"attributes": map[string]any{"plan": map[string]any{"name": "pro"}}}},
		{"array", "attributes.list", map[string]any{"attributes": map[string]any{"list": []int{1}}}},
		{"long value", "attributes.note", map[string]any{"attributes": map[string]any{"note": strings.Repeat("x", 1025)}}},
		{"NUL in value", "attributes.note", map[string]any{"attributes": map[string]any{"note": "a\u0000b"}}},
		{"huge number", "attributes.n", `{"attributes": {"n": 1e400}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			invalidField(t, te.do(http.MethodPatch, path, keyA, tc.body), tc.field)
		})
	}
	// A refused patch changed nothing.
	r = te.do(http.MethodGet, path, keyA, nil)
	r.decode(t, &got)
	if len(got.Tags) != 50 || len(got.Attributes) != 50 {
		t.Fatalf("after refused patches: %d tags, %d attributes", len(got.Tags), len(got.Attributes))
	}

	r = te.do(http.MethodPatch, path, keyA, map[string]any{"labels": []string{"x"}})
	if r.Code != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %s", r.Code, r.Body)
	}
	for _, p := range []string{path, "/contacts/" + uuid.NewString() + "/", "/contacts/not-a-uuid/"} {
		r = te.do(http.MethodPatch, p, keyB, map[string]any{"tags": []string{"x"}})
		if r.Code != http.StatusNotFound || r.errorCode(t) != "contact_not_found" {
			t.Fatalf("%s as B: %d %s", p, r.Code, r.Body)
		}
	}
}

// TestContactBulkTags covers POST /contacts/bulk-tags: add and remove by ids and by filter,
// the ?tag= list filter, foreign and unknown ids (nothing changed), and the 50-tag cap
// (reported, not truncated).
func TestContactBulkTags(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	tidB, keyB := te.newTenant("B")
	bot1, _ := te.newBot(keyA, "One")
	bot2, _ := te.newBot(keyA, "Two")
	botB, _ := te.newBot(keyB, "B")
	a1, a2 := te.newContact(tidA, bot1.BotAppID, 1), te.newContact(tidA, bot1.BotAppID, 2)
	a3 := te.newContact(tidA, bot2.BotAppID, 3)
	b1 := te.newContact(tidB, botB.BotAppID, 1)

	bulk := func(key string, body any) (bulkTagsResponse, response) {
		t.Helper()
		r := te.do(http.MethodPost, "/contacts/bulk-tags", key, body)
		var res bulkTagsResponse
		if r.Code == http.StatusOK {
			r.decode(t, &res)
		}
		return res, r
	}
	tagsOf := func(id uuid.UUID) []string {
		t.Helper()
		var c contactResponse
		te.do(http.MethodGet, "/contacts/"+id.String()+"/", keyA, nil).decode(t, &c)
		return c.Tags
	}
	withTag := func(key, tag string) []uuid.UUID {
		t.Helper()
		var pg listPage[contactResponse]
		r := te.do(http.MethodGet, "/contacts/?tag="+tag, key, nil)
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &pg)
		var ids []uuid.UUID
		for _, c := range pg.Items {
			ids = append(ids, c.ID)
		}
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		return ids
	}
	sorted := func(ids ...uuid.UUID) []uuid.UUID {
		slices.SortFunc(ids, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		return ids
	}

	res, r := bulk(keyA, map[string]any{"contact_ids": []uuid.UUID{a1.ID, a2.ID, a1.ID}, "add": []string{"vip", "spring"}})
	mustStatus(t, r, http.StatusOK)
	if res.Matched != 2 || res.Updated != 2 || res.OverLimit != 0 {
		t.Fatalf("add by ids: %s", r.Body)
	}
	if got := tagsOf(a1.ID); !slices.Equal(got, []string{"spring", "vip"}) {
		t.Fatalf("a1 tags %v", got)
	}
	if got := tagsOf(a3.ID); len(got) != 0 {
		t.Fatalf("a3 not named but tagged: %v", got)
	}
	// Again: nothing changes.
	if res, r = bulk(keyA, map[string]any{"contact_ids": []uuid.UUID{a1.ID, a2.ID}, "add": []string{"vip"}}); res.Matched != 2 || res.Updated != 0 {
		t.Fatalf("idempotent add: %s", r.Body)
	}
	// By filter: bot 2's contacts; then everyone with tag vip loses spring and gains done.
	if res, r = bulk(keyA, map[string]any{"filter": map[string]any{"bot_app_id": bot2.BotAppID}, "add": []string{"vip"}}); res.Matched != 1 || res.Updated != 1 {
		t.Fatalf("add by bot filter: %s", r.Body)
	}
	if got := withTag(keyA, "vip"); !slices.Equal(got, sorted(a1.ID, a2.ID, a3.ID)) {
		t.Fatalf("?tag=vip: %v", got)
	}
	if res, r = bulk(keyA, map[string]any{"filter": map[string]any{"tag": "spring"}, "remove": []string{"spring"}, "add": []string{"done"}}); res.Matched != 2 || res.Updated != 2 {
		t.Fatalf("by tag filter: %s", r.Body)
	}
	if got := tagsOf(a2.ID); !slices.Equal(got, []string{"done", "vip"}) {
		t.Fatalf("a2 tags %v", got)
	}
	if got := withTag(keyA, "spring"); len(got) != 0 {
		t.Fatalf("?tag=spring after removal: %v", got)
	}
	// B's empty filter reaches B's contact only.
	if res, r = bulk(keyB, map[string]any{"filter": map[string]any{}, "add": []string{"b-only"}}); res.Matched != 1 || res.Updated != 1 {
		t.Fatalf("B's empty filter: %s", r.Body)
	}
	if got := withTag(keyA, "b-only"); len(got) != 0 {
		t.Fatalf("A's contacts got B's tag: %v", got)
	}
	if got := withTag(keyB, "b-only"); !slices.Equal(got, []uuid.UUID{b1.ID}) {
		t.Fatalf("B's tag: %v", got)
	}

	// Foreign and unknown ids: 404 unknown_contacts, the same answer, nothing changed.
	for name, ids := range map[string][]uuid.UUID{"B's contact": {a1.ID, b1.ID}, "random": {a1.ID, uuid.New()}} {
		_, r = bulk(keyA, map[string]any{"contact_ids": ids, "add": []string{"x"}})
		if r.Code != http.StatusNotFound || r.errorCode(t) != "unknown_contacts" {
			t.Fatalf("%s: %d %s", name, r.Code, r.Body)
		}
	}
	if got := tagsOf(a1.ID); slices.Contains(got, "x") {
		t.Fatalf("a refused bulk request tagged a1: %v", got)
	}
	_, r = bulk(keyA, map[string]any{"filter": map[string]any{"bot_app_id": botB.BotAppID}, "add": []string{"x"}})
	if r.Code != http.StatusNotFound || r.errorCode(t) != "bot_not_found" {
		t.Fatalf("B's bot in A's filter: %d %s", r.Code, r.Body)
	}

	// The cap: a1 holds 49 tags after this PATCH; adding two more would make 51.
	full := append(tagList(47, "f"), "vip", "done")
	mustStatus(t, te.do(http.MethodPatch, "/contacts/"+a1.ID.String()+"/", keyA, map[string]any{"tags": full}), http.StatusOK)
	res, r = bulk(keyA, map[string]any{"filter": map[string]any{"tag": "vip"}, "add": []string{"new1", "new2"}})
	mustStatus(t, r, http.StatusOK)
	if res.Matched != 3 || res.Updated != 2 || res.OverLimit != 1 || !slices.Equal(res.OverLimitSample, []uuid.UUID{a1.ID}) {
		t.Fatalf("cap: %s", r.Body)
	}
	if got := tagsOf(a1.ID); len(got) != 49 || slices.Contains(got, "new1") {
		t.Fatalf("a1 over the cap was changed: %d %v", len(got), got)
	}
	// Adding one fits exactly (50); a tag already held does not count twice.
	if res, r = bulk(keyA, map[string]any{"contact_ids": []uuid.UUID{a1.ID}, "add": []string{"vip", "new1"}}); res.Updated != 1 || res.OverLimit != 0 {
		t.Fatalf("50th tag: %s", r.Body)
	}
	if got := tagsOf(a1.ID); len(got) != 50 {
		t.Fatalf("a1: %d tags", len(got))
	}

	// Rules.
	for _, tc := range []struct {
		name, field string
		body        any
	}{
		{"both selectors", "contact_ids", map[string]any{"contact_ids": []uuid.UUID{a1.ID}, "filter": map[string]any{}, "add": []string{"x"}}},
		{"no selector", "contact_ids", map[string]any{"add": []string{"x"}}},
		{"empty ids", "contact_ids", map[string]any{"contact_ids": []uuid.UUID{}, "add": []string{"x"}}},
		{"bad id", "contact_ids[1]", map[string]any{"contact_ids": []string{a1.ID.String(), "nope"}, "add": []string{"x"}}},
		{"nothing to do", "add", map[string]any{"contact_ids": []uuid.UUID{a1.ID}}},
		{"bad tag", "add[1]", map[string]any{"contact_ids": []uuid.UUID{a1.ID}, "add": []string{"ok", "tab\there"}}},
		{"bad remove", "remove[0]", map[string]any{"contact_ids": []uuid.UUID{a1.ID}, "remove": []string{""}}},
		{"add and remove", "remove[0]", map[string]any{"contact_ids": []uuid.UUID{a1.ID}, "add": []string{"x"}, "remove": []string{"x"}}},
		{"bad filter tag", "filter.tag", map[string]any{"filter": map[string]any{"tag": " x"}, "add": []string{"y"}}},
		{"bad filter bot", "filter.bot_app_id", map[string]any{"filter": map[string]any{"bot_app_id": "nope"}, "add": []string{"y"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := bulk(keyA, tc.body)
			invalidField(t, r, tc.field)
		})
	}
	ids := make([]uuid.UUID, 10_001)
	for i := range ids {
		ids[i] = uuid.New()
	}
	_, r = bulk(keyA, map[string]any{"contact_ids": ids, "add": []string{"x"}})
	invalidField(t, r, "contact_ids")
	_, r = bulk(keyA, map[string]any{"contact_ids": []uuid.UUID{a1.ID}, "add": []string{"x"}, "tags": []string{"y"}})
	if r.Code != http.StatusBadRequest {
		t.Fatalf("unknown field: %d %s", r.Code, r.Body)
	}
	r = te.do(http.MethodGet, "/contacts/?tag=%20x", keyA, nil)
	invalidField(t, r, "tag")

	// 10,000 ids in one request (the limit) is one statement, not 10,000.
	var many []uuid.UUID
	if err := te.db.NewRaw(`WITH c AS (INSERT INTO contacts (tenant_id, bot_id, telegram_chat_id)
		SELECT ?, ?, g FROM generate_series(100, 10099) AS g RETURNING *),
		l AS (INSERT INTO contact_bots (contact_id, tenant_id, bot_id, telegram_chat_id) SELECT id, tenant_id, bot_id, telegram_chat_id FROM c) SELECT id FROM c`, tidA, bot2.BotAppID).Scan(context.Background(), &many); err != nil {
		t.Fatal(err)
	}
	res, r = bulk(keyA, map[string]any{"contact_ids": many, "add": []string{"bulk"}})
	mustStatus(t, r, http.StatusOK)
	if res.Matched != 10_000 || res.Updated != 10_000 {
		t.Fatalf("10,000 ids: %s", r.Body)
	}
}
