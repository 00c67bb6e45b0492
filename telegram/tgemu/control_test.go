package tgemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

// ctl calls the control API and decodes the JSON answer into out (if not nil).
func ctl(t *testing.T, s *Server, method, path string, body any, out any) int {
	t.Helper()
	var rd *bytes.Reader
	switch b := body.(type) {
	case nil:
		rd = bytes.NewReader(nil)
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, _ := http.NewRequest(method, s.URL()+path, rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

func TestControlAPI(t *testing.T) {
	s := NewTest(t, Options{RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 20 * time.Millisecond})

	var info BotInfo
	if st := ctl(t, s, "POST", "/control/bots", map[string]string{"username": "ctl_bot", "first_name": "Ctl"}, &info); st != 200 || info.ID == 0 || info.Username != "ctl_bot" || info.Token == "" {
		t.Fatalf("create bot: %d %+v", st, info)
	}
	p := fmt.Sprintf("/control/bots/%d", info.ID)
	rc := newReceiver(t)
	b := newGotBot(t, s, info.Token)
	if _, err := b.SetWebhook(rc.srv.URL, nil); err != nil {
		t.Fatal(err)
	}

	user := map[string]any{"id": 4242, "first_name": "Kim", "username": "kim", "language_code": "en"}
	var up struct {
		UpdateID int64 `json:"update_id"`
	}
	if st := ctl(t, s, "POST", p+"/messages", map[string]any{"user": user, "text": "/start"}, &up); st != 200 || up.UpdateID == 0 {
		t.Fatalf("message: %d %+v", st, up)
	}
	first := up.UpdateID
	if st := ctl(t, s, "GET", p+"/idle?timeout_ms=3000", nil, nil); st != 200 {
		t.Fatalf("idle: %d", st)
	}
	if got := rc.updates(); len(got) != 1 || got[0].Message.Text != "/start" || got[0].Message.From.Username != "kim" {
		t.Fatalf("delivered %+v", got)
	}

	// The bot answers over the Bot API; the control API shows it.
	if _, err := b.SendMessage(4242, "*hi*", nil); err != nil {
		t.Fatal(err)
	}
	var sent struct {
		Items []struct {
			ChatID    int64  `json:"chat_id"`
			MessageID int64  `json:"message_id"`
			Text      string `json:"text"`
			Date      int64  `json:"date"`
		} `json:"items"`
	}
	if st := ctl(t, s, "GET", p+"/sent?chat_id=4242", nil, &sent); st != 200 || len(sent.Items) != 1 || sent.Items[0].Text != "*hi*" || sent.Items[0].Date == 0 {
		t.Fatalf("sent: %d %+v", st, sent)
	}

	// Faults: one 429 for chat 4242.
	if st := ctl(t, s, "POST", p+"/faults", map[string]any{"kind": "too_many_requests", "chat_id": 4242, "retry_after": 3, "times": 1}, nil); st != 200 {
		t.Fatalf("fault: %d", st)
	}
	if st := ctl(t, s, "POST", p+"/faults", map[string]any{"kind": "nope"}, nil); st != 400 {
		t.Fatalf("bad fault kind: %d", st)
	}
	_, err := b.SendMessage(4242, "again", nil)
	if te := asTelegramError(t, err); te.Code != 429 || te.ResponseParams.RetryAfter != 3 {
		t.Fatalf("fault via control: %+v", te)
	}
	if st := ctl(t, s, "POST", p+"/faults", map[string]any{"kind": "blocked"}, nil); st != 200 {
		t.Fatal(st)
	}
	if st := ctl(t, s, "DELETE", p+"/faults", nil, nil); st != 200 {
		t.Fatal(st)
	}

	// Per-chat violation (the fault answer above did not count as an arrival,
	// but the first "*hi*" did).
	_, err = b.SendMessage(4242, "too soon", nil)
	if te := asTelegramError(t, err); te.Code != 429 {
		t.Fatalf("per-chat: %+v", te)
	}
	var viol struct {
		PerBot  int                   `json:"per_bot"`
		PerChat int                   `json:"per_chat"`
		Bots    map[string]Violations `json:"bots"`
	}
	if st := ctl(t, s, "GET", "/control/violations", nil, &viol); st != 200 || viol.PerChat != 1 || viol.Bots[fmt.Sprint(info.ID)].PerChat != 1 {
		t.Fatalf("violations: %d %+v", st, viol)
	}

	var calls struct {
		Items []struct {
			Method string            `json:"method"`
			Params map[string]string `json:"params"`
			Status int               `json:"status"`
		} `json:"items"`
	}
	if st := ctl(t, s, "GET", p+"/calls?method=sendMessage", nil, &calls); st != 200 || len(calls.Items) != 3 ||
		calls.Items[1].Status != 429 || calls.Items[0].Params["text"] != "*hi*" {
		t.Fatalf("calls: %d %+v", st, calls)
	}

	// Block, raw update, redeliver.
	if st := ctl(t, s, "POST", p+"/block", map[string]any{"user": user}, &up); st != 200 || up.UpdateID != first+1 {
		t.Fatalf("block: %d %+v", st, up)
	}
	_, err = b.SendMessage(4242, "blocked?", nil)
	if te := asTelegramError(t, err); te.Code != 403 {
		t.Fatalf("after control block: %+v", te)
	}
	raw := `{"callback_query":{"id":"99","from":{"id":4242,"is_bot":false,"first_name":"Kim"},"chat_instance":"1","data":"x"}}`
	if st := ctl(t, s, "POST", p+"/updates", raw, &up); st != 200 || up.UpdateID != first+2 {
		t.Fatalf("raw update: %d %+v", st, up)
	}
	if st := ctl(t, s, "POST", p+"/redeliver", map[string]any{"update_id": first}, nil); st != 200 {
		t.Fatalf("redeliver: %d", st)
	}
	if st := ctl(t, s, "POST", p+"/redeliver", map[string]any{"update_id": 1}, nil); st != 404 {
		t.Fatalf("redeliver unknown: %d", st)
	}
	if st := ctl(t, s, "GET", p+"/idle?timeout_ms=3000", nil, nil); st != 200 {
		t.Fatalf("idle: %d", st)
	}
	got := rc.updates()
	if len(got) != 4 || got[1].MyChatMember == nil || got[2].CallbackQuery == nil || got[3].UpdateId != first {
		t.Fatalf("delivered %+v", got)
	}

	var detail struct {
		ID         int64       `json:"id"`
		Token      string      `json:"token"`
		Webhook    WebhookInfo `json:"webhook"`
		Violations Violations  `json:"violations"`
	}
	if st := ctl(t, s, "GET", p, nil, &detail); st != 200 || detail.ID != info.ID || detail.Webhook.URL != rc.srv.URL || detail.Violations.PerChat != 1 {
		t.Fatalf("bot detail: %d %+v", st, detail)
	}

	// Errors.
	if st := ctl(t, s, "GET", "/control/bots/1", nil, nil); st != 404 {
		t.Fatalf("unknown bot: %d", st)
	}
	if st := ctl(t, s, "GET", "/control/bots/abc", nil, nil); st != 400 {
		t.Fatalf("bad bot id: %d", st)
	}
	if st := ctl(t, s, "POST", p+"/messages", "{", nil); st != 400 {
		t.Fatalf("bad json: %d", st)
	}
	if st := ctl(t, s, "POST", p+"/messages", map[string]any{"user": map[string]any{"id": 0}, "text": "x"}, nil); st != 400 {
		t.Fatalf("user id 0: %d", st)
	}
	if st := ctl(t, s, "POST", p+"/updates", `[1]`, nil); st != 400 {
		t.Fatalf("non-object update: %d", st)
	}
}

// TestHandlerWithoutStart mounts Handler on an httptest server (as the lead's
// code may) and drives a bot over urlencoded requests only.
func TestHandlerWithoutStart(t *testing.T) {
	s := New(Options{})
	defer s.Close()
	info := s.CreateBot("", "")
	if !strings.HasSuffix(info.Username, "_bot") || info.FirstName == "" {
		t.Fatalf("defaults: %+v", info)
	}
	if s.URL() != "" {
		t.Fatalf("URL before Start: %q", s.URL())
	}
	srv := newHTTPTest(t, s)
	resp, err := http.PostForm(srv+"/bot"+info.Token+"/getMe", url.Values{})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var env struct {
		OK     bool `json:"ok"`
		Result struct {
			ID    int64 `json:"id"`
			IsBot bool  `json:"is_bot"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil || !env.OK || env.Result.ID != info.ID || !env.Result.IsBot {
		t.Fatalf("getMe: %v %+v", err, env)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}
}

func newHTTPTest(t *testing.T, s *Server) string {
	t.Helper()
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestControlIndex: GET /control/ lists every control route, and each listed route is
// served (a listed path that did not exist would fall through to the Bot API's 404).
func TestControlIndex(t *testing.T) {
	s := NewTest(t, Options{})
	var idx struct {
		Routes []ControlRoute `json:"routes"`
	}
	for _, path := range []string{"/control/", "/control"} {
		if st := ctl(t, s, "GET", path, nil, &idx); st != 200 || len(idx.Routes) < 14 {
			t.Fatalf("GET %s: %d, %d routes", path, st, len(idx.Routes))
		}
	}
	seen := map[string]bool{}
	for _, r := range idx.Routes {
		if r.Method == "" || !strings.HasPrefix(r.Path, "/control/") || r.Returns == "" {
			t.Fatalf("incomplete route %+v", r)
		}
		seen[r.Method+" "+r.Path] = true
		req := httptest.NewRequest(r.Method, strings.ReplaceAll(r.Path, "{bot_id}", "999"), nil)
		_, pattern := s.mux.Handler(req)
		if pattern != r.Method+" "+r.Path {
			t.Fatalf("listed %s %s is served by %q", r.Method, r.Path, pattern)
		}
	}
	for _, want := range []string{"POST /control/bots", "POST /control/bots/{bot_id}/messages", "POST /control/bots/{bot_id}/faults", "GET /control/bots/{bot_id}/sent"} {
		if !seen[want] {
			t.Fatalf("GET /control/ does not list %s", want)
		}
	}
}
