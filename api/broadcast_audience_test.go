package api

import (
	"net/http"
	"slices"
	"testing"

	"github.com/google/uuid"
)

// TestBroadcastSegment covers the segment over HTTP: POST /broadcast/preview-audience/
// (count, blocked, sample as GET /contacts/ renders them, no broadcast created), a bad part
// named in details.field, unknown fields 400, another tenant's bot 404, and POST /broadcast/
// with a segment targeting exactly the previewed contacts and returning it in GET.
func TestBroadcastSegment(t *testing.T) {
	te := newEnv(t)
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	vip1, vip2, other := te.newContact(tidA, bot.BotAppID, 501), te.newContact(tidA, bot.BotAppID, 502), te.newContact(tidA, bot.BotAppID, 503)
	for _, p := range []struct {
		id   uuid.UUID
		body map[string]any
	}{
		{vip1.ID, map[string]any{"tags": []string{"vip"}, "attributes": map[string]any{"plan": "pro", "seats": 12}}},
		{vip2.ID, map[string]any{"tags": []string{"vip"}, "attributes": map[string]any{"plan": "free", "seats": 1}}},
		{other.ID, map[string]any{"attributes": map[string]any{"plan": "pro", "seats": 40}}},
	} {
		mustStatus(t, te.do(http.MethodPatch, "/contacts/"+p.id.String()+"/", keyA, p.body), http.StatusOK)
	}
	segment := map[string]any{
		"tags_all":   []string{"vip"},
		"attributes": []map[string]any{{"key": "seats", "op": "gt", "value": 5}, {"key": "plan", "op": "in", "value": []any{"pro", "team"}}},
	}
	preview := func(key string, body any) response {
		t.Helper()
		return te.do(http.MethodPost, "/broadcast/preview-audience/", key, body)
	}

	r := preview(keyA, map[string]any{"bot_app_id": bot.BotAppID, "segment": segment})
	mustStatus(t, r, http.StatusOK)
	var pv previewAudienceResponse
	r.decode(t, &pv)
	if pv.Count != 1 || pv.Blocked != 0 || len(pv.Sample) != 1 || pv.Sample[0].ID != vip1.ID || !slices.Equal(pv.Sample[0].Tags, []string{"vip"}) {
		t.Fatalf("preview: %s", r.Body)
	}
	r = preview(keyA, map[string]any{"bot_app_id": bot.BotAppID, "segment": map[string]any{}})
	r.decode(t, &pv)
	if pv.Count != 3 || len(pv.Sample) != 3 || pv.Sample[0].ID != other.ID {
		t.Fatalf("preview of {}: %s", r.Body)
	}
	r = preview(keyA, map[string]any{"recipients": []uuid.UUID{vip2.ID, vip2.ID}})
	r.decode(t, &pv)
	if r.Code != http.StatusOK || pv.Count != 1 || pv.Sample[0].ID != vip2.ID {
		t.Fatalf("preview of recipients: %d %s", r.Code, r.Body)
	}

	// Errors.
	invalidField(t, preview(keyA, map[string]any{"segment": map[string]any{"attributes": []map[string]any{{"key": "plan", "op": "like", "value": "p"}}}}), "segment.attributes[0].op")
	invalidField(t, preview(keyA, map[string]any{"segment": map[string]any{"tags_any": []string{""}}}), "segment.tags_any[0]")
	invalidField(t, preview(keyA, map[string]any{"segment": map[string]any{}, "recipients": []uuid.UUID{vip1.ID}}), "segment")
	invalidField(t, preview(keyA, map[string]any{}), "recipients")
	if r := preview(keyA, map[string]any{"segment": map[string]any{"tags": []string{"vip"}}}); r.Code != http.StatusBadRequest {
		t.Fatalf("unknown segment field: %d %s", r.Code, r.Body)
	}
	if r := preview(keyB, map[string]any{"bot_app_id": bot.BotAppID, "segment": map[string]any{}}); r.Code != http.StatusNotFound || r.errorCode(t) != "bot_not_found" {
		t.Fatalf("another tenant's bot: %d %s", r.Code, r.Body)
	}
	create := func(body map[string]any) response {
		t.Helper()
		base := map[string]any{"name": "Pro seats", "platform": "TELEGRAM", "message_text": "Hi", "bot_app_id": bot.BotAppID}
		for k, v := range body {
			base[k] = v
		}
		return te.do(http.MethodPost, "/broadcast/", keyA, base)
	}
	invalidField(t, create(map[string]any{"segment": map[string]any{"tags_any": []string{"nobody"}}}), "segment")
	invalidField(t, create(map[string]any{"segment": segment, "recipients": []uuid.UUID{}}), "segment")
	invalidField(t, create(map[string]any{"segment": map[string]any{"attributes": []map[string]any{{"key": "seats", "op": "lt", "value": "5"}}}}), "segment.attributes[0].value")
	r = te.do(http.MethodGet, "/broadcast/", keyA, nil)
	if r.Code != http.StatusOK || string(r.Body) != `{"items":[],"next_cursor":""}`+"\n" {
		t.Fatalf("previews and refused creates stored a broadcast: %s", r.Body)
	}

	// Create targets what the preview showed and records the segment.
	r = create(map[string]any{"segment": segment})
	mustStatus(t, r, http.StatusAccepted)
	var bc broadcastResponse
	r.decode(t, &bc)
	if bc.Total != 1 || bc.Segment == nil || len(bc.Segment.Attributes) != 2 || bc.Segment.Attributes[1].Op != "in" {
		t.Fatalf("created: %s", r.Body)
	}
	r = te.do(http.MethodGet, "/broadcast/"+bc.ID.String()+"/", keyA, nil)
	mustStatus(t, r, http.StatusOK)
	var got broadcastResponse
	r.decode(t, &got)
	if got.Segment == nil || !slices.Equal(got.Segment.TagsAll, []string{"vip"}) || string(got.Segment.Attributes[0].Value) != "5" {
		t.Fatalf("GET: %s", r.Body)
	}
	var contactIDs []uuid.UUID
	if err := te.db.NewSelect().Table("broadcast_recipients").Column("contact_id").Where("broadcast_id = ?", bc.ID).Scan(t.Context(), &contactIDs); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(contactIDs, []uuid.UUID{vip1.ID}) {
		t.Fatalf("recipients %v, want [%s]", contactIDs, vip1.ID)
	}
	// A broadcast to recipients has segment null.
	r = create(map[string]any{"recipients": []uuid.UUID{vip2.ID}})
	mustStatus(t, r, http.StatusAccepted)
	r.decode(t, &got)
	if got.Segment != nil {
		t.Fatalf("recipients broadcast: %s", r.Body)
	}
}
