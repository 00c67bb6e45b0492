package api

import (
	"context"
	"fmt"
	"net/http"
	"testing"

	"github.com/google/uuid"
)

// TestBotInbox covers inbox_mode and inbox_keywords on PUT/GET of a bot, the inbox flag of
// inbound messages on GET /messages/{id}/, and the editor (updated_by, token_rotated_by)
// recorded from the calling API key's name.
func TestBotInbox(t *testing.T) {
	te := newEnv(t)
	_, admin := te.newTenant("acme")
	alice := te.newKey(admin, "alice", "write").Key
	bob := te.newKey(admin, "bob", "write").Key
	b := te.newTplBot(admin, "Support")
	p := "/telegram/v1/bots/" + b.BotAppID.String() + "/"
	get := func(t *testing.T) botResponse {
		t.Helper()
		var got botResponse
		r := te.do(http.MethodGet, p, admin, nil)
		mustStatus(t, r, http.StatusOK)
		r.decode(t, &got)
		return got
	}
	put := func(t *testing.T, key string, body map[string]any) botResponse {
		t.Helper()
		r := te.do(http.MethodPut, p, key, body)
		mustStatus(t, r, http.StatusOK)
		var got botResponse
		r.decode(t, &got)
		return got
	}

	t.Run("defaults", func(t *testing.T) {
		var m map[string]any
		te.do(http.MethodGet, p, admin, nil).decode(t, &m)
		if m["inbox_mode"] != "all" || fmt.Sprint(m["inbox_keywords"]) != "[]" || m["updated_by"] != "" || m["token_rotated_by"] != "" {
			t.Fatalf("%v", m)
		}
	})
	t.Run("422", func(t *testing.T) {
		for _, c := range []struct {
			body  map[string]any
			field string
		}{
			{map[string]any{"inbox_mode": "some"}, "inbox_mode"},
			{map[string]any{"inbox_keywords": []string{"a", "b", "c", ""}}, "inbox_keywords[3]"},
			{map[string]any{"inbox_keywords": []string{"x", "12345678901234567890123456789012345678901234567890123456789012345"}}, "inbox_keywords[1]"},
			{map[string]any{"inbox_mode": "keywords", "inbox_keywords": make([]string, 101)}, "inbox_keywords"},
		} {
			r := te.do(http.MethodPut, p, alice, c.body)
			mustStatus(t, r, http.StatusUnprocessableEntity)
			if code, field := r.errorCode(t), errField(t, r); code != "invalid_field" || field != c.field {
				t.Errorf("%v: %s %s, want invalid_field %s", c.body, code, field, c.field)
			}
		}
		if got := get(t); got.InboxMode != "all" || got.UpdatedBy != "" {
			t.Fatalf("changed by refused PUTs: %+v", got)
		}
	})
	t.Run("set keywords; inbox flag on GET /messages/{id}/", func(t *testing.T) {
		got := put(t, alice, map[string]any{"inbox_mode": "keywords", "inbox_keywords": []string{"Refund", " Ärger "}})
		if got.InboxMode != "keywords" || fmt.Sprint(got.InboxKeywords) != "[refund ärger]" || got.UpdatedBy != "alice" || got.TokenRotatedBy != "" {
			t.Fatalf("%+v", got)
		}
		te.deliverText(b, 101, 77, "Ann", "I need a REFUND")
		te.deliverText(b, 102, 77, "Ann", "hello")
		te.processAndSend(b.BotAppID)
		for updateID, want := range map[int64]bool{101: true, 102: false} {
			var id uuid.UUID
			if err := te.db.NewRaw("SELECT id FROM messages WHERE bot_id = ? AND update_id = ?", b.BotAppID, updateID).Scan(context.Background(), &id); err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			r := te.do(http.MethodGet, "/messages/"+id.String()+"/", admin, nil)
			mustStatus(t, r, http.StatusOK)
			r.decode(t, &m)
			if m["inbox"] != want {
				t.Errorf("update %d: inbox = %v, want %v", updateID, m["inbox"], want)
			}
		}
	})
	t.Run("rotation records the editor", func(t *testing.T) {
		newToken, err := te.emu.AddToken(b.info.ID)
		if err != nil {
			t.Fatal(err)
		}
		got := put(t, bob, map[string]any{"bot_token": newToken, "inbox_mode": "off"})
		if got.TokenRotatedAt == nil || got.TokenRotatedBy != "bob" || got.UpdatedBy != "bob" || got.InboxMode != "off" {
			t.Fatalf("%+v", got)
		}
		got = put(t, alice, map[string]any{"status": "disabled"})
		if got.UpdatedBy != "alice" || got.TokenRotatedBy != "bob" || got.Status != "disabled" {
			t.Fatalf("%+v", got)
		}
		if got = get(t); got.UpdatedBy != "alice" || got.TokenRotatedBy != "bob" || got.InboxMode != "off" {
			t.Fatalf("GET: %+v", got)
		}
	})
}

// errField returns details.field of an error response ("" when none).
func errField(t *testing.T, r response) string {
	t.Helper()
	var env struct {
		Error struct {
			Details map[string]any `json:"details"`
		} `json:"error"`
	}
	r.decode(t, &env)
	s, _ := env.Error.Details["field"].(string)
	return s
}
