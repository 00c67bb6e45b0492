package api

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// deliverMessage posts a private message update from user (chat = user id) with the extra
// message fields (photo, caption, text ...) to b's webhook and processes it.
func (te *testEnv) deliverMessage(b tplBot, updateID, userID int64, firstName string, fields map[string]any) {
	te.t.Helper()
	if err := te.emu.AddUser(b.info.ID, tgemu.User{ID: userID, FirstName: firstName}); err != nil {
		te.t.Fatal(err)
	}
	msg := map[string]any{"message_id": updateID, "date": time.Now().Unix(),
		"chat": map[string]any{"id": userID, "type": "private", "first_name": firstName},
		"from": map[string]any{"id": userID, "is_bot": false, "first_name": firstName}}
	for k, v := range fields {
		msg[k] = v
	}
	req := request(te.t, http.MethodPost, "/telegram/v1/webhooks/"+b.BotAppID.String()+"/", "", map[string]any{"update_id": updateID, "message": msg})
	req.Header.Set(telegram.SecretHeader, b.secret)
	mustStatus(te.t, te.serve(req), http.StatusOK)
	te.processAndSend(b.BotAppID)
}

// contactOfUpdate returns the contact id of the inbound message of update updateID of bot.
func (te *testEnv) contactOfUpdate(bot uuid.UUID, updateID int64) uuid.UUID {
	te.t.Helper()
	var id uuid.UUID
	if err := te.db.NewRaw("SELECT contact_id FROM messages WHERE bot_id = ? AND update_id = ?", bot, updateID).Scan(context.Background(), &id); err != nil {
		te.t.Fatal(err)
	}
	return id
}

type threadPage struct {
	Items      []threadMessageResponse `json:"items"`
	NextCursor string                  `json:"next_cursor"`
	Page       int                     `json:"page"`
	Size       int                     `json:"size"`
}

type conversationPage struct {
	Items      []conversationResponse `json:"items"`
	NextCursor string                 `json:"next_cursor"`
}

// TestInbox covers the team inbox against tgemu: an inbound photo stored as media metadata,
// listed and its file proxied byte for byte without the token; an agent reply through the
// send path with sent_by; automatic replies as sent_by bot; page/size and cursor paging;
// conversations ordering, unread counts, read, assign, close and reopen.
func TestInbox(t *testing.T) {
	te := newEnv(t)
	_, admin := te.newTenant("acme")
	agent := te.newKey(admin, "agent", "read", "write").Key
	b := te.newTplBot(admin, "Support")
	ctx := context.Background()

	photo := bytes.Repeat([]byte{0xff, 0xd8, 0x00, 0x42, 'J'}, 5000) // 25 000 bytes
	te.emu.AddFile("AgACphoto1", photo)
	sizes := []map[string]any{
		{"file_id": "AgACthumb", "file_unique_id": "th", "width": 90, "height": 67, "file_size": 900},
		{"file_id": "AgACphoto1", "file_unique_id": "ph1", "width": 1280, "height": 960, "file_size": len(photo)},
	}
	te.deliverMessage(b, 101, 77, "Ann", map[string]any{"photo": sizes, "caption": "my receipt"})
	ann := te.contactOfUpdate(b.BotAppID, 101)
	te.deliverMessage(b, 102, 78, "Bob", map[string]any{"text": "/start", "entities": []map[string]any{{"type": "bot_command", "offset": 0, "length": 6}}})
	bob := te.contactOfUpdate(b.BotAppID, 102)
	te.deliverMessage(b, 103, 77, "Ann", map[string]any{"location": map[string]any{"latitude": 52.52, "longitude": 13.405}})

	thread := func(t *testing.T, contact uuid.UUID, query string) threadPage {
		t.Helper()
		r := te.do(http.MethodGet, "/contacts/"+contact.String()+"/messages/"+query, agent, nil)
		mustStatus(t, r, http.StatusOK)
		var p threadPage
		r.decode(t, &p)
		return p
	}

	var photoMsg threadMessageResponse
	t.Run("media stored and listed", func(t *testing.T) {
		p := thread(t, ann, "")
		if len(p.Items) != 2 {
			t.Fatalf("%d items: %+v", len(p.Items), p.Items)
		}
		loc, ph := p.Items[0], p.Items[1]
		if loc.ContentType != "location" || loc.Media == nil || loc.Media.Latitude != 52.52 || loc.Media.Longitude != 13.405 || loc.SentBy != nil {
			t.Errorf("location: %+v %+v", loc, loc.Media)
		}
		if ph.ContentType != "photo" || ph.Direction != "inbound" || ph.Text != "my receipt" || ph.Media == nil ||
			ph.Media.FileID != "AgACphoto1" || ph.Media.Width != 1280 || ph.Media.FileSize != int64(len(photo)) {
			t.Errorf("photo: %+v %+v", ph, ph.Media)
		}
		photoMsg = ph
	})
	t.Run("file proxied", func(t *testing.T) {
		r := te.do(http.MethodGet, "/contacts/"+ann.String()+"/messages/"+photoMsg.ID.String()+"/file/", agent, nil)
		mustStatus(t, r, http.StatusOK)
		if !bytes.Equal(r.Body, photo) {
			t.Fatalf("body differs: %d bytes, want %d", len(r.Body), len(photo))
		}
		if ct := r.Header.Get("Content-Type"); ct != "image/jpeg" {
			t.Errorf("Content-Type %q", ct)
		}
		if cl := r.Header.Get("Content-Length"); cl != strconv.Itoa(len(photo)) {
			t.Errorf("Content-Length %q", cl)
		}
		secret := b.info.Token[strings.Index(b.info.Token, ":")+1:]
		for k, vs := range r.Header {
			if strings.Contains(strings.Join(vs, " "), secret) {
				t.Errorf("header %s holds the bot token", k)
			}
		}
		if bytes.Contains(r.Body, []byte(secret)) {
			t.Error("body holds the bot token")
		}
		te.assertNotLogged(b.info.Token)
	})
	t.Run("file 404s", func(t *testing.T) {
		p := thread(t, ann, "")
		r := te.do(http.MethodGet, "/contacts/"+ann.String()+"/messages/"+p.Items[0].ID.String()+"/file/", agent, nil)
		mustStatus(t, r, http.StatusNotFound)
		if code := r.errorCode(t); code != "file_not_found" {
			t.Errorf("location: %s", code)
		}
		r = te.do(http.MethodGet, "/contacts/"+bob.String()+"/messages/"+photoMsg.ID.String()+"/file/", agent, nil)
		mustStatus(t, r, http.StatusNotFound)
		if code := r.errorCode(t); code != "message_not_found" {
			t.Errorf("other contact's message: %s", code)
		}
		r = te.do(http.MethodGet, "/contacts/"+ann.String()+"/messages/"+uuid.NewString()+"/file/", agent, nil)
		mustStatus(t, r, http.StatusNotFound)
		if code := r.errorCode(t); code != "message_not_found" {
			t.Errorf("random message: %s", code)
		}
	})
	t.Run("automatic reply is sent_by bot", func(t *testing.T) {
		p := thread(t, bob, "")
		if len(p.Items) != 2 || p.Items[0].Kind != "reply" || p.Items[0].SentBy == nil || p.Items[0].SentBy.Type != "bot" || p.Items[1].SentBy != nil {
			t.Fatalf("%+v", p.Items)
		}
	})

	t.Run("broadcast sends in the thread", func(t *testing.T) {
		r := te.do(http.MethodPost, "/broadcast/", admin, map[string]any{"name": "News", "platform": "TELEGRAM",
			"message_text": "Big news", "recipients": []any{bob}, "bot_app_id": b.BotAppID})
		mustStatus(t, r, http.StatusAccepted)
		var bc broadcastResponse
		r.decode(t, &bc)
		task, _ := broadcast.NewRunTask(bc.ID)
		for i := 0; ; i++ { // the chat's 1/s limit (bob just got the /start reply) makes the run wait
			err := te.bc.HandleRun(ctx, task)
			if err == nil {
				break
			}
			var wait *telegram.RetryAfterError
			if !errors.As(err, &wait) || i >= 5 {
				t.Fatal(err)
			}
			time.Sleep(wait.RetryAfter)
		}
		p := thread(t, bob, "")
		if len(p.Items) != 3 || p.Items[0].Kind != "broadcast" || p.Items[0].Text != "Big news" || p.Items[0].Status != "sent" ||
			p.Items[0].SentBy == nil || p.Items[0].SentBy.Type != "broadcast" || p.Items[0].SentBy.ID == nil || *p.Items[0].SentBy.ID != bc.ID {
			t.Fatalf("%+v", p.Items)
		}
		if got := te.lastSent(b, 78); got.Text != "Big news" {
			t.Fatalf("tgemu got %q", got.Text)
		}
	})
	conversations := func(t *testing.T, query string) []conversationResponse {
		t.Helper()
		r := te.do(http.MethodGet, "/conversations/"+query, agent, nil)
		mustStatus(t, r, http.StatusOK)
		var p conversationPage
		r.decode(t, &p)
		return p.Items
	}
	order := func(cs []conversationResponse) []uuid.UUID {
		var ids []uuid.UUID
		for _, c := range cs {
			ids = append(ids, c.ContactID)
		}
		return ids
	}
	t.Run("conversations by last activity with unread", func(t *testing.T) {
		cs := conversations(t, "")
		if len(cs) != 2 || cs[0].ContactID != ann || cs[1].ContactID != bob {
			t.Fatalf("order %v, want ann, bob", order(cs))
		}
		if cs[0].UnreadCount != 2 || cs[0].Status != "open" || cs[0].LastMessage == nil || cs[0].LastMessage.ContentType != "location" {
			t.Errorf("ann: %+v", cs[0])
		}
		if cs[1].UnreadCount != 1 || cs[1].LastMessage == nil || cs[1].LastMessage.Kind != "reply" || cs[1].FirstName != "Bob" {
			t.Errorf("bob: %+v", cs[1])
		}
	})
	t.Run("agent reply", func(t *testing.T) {
		r := te.do(http.MethodPost, "/contacts/"+bob.String()+"/messages/", agent, map[string]any{"bot_app_id": b.BotAppID, "text": "Hi Bob, how can we help?"})
		mustStatus(t, r, http.StatusCreated)
		var m threadMessageResponse
		r.decode(t, &m)
		if m.Status != "queued" || m.Direction != "outbound" || m.SentBy == nil || m.SentBy.Type != "api_key" || m.SentBy.Name != "agent" {
			t.Fatalf("%+v", m)
		}
		task, err := telegram.NewSendTask(m.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := te.tg.HandleSend(ctx, task); err != nil {
			t.Fatal(err)
		}
		if got := te.lastSent(b, 78); got.Text != "Hi Bob, how can we help?" {
			t.Fatalf("tgemu got %q", got.Text)
		}
		p := thread(t, bob, "?limit=1")
		if len(p.Items) != 1 || p.Items[0].ID != m.ID || p.Items[0].Status != "sent" || p.Items[0].TelegramMessageID == nil ||
			p.Items[0].SentBy == nil || p.Items[0].SentBy.Name != "agent" || p.NextCursor == "" {
			t.Fatalf("%+v", p)
		}
		// The reply moves bob up and marks his conversation read.
		cs := conversations(t, "")
		if cs[0].ContactID != bob || cs[0].UnreadCount != 0 || cs[0].LastReadAt == nil {
			t.Fatalf("%+v", cs)
		}
		r = te.do(http.MethodPost, "/contacts/"+uuid.NewString()+"/messages/", agent, map[string]any{"text": "x"})
		mustStatus(t, r, http.StatusNotFound)
		// Idempotency-Key: a retried reply answers the first result, nothing new is queued.
		idem := func() response {
			req := request(t, http.MethodPost, "/contacts/"+bob.String()+"/messages/", agent, map[string]any{"text": "once"})
			req.Header.Set("Idempotency-Key", "reply-1")
			return te.serve(req)
		}
		r1, r2 := idem(), idem()
		mustStatus(t, r1, http.StatusCreated)
		mustStatus(t, r2, http.StatusCreated)
		var m1, m2 threadMessageResponse
		r1.decode(t, &m1)
		r2.decode(t, &m2)
		var n int
		if err := te.db.NewRaw("SELECT count(*) FROM messages WHERE text = 'once'").Scan(ctx, &n); err != nil || n != 1 || m1.ID != m2.ID {
			t.Fatalf("idempotent reply: %d rows, ids %s %s, %v", n, m1.ID, m2.ID, err)
		}
	})
	t.Run("POST /messages/ records sent_by", func(t *testing.T) {
		r := te.do(http.MethodPost, "/messages/", agent, map[string]any{"contact_id": ann, "text": "hello Ann"})
		mustStatus(t, r, http.StatusAccepted)
		p := thread(t, ann, "?limit=1")
		if p.Items[0].Text != "hello Ann" || p.Items[0].SentBy == nil || p.Items[0].SentBy.Type != "api_key" || p.Items[0].SentBy.Name != "agent" {
			t.Fatalf("%+v", p.Items[0])
		}
	})
	t.Run("page/size and cursor", func(t *testing.T) {
		all := thread(t, ann, "?limit=200").Items // hello, location, photo
		if len(all) != 3 {
			t.Fatalf("%d", len(all))
		}
		p1, p2 := thread(t, ann, "?page=1&size=2"), thread(t, ann, "?page=2&size=2")
		if len(p1.Items) != 2 || len(p2.Items) != 1 || p1.Page != 1 || p1.Size != 2 || p2.Page != 2 ||
			p1.Items[0].ID != all[0].ID || p1.Items[1].ID != all[1].ID || p2.Items[0].ID != all[2].ID {
			t.Fatalf("p1 %+v p2 %+v", p1, p2)
		}
		if p3 := thread(t, ann, "?page=3&size=2"); len(p3.Items) != 0 {
			t.Fatalf("p3 %+v", p3)
		}
		c1 := thread(t, ann, "?limit=2")
		c2 := thread(t, ann, "?limit=2&cursor="+c1.NextCursor)
		if len(c2.Items) != 1 || c2.Items[0].ID != all[2].ID || c2.NextCursor != "" {
			t.Fatalf("cursor page 2: %+v", c2)
		}
		for _, q := range []string{"?page=0", "?size=500&page=1", "?page=1&cursor=" + c1.NextCursor} {
			r := te.do(http.MethodGet, "/contacts/"+ann.String()+"/messages/"+q, agent, nil)
			mustStatus(t, r, http.StatusUnprocessableEntity)
		}
	})
	t.Run("read, assign, close, reopen", func(t *testing.T) {
		post := func(t *testing.T, path string, body any, want int) conversationResponse {
			t.Helper()
			r := te.do(http.MethodPost, "/conversations/"+ann.String()+path, agent, body)
			mustStatus(t, r, want)
			var c conversationResponse
			if want == http.StatusOK {
				r.decode(t, &c)
			}
			return c
		}
		if c := post(t, "/read/", nil, http.StatusOK); c.UnreadCount != 0 || c.LastReadAt == nil {
			t.Fatalf("read: %+v", c)
		}
		if c := post(t, "/assign/", map[string]any{"api_key_name": "agent"}, http.StatusOK); c.AssignedTo == nil || *c.AssignedTo != "agent" {
			t.Fatalf("assign: %+v", c)
		}
		post(t, "/assign/", map[string]any{"api_key_name": "nobody"}, http.StatusUnprocessableEntity)
		if cs := conversations(t, "?assigned_to=agent"); len(cs) != 1 || cs[0].ContactID != ann {
			t.Fatalf("assigned_to: %v", order(cs))
		}
		if c := post(t, "/close/", nil, http.StatusOK); c.Status != "closed" || c.ClosedAt == nil {
			t.Fatalf("close: %+v", c)
		}
		if cs := conversations(t, "?status=closed"); len(cs) != 1 || cs[0].ContactID != ann {
			t.Fatalf("closed: %v", order(cs))
		}
		if cs := conversations(t, "?status=open"); len(cs) != 1 || cs[0].ContactID != bob {
			t.Fatalf("open: %v", order(cs))
		}
		// A new message from Ann reopens her conversation, on top, with one unread.
		te.deliverMessage(b, 104, 77, "Ann", map[string]any{"text": "any news?"})
		cs := conversations(t, "")
		if cs[0].ContactID != ann || cs[0].Status != "open" || cs[0].UnreadCount != 1 || cs[0].AssignedTo == nil {
			t.Fatalf("reopen: %+v", cs[0])
		}
		if c := post(t, "/assign/", map[string]any{"api_key_name": nil}, http.StatusOK); c.AssignedTo != nil {
			t.Fatalf("unassign: %+v", c)
		}
		if cs := conversations(t, "?limit=1"); len(cs) != 1 {
			t.Fatalf("limit: %d", len(cs))
		}
		r := te.do(http.MethodPost, "/conversations/"+uuid.NewString()+"/read/", agent, nil)
		mustStatus(t, r, http.StatusNotFound)
		if code := r.errorCode(t); code != "conversation_not_found" {
			t.Fatal(code)
		}
	})
}
