package broadcast

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/hibiken/asynq"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

func ptr[T any](v T) *T { return &v }

// newBroadcast is the NewBroadcast of b to cs with text and sc.
func newBroadcast(b testBot, cs []contacts.Contact, text string, sc Schedule) NewBroadcast {
	botID := b.ID
	return NewBroadcast{Name: "promo", Platform: "TELEGRAM", MessageText: text, Recipients: ids(cs), BotID: &botID, Schedule: sc}
}

// createWith creates a broadcast and fails the test on error.
func (e *env) createWith(b testBot, nb NewBroadcast) Broadcast {
	e.t.Helper()
	bc, _, err := e.svc.Create(e.ctx, b.TenantID, nb)
	if err != nil {
		e.t.Fatalf("Create: %v", err)
	}
	return bc
}

// runTask returns the state of broadcast id's run task ("" when there is none).
func (e *env) runTask(id uuid.UUID) (asynq.TaskState, time.Time) {
	e.t.Helper()
	info, err := asynq.NewInspectorFromRedisClient(e.rdb).GetTaskInfo(QueueBroadcast, runTaskID(id))
	if err != nil {
		if errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound) {
			return 0, time.Time{}
		}
		e.t.Fatal(err)
	}
	return info.State, info.NextProcessAt
}

// wantConflict fails unless err is a 409 with code.
func wantConflict(t *testing.T, err error, code string) {
	t.Helper()
	if c, k := code1(err), apperr.KindOf(err); c != code || k != apperr.KindConflict {
		t.Fatalf("error %v (code %q), want 409 %s", err, c, code)
	}
}

func TestService_DraftUpdateSend(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	first, second := e.contactsOf(b, 2), e.contactsOf(b, 3)

	bc := e.createWith(b, newBroadcast(b, first, "draft text", Schedule{Draft: ptr(true), MaxConsecutiveErrors: ptr(7)}))
	if bc.Status != StatusDraft || bc.Total != 2 || bc.MaxConsecutiveErrors != 7 || bc.Cycle != 1 {
		t.Fatalf("draft: %s total %d max %d cycle %d", bc.Status, bc.Total, bc.MaxConsecutiveErrors, bc.Cycle)
	}
	if st, _ := e.runTask(bc.ID); st != 0 {
		t.Errorf("a draft has a run task (%v)", st)
	}
	if err := e.run(bc.ID); err != nil { // a stray run of a draft sends nothing
		t.Fatal(err)
	}
	if n := len(e.emu.Sent(b.emuID)); n != 0 {
		t.Fatalf("a draft sent %d messages", n)
	}

	// PUT: new text and audience, still a draft; the same validation as Create.
	up, counts, err := e.svc.Update(e.ctx, tn, bc.ID, newBroadcast(b, second, "final <b>text</b>", Schedule{}))
	if err != nil {
		t.Fatal(err)
	}
	if up.ID != bc.ID || up.Status != StatusDraft || up.MessageText != "final <b>text</b>" || counts.Total != 3 || counts.Pending != 3 || !up.CreatedAt.Equal(bc.CreatedAt) {
		t.Fatalf("updated: %+v counts %+v", up, counts)
	}
	if _, _, err := e.svc.Update(e.ctx, tn, bc.ID, newBroadcast(b, second, "", Schedule{})); validateField(err) != "message_text" {
		t.Errorf("Update with empty text = %v, want 422 message_text", err)
	}
	if _, _, err := e.svc.Update(e.ctx, tn, bc.ID, newBroadcast(b, second, "x", Schedule{MaxConsecutiveErrors: ptr(0)})); validateField(err) != "max_consecutive_errors" {
		t.Errorf("Update with max_consecutive_errors 0 = %v, want 422", err)
	}
	if _, _, err := e.svc.Update(e.ctx, e.tenant("other"), bc.ID, newBroadcast(b, second, "x", Schedule{})); !errors.Is(err, ErrNotFound) && apperr.KindOf(err) != apperr.KindNotFound {
		t.Errorf("Update by another tenant = %v, want 404", err)
	}

	sent, _, err := e.svc.Send(e.ctx, tn, bc.ID)
	if err != nil || sent.Status != StatusScheduled || sent.SendAt.IsZero() {
		t.Fatalf("Send = %s send_at %v, %v", sent.Status, sent.SendAt, err)
	}
	if st, _ := e.runTask(bc.ID); st != asynq.TaskStatePending {
		t.Errorf("run task after Send: %v, want pending", st)
	}
	e.runToEnd(bc.ID, true, 10)
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts.Sent != 3 {
		t.Fatalf("after send: %s %+v", got.Status, counts)
	}
	for _, c := range first {
		if n := e.sendCalls(b, c.TelegramChatID); n != 0 {
			t.Errorf("the old audience got %d messages", n)
		}
	}
	for _, m := range e.emu.Sent(b.emuID) {
		if m.Text != "final <b>text</b>" {
			t.Errorf("sent %q, want the edited text", m.Text)
		}
	}
	_, _, err = e.svc.Update(e.ctx, tn, bc.ID, newBroadcast(b, second, "late", Schedule{}))
	wantConflict(t, err, "broadcast_not_editable")
	_, _, err = e.svc.Send(e.ctx, tn, bc.ID)
	wantConflict(t, err, "broadcast_completed")
}

// validateField returns the details.field of a 422 invalid_field ("" otherwise).
func validateField(err error) string {
	var ae *apperr.Error
	if errors.As(err, &ae) && ae.Kind == apperr.KindInvalid {
		if d, ok := ae.Details.(map[string]any); ok {
			f, _ := d["field"].(string)
			return f
		}
	}
	return ""
}

func TestService_SendAt(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 2)

	at := time.Now().Add(1500 * time.Millisecond)
	bc := e.createWith(b, newBroadcast(b, cs, "later", Schedule{SendAt: &at}))
	if bc.Status != StatusScheduled || !bc.SendAt.Equal(at.UTC().Truncate(time.Microsecond)) {
		t.Fatalf("created %s send_at %v, want scheduled %v", bc.Status, bc.SendAt, at)
	}
	if st, next := e.runTask(bc.ID); st != asynq.TaskStateScheduled || next.Before(at.Add(-time.Second)) {
		t.Errorf("run task %v at %v, want scheduled at send_at", st, next)
	}
	// A run that starts early sends nothing and reschedules itself until send_at.
	err := e.run(bc.ID)
	var ra *telegram.RetryAfterError
	if !errors.As(err, &ra) || ra.RetryAfter <= 0 || ra.RetryAfter > 1500*time.Millisecond {
		t.Fatalf("early run = %v, want a RetryAfterError until send_at", err)
	}
	if got, _ := e.get(b, bc.ID); got.Status != StatusScheduled || len(e.emu.Sent(b.emuID)) != 0 {
		t.Fatalf("early run: %s, %d sent", got.Status, len(e.emu.Sent(b.emuID)))
	}
	// The sweep does not start it either.
	if ids, err := runnable(e.ctx, e.db, uuid.Nil, 10); err != nil || len(ids) != 0 {
		t.Errorf("runnable before send_at = %v %v", ids, err)
	}
	time.Sleep(ra.RetryAfter)
	e.runToEnd(bc.ID, true, 10)
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts.Sent != 2 || got.StartedAt.Before(at.Add(-50*time.Millisecond)) {
		t.Errorf("after send_at: %s %+v started %v (send_at %v)", got.Status, counts, got.StartedAt, at)
	}

	// send_at in the past means now.
	past := time.Now().Add(-time.Hour)
	bc2 := e.createWith(b, newBroadcast(b, cs, "now", Schedule{SendAt: &past}))
	if d := time.Since(bc2.SendAt); bc2.Status != StatusScheduled || d < 0 || d > 5*time.Second {
		t.Errorf("past send_at stored as %v (%s)", bc2.SendAt, bc2.Status)
	}
	if err := e.run(bc2.ID); err != nil && strings.Contains(err.Error(), "scheduled for") {
		t.Errorf("run of a past send_at = %v, want it started", err)
	}
	if got, _ := e.get(b, bc2.ID); got.StartedAt.IsZero() {
		t.Errorf("a past send_at did not start")
	}

	// Update moves a scheduled broadcast's run to the new send_at.
	far := time.Now().Add(time.Hour)
	bc3 := e.createWith(b, newBroadcast(b, cs, "far", Schedule{SendAt: &far}))
	soon := time.Now().Add(2 * time.Second)
	if _, _, err := e.svc.Update(e.ctx, tn, bc3.ID, newBroadcast(b, cs, "sooner", Schedule{SendAt: &soon})); err != nil {
		t.Fatal(err)
	}
	if st, next := e.runTask(bc3.ID); st != asynq.TaskStateScheduled || next.After(soon.Add(time.Second)) {
		t.Errorf("run task after Update: %v at %v, want scheduled at %v", st, next, soon)
	}
}

// startRuns runs broadcast id with each of svcs in parallel until each returns (nil or a
// RetryAfterError) and returns their errors.
func startRuns(e *env, id uuid.UUID, svcs ...*Service) <-chan []error {
	out := make(chan []error, 1)
	go func() {
		errs := make([]error, len(svcs))
		var wg sync.WaitGroup
		for i, s := range svcs {
			wg.Go(func() {
				task, _ := NewRunTask(id)
				errs[i] = s.HandleRun(e.ctx, task)
			})
		}
		wg.Wait()
		out <- errs
	}()
	return out
}

func TestService_PauseResume_TwoWorkers(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 40)
	for _, c := range cs {
		e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultLatency, ChatID: c.TelegramChatID, Latency: 30 * time.Millisecond})
	}
	bc := e.create(b, cs)
	// A second worker process: its own Service on the same PostgreSQL and Redis.
	other := New(Deps{DB: e.db, Queue: e.queue, Telegram: e.tg, Contacts: e.contacts, Log: testLog, MaxRetries: 3})
	for _, s := range []*Service{e.svc, other} {
		s.chunkSize, s.senders = 3, 2
	}

	done := startRuns(e, bc.ID, e.svc, other)
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	if _, err := e.emu.WaitSent(ctx, b.emuID, 6); err != nil {
		t.Fatal(err)
	}
	paused, _, err := e.svc.TenantPause(e.ctx, tn, bc.ID)
	if err != nil || paused.Status != StatusPaused || paused.PausedAt.IsZero() {
		t.Fatalf("TenantPause = %s %v", paused.Status, err)
	}
	for i, err := range <-done {
		if err != nil {
			t.Fatalf("run %d after pause = %v, want nil (stopped)", i, err)
		}
	}
	got, counts := e.get(b, bc.ID)
	sentAtPause := len(e.emu.Sent(b.emuID))
	if got.Status != StatusPaused || counts.Sent != sentAtPause || counts.Sent+counts.Pending != 40 || counts.Sent >= 40 {
		t.Fatalf("paused: %s %+v, emulator sent %d", got.Status, counts, sentAtPause)
	}
	for _, r := range e.recipients(bc.ID) {
		if r.Status == RecipientSending {
			t.Errorf("recipient %d still claimed after the runs stopped", r.ID)
		}
	}
	// Runs of a paused broadcast (a retry, the sweep) send nothing.
	for i, err := range <-startRuns(e, bc.ID, e.svc, other) {
		if err != nil {
			t.Fatalf("run %d of a paused broadcast = %v", i, err)
		}
	}
	if ids, _ := runnable(e.ctx, e.db, uuid.Nil, 10); len(ids) != 0 {
		t.Errorf("a paused broadcast is runnable")
	}
	if n := len(e.emu.Sent(b.emuID)); n != sentAtPause {
		t.Fatalf("sent %d while paused (%d at pause)", n-sentAtPause, sentAtPause)
	}

	resumed, _, err := e.svc.Resume(e.ctx, tn, bc.ID)
	if err != nil || resumed.Status != StatusRunning {
		t.Fatalf("Resume = %s %v", resumed.Status, err)
	}
	if st, _ := e.runTask(bc.ID); st != asynq.TaskStatePending {
		t.Errorf("run task after Resume: %v", st)
	}
	for round := 0; ; round++ {
		errs := <-startRuns(e, bc.ID, e.svc, other)
		if got, _ := e.get(b, bc.ID); got.Status == StatusCompleted {
			break
		}
		if round > 20 {
			t.Fatalf("not completed after resume: %v", errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
	got, counts = e.get(b, bc.ID)
	if counts.Sent != 40 || got.Status != StatusCompleted {
		t.Errorf("after resume: %s %+v", got.Status, counts)
	}
	for _, c := range cs {
		if n := len(e.emu.SentTo(b.emuID, c.TelegramChatID)); n != 1 {
			t.Errorf("chat %d got %d messages, want exactly 1", c.TelegramChatID, n)
		}
	}
}

func TestService_RetryFailed(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 0})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 5)
	bad := []int64{cs[1].TelegramChatID, cs[3].TelegramChatID}
	for _, chat := range bad {
		e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultServerError, ChatID: chat, Times: 1})
	}
	bc := e.create(b, cs)
	_, _, err := e.svc.RetryFailed(e.ctx, tn, bc.ID)
	wantConflict(t, err, "broadcast_scheduled")
	e.runToEnd(bc.ID, true, 10)
	got, counts := e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts != (Counts{Total: 5, Sent: 3, Failed: 2}) {
		t.Fatalf("first cycle: %s %+v", got.Status, counts)
	}

	retried, counts, err := e.svc.RetryFailed(e.ctx, tn, bc.ID)
	if err != nil || retried.Status != StatusRunning || retried.Cycle != 2 || !retried.CompletedAt.IsZero() || counts != (Counts{Total: 5, Sent: 3, Pending: 2}) {
		t.Fatalf("RetryFailed = %s cycle %d %+v %v", retried.Status, retried.Cycle, counts, err)
	}
	for _, r := range e.recipients(bc.ID) {
		var raw string
		if err := e.db.NewRaw("SELECT COALESCE(history, '[]'::jsonb)::text FROM broadcast_recipients WHERE id = ?", r.ID).Scan(e.ctx, &raw); err != nil {
			t.Fatal(err)
		}
		var hist []map[string]any
		if err := json.Unmarshal([]byte(raw), &hist); err != nil {
			t.Fatal(err)
		}
		var cycle int
		if err := e.db.NewRaw("SELECT cycle FROM broadcast_recipients WHERE id = ?", r.ID).Scan(e.ctx, &cycle); err != nil {
			t.Fatal(err)
		}
		isBad := r.ChatID == bad[0] || r.ChatID == bad[1]
		switch {
		case isBad && (r.Status != RecipientQueued || r.Attempts != 0 || cycle != 2 || len(hist) != 1 ||
			hist[0]["status"] != "failed" || hist[0]["cycle"] != float64(1) || hist[0]["attempts"] != float64(1) ||
			!strings.Contains(hist[0]["error"].(string), "Internal Server Error")):
			t.Errorf("retried recipient: %s attempts %d cycle %d history %v", r.Status, r.Attempts, cycle, hist)
		case !isBad && (r.Status != RecipientSent || cycle != 1 || len(hist) != 0):
			t.Errorf("sent recipient touched: %s cycle %d history %v", r.Status, cycle, hist)
		}
	}
	e.runToEnd(bc.ID, true, 10)
	got, counts = e.get(b, bc.ID)
	if got.Status != StatusCompleted || counts != (Counts{Total: 5, Sent: 5}) {
		t.Fatalf("second cycle: %s %+v", got.Status, counts)
	}
	for _, chat := range bad {
		if n := e.sendCalls(b, chat); n != 2 {
			t.Errorf("chat %d: %d sendMessage calls, want 2 (one per cycle)", chat, n)
		}
	}
	if n := len(e.emu.Sent(b.emuID)); n != 5 {
		t.Errorf("emulator delivered %d messages, want 5 (none twice)", n)
	}
	_, _, err = e.svc.RetryFailed(e.ctx, tn, bc.ID)
	wantConflict(t, err, "broadcast_nothing_failed")
}

func TestService_AutoPause(t *testing.T) {
	const maxErrs = 20
	e := newEnv(t, envOptions{maxRetries: 0})
	tn := e.tenant("a")

	t.Run("the same bot-wide error pauses with the reason", func(t *testing.T) {
		b := e.bot(tn, 0)
		cs := e.contactsOf(b, 120)
		// Telegram fails every call the same way (a 401, the token revoked, pauses at once
		// instead: TestService_HandleRun_TokenRevoked).
		e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultServerError})
		bc := e.createWith(b, newBroadcast(b, cs, "hello", Schedule{MaxConsecutiveErrors: ptr(maxErrs)}))
		if err := e.run(bc.ID); err != nil {
			t.Fatalf("HandleRun = %v, want nil (paused: the run stops)", err)
		}
		got, counts := e.get(b, bc.ID)
		calls := len(e.emu.Calls(b.emuID, "sendMessage"))
		want := "500 Internal Server Error after "
		if got.Status != StatusPaused || !strings.HasPrefix(got.PauseReason, want) || !strings.HasSuffix(got.PauseReason, " consecutive failures") {
			t.Fatalf("broadcast %s reason %q, want paused %q…", got.Status, got.PauseReason, want)
		}
		n, _ := strconv.Atoi(strings.Fields(strings.TrimPrefix(got.PauseReason, want))[0])
		if n < maxErrs || got.ErrorStreak < n { // failures in flight at the pause still count

			t.Errorf("reason counts %d (streak %d), want >= %d", n, got.ErrorStreak, maxErrs)
		}
		if calls >= maxErrs+ChunkSize || calls > 60 || counts.Failed != calls || counts.Pending != 120-calls {
			t.Errorf("%d sendMessage calls, counts %+v: want about %d, far fewer than %d", calls, counts, maxErrs, 120)
		}
		t.Logf("auto-paused after %d calls: %q", calls, got.PauseReason)
		// Resume clears the reason and the count; the token is still revoked: paused again.
		r, _, err := e.svc.Resume(e.ctx, tn, bc.ID)
		if err != nil || r.Status != StatusRunning || r.PauseReason != "" || r.ErrorStreak != 0 {
			t.Fatalf("Resume = %s %q %d %v", r.Status, r.PauseReason, r.ErrorStreak, err)
		}
		e.emu.ClearFaults(b.emuID) // the tenant fixed the token
		e.runToEnd(bc.ID, true, 10)
		if got, counts := e.get(b, bc.ID); got.Status != StatusCompleted || counts.Sent != 120-calls {
			t.Errorf("after fixing: %s %+v", got.Status, counts)
		}
	})

	t.Run("per-recipient errors do not count", func(t *testing.T) {
		b := e.bot(tn, 0)
		cs := e.contactsOf(b, 30)
		for _, c := range cs {
			e.emu.AddFault(b.emuID, tgemu.Fault{Kind: tgemu.FaultChatNotFound, ChatID: c.TelegramChatID})
		}
		bc := e.createWith(b, newBroadcast(b, cs, "hello", Schedule{MaxConsecutiveErrors: ptr(5)}))
		e.runToEnd(bc.ID, true, 10)
		if got, counts := e.get(b, bc.ID); got.Status != StatusCompleted || counts.Failed != 30 || got.ErrorStreak != 0 {
			t.Errorf("chat not found x30: %s %+v streak %d, want completed, not paused", got.Status, counts, got.ErrorStreak)
		}
	})

	t.Run("counted across runs and workers, reset by a success", func(t *testing.T) {
		b := e.bot(tn, 0)
		bc := e.createWith(b, newBroadcast(b, e.contactsOf(b, 2), "hello", Schedule{MaxConsecutiveErrors: ptr(6)}))
		if _, err := e.db.NewRaw("UPDATE broadcasts SET status = 'running' WHERE id = ?", bc.ID).Exec(e.ctx); err != nil {
			t.Fatal(err)
		}
		// The result batches of two runs (one per worker process) add to one counter.
		other := New(Deps{DB: e.db, Queue: e.queue, Telegram: e.tg, Log: testLog})
		fail := result{Status: RecipientFailed, Kind: "500 Internal Server Error"}
		check := func(svc *Service, rs []result, wantStreak int, wantStatus string) {
			t.Helper()
			if _, err := svc.afterWrite(e.ctx, bc.ID, rs); err != nil {
				t.Fatal(err)
			}
			if got, _ := e.get(b, bc.ID); got.ErrorStreak != wantStreak || got.Status != wantStatus {
				t.Fatalf("streak %d %q status %s, want %d %s", got.ErrorStreak, got.ErrorStreakKind, got.Status, wantStreak, wantStatus)
			}
		}
		check(e.svc, []result{fail, fail}, 2, StatusRunning)
		check(other, []result{fail, {Status: RecipientFailed}, fail}, 4, StatusRunning) // a per-recipient failure is neutral
		check(e.svc, []result{fail, {Status: RecipientSent, Sent: true}}, 0, StatusRunning)
		check(other, []result{fail, fail, fail}, 3, StatusRunning)
		check(e.svc, []result{{Status: RecipientFailed, Kind: "401 Unauthorized"}}, 1, StatusRunning) // another kind restarts
		check(other, []result{fail, fail, fail, fail, fail, fail}, 6, StatusPaused)
		if got, _ := e.get(b, bc.ID); got.PauseReason != "500 Internal Server Error after 6 consecutive failures" || got.RateSent != 1 {
			t.Errorf("reason %q rate_sent %d", got.PauseReason, got.RateSent)
		}
	})
}

func TestService_Transitions(t *testing.T) {
	e := newEnv(t, envOptions{maxRetries: 3})
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 2)
	draft := func() Broadcast { return e.createWith(b, newBroadcast(b, cs, "x", Schedule{Draft: ptr(true)})) }

	d := draft()
	_, _, err := e.svc.TenantPause(e.ctx, tn, d.ID)
	wantConflict(t, err, "broadcast_draft")
	_, _, err = e.svc.Resume(e.ctx, tn, d.ID)
	wantConflict(t, err, "broadcast_draft")
	_, _, err = e.svc.RetryFailed(e.ctx, tn, d.ID)
	wantConflict(t, err, "broadcast_draft")
	if c, counts, err := e.svc.Cancel(e.ctx, tn, d.ID); err != nil || c.Status != StatusCancelled || counts.Cancelled != 2 {
		t.Fatalf("Cancel draft = %s %+v %v", c.Status, counts, err)
	}
	_, _, err = e.svc.Send(e.ctx, tn, d.ID)
	wantConflict(t, err, "broadcast_cancelled")
	_, _, err = e.svc.Resume(e.ctx, tn, d.ID)
	wantConflict(t, err, "broadcast_cancelled")

	// scheduled → paused → cancelled: nothing is ever sent.
	s := e.create(b, cs)
	if p, _, err := e.svc.TenantPause(e.ctx, tn, s.ID); err != nil || p.Status != StatusPaused {
		t.Fatalf("pause scheduled = %s %v", p.Status, err)
	}
	if p, _, err := e.svc.TenantPause(e.ctx, tn, s.ID); err != nil || p.Status != StatusPaused {
		t.Fatalf("pause paused = %s %v, want unchanged", p.Status, err)
	}
	_, _, err = e.svc.Update(e.ctx, tn, s.ID, newBroadcast(b, cs, "y", Schedule{}))
	wantConflict(t, err, "broadcast_not_editable")
	if err := e.run(s.ID); err != nil {
		t.Fatal(err)
	}
	if c, counts, err := e.svc.Cancel(e.ctx, tn, s.ID); err != nil || c.Status != StatusCancelled || counts.Cancelled != 2 {
		t.Fatalf("Cancel paused = %s %+v %v", c.Status, counts, err)
	}
	if n := len(e.emu.Sent(b.emuID)); n != 0 {
		t.Errorf("sent %d", n)
	}

	// A scheduled broadcast paused before it started resumes as scheduled.
	s2 := e.create(b, cs)
	if _, _, err := e.svc.TenantPause(e.ctx, tn, s2.ID); err != nil {
		t.Fatal(err)
	}
	if r, _, err := e.svc.Resume(e.ctx, tn, s2.ID); err != nil || r.Status != StatusScheduled {
		t.Fatalf("resume never-started = %s %v", r.Status, err)
	}
	e.runToEnd(s2.ID, true, 10)
	for _, f := range []func(context.Context, uuid.UUID, uuid.UUID) (Broadcast, Counts, error){e.svc.TenantPause, e.svc.Resume, e.svc.Send} {
		_, _, err := f(e.ctx, tn, s2.ID)
		wantConflict(t, err, "broadcast_completed")
	}
	// The exported Pause: a completed broadcast is a conflict, a running one pauses with the reason.
	wantConflict(t, e.svc.Pause(e.ctx, s2.ID, "bot disabled"), "broadcast_completed")
	s3 := e.create(b, cs)
	if n, err := e.svc.PauseBotBroadcasts(e.ctx, b.ID, "bot disabled"); err != nil || n != 1 {
		t.Fatalf("PauseBotBroadcasts = %d %v", n, err)
	}
	if got, _ := e.get(b, s3.ID); got.Status != StatusPaused || got.PauseReason != "bot disabled" {
		t.Errorf("paused by bot: %s %q", got.Status, got.PauseReason)
	}
	if err := e.svc.Pause(e.ctx, uuid.New(), "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Pause of an unknown id = %v", err)
	}
}

func TestStreakOf(t *testing.T) {
	f := func(kind string) result { return result{Status: RecipientFailed, Kind: kind} }
	ok := result{Status: RecipientSent, Sent: true}
	neutral := result{Status: RecipientFailed}
	for _, c := range []struct {
		name  string
		rs    []result
		reset bool
		kind  string
		n     int
	}{
		{"none", nil, false, "", 0},
		{"continues", []result{f("a"), neutral, f("a")}, false, "a", 2},
		{"success resets", []result{f("a"), ok}, true, "", 0},
		{"success then failures", []result{ok, f("a"), f("a")}, true, "a", 2},
		{"kind change", []result{f("a"), f("b")}, true, "b", 1},
	} {
		reset, kind, n := streakOf(c.rs)
		if reset != c.reset || kind != c.kind || n != c.n {
			t.Errorf("%s: %v %q %d, want %v %q %d", c.name, reset, kind, n, c.reset, c.kind, c.n)
		}
	}
	for out, want := range map[telegram.Outcome]string{
		{Status: telegram.OutcomeFailed, ErrorCode: 401, Err: "Unauthorized"}:                      "401 Unauthorized",
		{Status: telegram.OutcomeFailed, ErrorCode: 400, Err: "Bad Request: chat not found"}:       "",
		{Status: telegram.OutcomeBlocked, ErrorCode: 403, Err: "Forbidden: bot was blocked"}:       "",
		{Status: telegram.OutcomeRetry, Err: "Telegram request timed out"}:                         "Telegram request timed out",
		{Status: telegram.OutcomeFailed, ErrorCode: 400, Err: "Bad Request: can't parse entities"}: "400 Bad Request: can't parse entities",
	} {
		if got := failureKind(out); got != want {
			t.Errorf("failureKind(%+v) = %q, want %q", out, got, want)
		}
	}
}
