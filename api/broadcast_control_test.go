package api

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestBroadcastLifecycle walks the lifecycle routes over HTTP: every answer is checked
// against openapi.yaml by te.do.
func TestBroadcastLifecycle(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("A")
	bot, info := te.newBot(key, "Bot")
	c1 := te.newContact(tid, bot.BotAppID, 1001)
	c2 := te.newContact(tid, bot.BotAppID, 1002)
	body := func(extra map[string]any) map[string]any {
		m := map[string]any{"name": "Spring sale", "platform": "TELEGRAM", "message_text": "hello",
			"recipients": []any{c1.ID, c2.ID}, "bot_app_id": bot.BotAppID}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	decode := func(r response) broadcastResponse {
		t.Helper()
		var b broadcastResponse
		r.decode(t, &b)
		return b
	}
	conflict := func(r response, code string) {
		t.Helper()
		if r.Code != http.StatusConflict || r.errorCode(t) != code {
			t.Fatalf("status %d %s, want 409 %s", r.Code, r.Body, code)
		}
	}

	t.Run("422", func(t *testing.T) {
		for field, extra := range map[string]map[string]any{
			"send_at":                {"send_at": "tomorrow"},
			"max_consecutive_errors": {"max_consecutive_errors": 0},
		} {
			r := te.do(http.MethodPost, "/broadcast/", key, body(extra))
			mustStatus(t, r, http.StatusUnprocessableEntity)
			if r.errorCode(t) != "invalid_field" {
				t.Errorf("%s: %s", field, r.Body)
			}
		}
		mustStatus(t, te.do(http.MethodPost, "/broadcast/", key, body(map[string]any{"max_consecutive_errors": 10001})), http.StatusUnprocessableEntity)
	})

	// A draft: saved, validated, not sent.
	r := te.do(http.MethodPost, "/broadcast/", key, body(map[string]any{"draft": true, "max_consecutive_errors": 5}))
	mustStatus(t, r, http.StatusAccepted)
	d := decode(r)
	if d.Status != broadcast.StatusDraft || d.MaxConsecutiveErrors != 5 || d.Cycle != 1 || d.SendAt != nil || d.Pending != 2 || d.ETA != nil {
		t.Fatalf("draft: %s", r.Body)
	}
	p := "/broadcast/" + d.ID.String() + "/"
	mustStatus(t, te.do(http.MethodPost, "/broadcast/", key, body(map[string]any{"draft": true, "recipients": []any{}})), http.StatusUnprocessableEntity)

	// PUT: the body of POST; unknown fields and bad values as in POST.
	r = te.do(http.MethodPut, p, key, body(map[string]any{"message_text": "edited", "recipients": []any{c1.ID}}))
	mustStatus(t, r, http.StatusOK)
	if up := decode(r); up.Status != broadcast.StatusDraft || up.MessageText != "edited" || up.Total != 1 || up.MaxConsecutiveErrors != broadcast.DefaultMaxConsecutiveErrors {
		t.Fatalf("PUT draft: %s", r.Body)
	}
	if r := te.do(http.MethodPut, p, key, body(map[string]any{"colour": "red"})); r.Code != http.StatusBadRequest || r.errorCode(t) != "unknown_field" {
		t.Errorf("PUT unknown field: %d %s", r.Code, r.Body)
	}
	mustStatus(t, te.do(http.MethodPut, p, key, body(map[string]any{"message_text": ""})), http.StatusUnprocessableEntity)
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	r = te.do(http.MethodPut, p, key, body(map[string]any{"draft": false, "send_at": at.Format(time.RFC3339)}))
	mustStatus(t, r, http.StatusOK)
	if s := decode(r); s.Status != broadcast.StatusScheduled || s.SendAt == nil || !s.SendAt.Equal(at) {
		t.Fatalf("PUT scheduled: %s", r.Body)
	}
	ti, err := asynq.NewInspectorFromRedisClient(te.rdb).GetTaskInfo(broadcast.QueueBroadcast, broadcast.TypeRun+":"+d.ID.String())
	if err != nil || ti.State != asynq.TaskStateScheduled || ti.NextProcessAt.Sub(at).Abs() > time.Second {
		t.Errorf("run task: %v %v", ti, err)
	}

	conflict(te.do(http.MethodPost, p+"send", key, nil), "broadcast_scheduled")
	conflict(te.do(http.MethodPost, p+"retry-failed", key, nil), "broadcast_scheduled")
	r = te.do(http.MethodPost, p+"pause", key, nil)
	mustStatus(t, r, http.StatusOK)
	if decode(r).Status != broadcast.StatusPaused {
		t.Fatalf("pause: %s", r.Body)
	}
	conflict(te.do(http.MethodPut, p, key, body(nil)), "broadcast_not_editable")
	r = te.do(http.MethodPost, p+"resume/", key, nil)
	mustStatus(t, r, http.StatusOK)
	if decode(r).Status != broadcast.StatusScheduled {
		t.Fatalf("resume: %s", r.Body)
	}
	r = te.do(http.MethodPost, p+"cancel", key, nil)
	mustStatus(t, r, http.StatusOK)
	if c := decode(r); c.Status != broadcast.StatusCancelled || c.Cancelled != 2 {
		t.Fatalf("cancel: %s", r.Body)
	}
	conflict(te.do(http.MethodPost, p+"resume", key, nil), "broadcast_cancelled")
	conflict(te.do(http.MethodPost, p+"pause", key, nil), "broadcast_cancelled")
	conflict(te.do(http.MethodPost, p+"retry-failed", key, nil), "broadcast_nothing_failed")

	// A draft sent at once, then run by a worker; GET shows the lifecycle fields.
	r = te.do(http.MethodPost, "/broadcast/", key, body(map[string]any{"draft": true}))
	mustStatus(t, r, http.StatusAccepted)
	d2 := decode(r)
	p2 := "/broadcast/" + d2.ID.String() + "/"
	r = te.do(http.MethodPost, p2+"send/", key, nil)
	mustStatus(t, r, http.StatusOK)
	if s := decode(r); s.Status != broadcast.StatusScheduled || s.SendAt == nil {
		t.Fatalf("send: %s", r.Body)
	}
	task, _ := broadcast.NewRunTask(d2.ID)
	if err := te.bc.HandleRun(context.Background(), task); err != nil {
		t.Fatal(err)
	}
	// The chats are unknown to Telegram: both fail (400 chat not found, which concerns one
	// recipient: no auto-pause count).
	r = te.do(http.MethodGet, p2, key, nil)
	mustStatus(t, r, http.StatusOK)
	if g := decode(r); g.Status != broadcast.StatusCompleted || g.Failed != 2 || g.ConsecutiveErrors != 0 || g.ETA != nil || g.Cycle != 1 {
		t.Fatalf("GET completed: %s", r.Body)
	}
	conflict(te.do(http.MethodPost, p2+"send", key, nil), "broadcast_completed")
	for _, chat := range []int64{1001, 1002} {
		if err := te.emu.AddUser(info.ID, tgemu.User{ID: chat, FirstName: "Ann"}); err != nil {
			t.Fatal(err)
		}
	}
	r = te.do(http.MethodPost, p2+"retry-failed", key, nil)
	mustStatus(t, r, http.StatusOK)
	if g := decode(r); g.Status != broadcast.StatusRunning || g.Cycle != 2 || g.Pending != 2 || g.Failed != 0 || g.CompletedAt != nil {
		t.Fatalf("retry-failed: %s", r.Body)
	}
	for i := 0; ; i++ { // the chats were just tried: the per-chat limit makes the run wait
		err := te.bc.HandleRun(context.Background(), task)
		var ra *telegram.RetryAfterError
		if err == nil {
			break
		} else if !errors.As(err, &ra) || i > 5 {
			t.Fatal(err)
		}
		time.Sleep(ra.RetryAfter)
	}
	r = te.do(http.MethodGet, p2, key, nil)
	mustStatus(t, r, http.StatusOK)
	if g := decode(r); g.Status != broadcast.StatusCompleted || g.Sent != 2 || g.Rate <= 0 || g.Cycle != 2 {
		t.Fatalf("GET after retry: %s", r.Body)
	}
	conflict(te.do(http.MethodPost, p2+"retry-failed", key, nil), "broadcast_nothing_failed")
	// Each recipient keeps its first cycle's failure in its history.
	r = te.do(http.MethodGet, p2+"recipients/", key, nil)
	mustStatus(t, r, http.StatusOK)
	var rp struct {
		Items []struct {
			Status  string `json:"status"`
			Cycle   int    `json:"cycle"`
			History []struct {
				Cycle  int    `json:"cycle"`
				Status string `json:"status"`
				Error  string `json:"error"`
			} `json:"history"`
		} `json:"items"`
	}
	r.decode(t, &rp)
	for _, it := range rp.Items {
		if it.Status != "sent" || it.Cycle != 2 || len(it.History) != 1 || it.History[0].Cycle != 1 || it.History[0].Status != "failed" || it.History[0].Error != "Bad Request: chat not found" {
			t.Errorf("recipient after retry: %+v", it)
		}
	}

	r = te.do(http.MethodGet, "/broadcast/?status=draft,completed", key, nil)
	mustStatus(t, r, http.StatusOK)
	var page listPage[broadcastResponse]
	r.decode(t, &page)
	if len(page.Items) != 1 || page.Items[0].ID != d2.ID {
		t.Errorf("list ?status=draft,completed: %s", r.Body)
	}
	mustStatus(t, te.do(http.MethodPost, "/broadcast/"+c1.ID.String()+"/pause", key, nil), http.StatusNotFound)
}
