package api

import (
	"bufio"
	"context"
	"encoding/csv"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// recipientsPages pages through path (a recipients list with its query) with key, limit n a
// page, and returns every item.
func (te *testEnv) recipientsPages(t *testing.T, key, path string, n int) []recipientResponse {
	t.Helper()
	var all []recipientResponse
	cursor := ""
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("more than 100 pages")
		}
		u, _ := url.Parse(path)
		q := u.Query()
		q.Set("limit", strconv.Itoa(n))
		if cursor != "" {
			q.Set("cursor", cursor)
		}
		u.RawQuery = q.Encode()
		r := te.do(http.MethodGet, u.String(), key, nil)
		mustStatus(t, r, http.StatusOK)
		var pg listPage[recipientResponse]
		r.decode(t, &pg)
		if len(pg.Items) > n {
			t.Fatalf("%d items on a page of %d", len(pg.Items), n)
		}
		all = append(all, pg.Items...)
		if pg.NextCursor == "" {
			return all
		}
		cursor = pg.NextCursor
	}
}

// recipientsCSV parses a CSV answer: its header and records.
func recipientsCSV(t *testing.T, r response) ([]string, [][]string) {
	t.Helper()
	mustStatus(t, r, http.StatusOK)
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/csv") {
		t.Fatalf("Content-Type %q", ct)
	}
	if cd := r.Header.Get("Content-Disposition"); !strings.HasPrefix(cd, "attachment; filename=") {
		t.Fatalf("Content-Disposition %q", cd)
	}
	recs, err := csv.NewReader(strings.NewReader(string(r.Body))).ReadAll()
	if err != nil || len(recs) == 0 {
		t.Fatalf("CSV: %v %q", err, r.Body)
	}
	return recs[0], recs[1:]
}

// asCSV is the CSV record the export must write for a JSON recipient.
func asCSV(r recipientResponse) []string {
	var msgID, sentAt string
	if r.TelegramMessageID != nil {
		msgID = strconv.FormatInt(*r.TelegramMessageID, 10)
	}
	if r.SentAt != nil {
		sentAt = r.SentAt.UTC().Format(time.RFC3339Nano)
	}
	return []string{r.ContactID.String(), strconv.FormatInt(r.ChatID, 10), r.Status, strconv.Itoa(r.Attempts), r.Error,
		msgID, sentAt, r.UpdatedAt.UTC().Format(time.RFC3339Nano)}
}

func TestBroadcastRecipients(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	var ids []string
	for i := range 7 {
		ids = append(ids, te.newContact(tidA, bot.BotAppID, int64(3000+i)).ID.String())
	}
	sort.Strings(ids)
	r := te.do(http.MethodPost, "/broadcast/", keyA, map[string]any{"name": "n", "platform": "TELEGRAM", "message_text": "hi", "recipients": ids, "bot_app_id": bot.BotAppID})
	mustStatus(t, r, http.StatusAccepted)
	var bc broadcastResponse
	r.decode(t, &bc)
	// In contact id order: 0, 2, 4 sent; 1, 5 failed; 3, 6 queued.
	for i, id := range ids {
		var err error
		switch i {
		case 0, 2, 4:
			_, err = te.db.NewRaw("UPDATE broadcast_recipients SET status = 'sent', attempts = 1, telegram_message_id = ?, sent_at = now() WHERE contact_id = ?", 500+i, id).Exec(ctx)
		case 1, 5:
			_, err = te.db.NewRaw("UPDATE broadcast_recipients SET status = 'failed', attempts = 2, error = 'Forbidden: bot was blocked by the user, \"quoted\"' WHERE contact_id = ?", id).Exec(ctx)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	base := "/broadcast/" + bc.ID.String() + "/recipients/"

	t.Run("pages", func(t *testing.T) {
		all := te.recipientsPages(t, keyA, base, 2)
		if len(all) != 7 {
			t.Fatalf("%d recipients, want 7", len(all))
		}
		for i, rc := range all {
			if rc.ContactID.String() != ids[i] {
				t.Fatalf("item %d is %s, want %s (contact id order)", i, rc.ContactID, ids[i])
			}
		}
		if s := all[2]; s.Status != "sent" || s.Attempts != 1 || s.TelegramMessageID == nil || *s.TelegramMessageID != 502 || s.SentAt == nil || s.ChatID < 3000 {
			t.Errorf("sent recipient: %+v", s)
		}
		if f := all[1]; f.Status != "failed" || f.Attempts != 2 || !strings.HasPrefix(f.Error, "Forbidden") || f.TelegramMessageID != nil || f.SentAt != nil {
			t.Errorf("failed recipient: %+v", f)
		}
		sent := te.recipientsPages(t, keyA, base+"?status=SENT", 2)
		if len(sent) != 3 || sent[0].ContactID.String() != ids[0] || sent[1].ContactID.String() != ids[2] || sent[2].ContactID.String() != ids[4] {
			t.Fatalf("status=sent across pages: %+v", sent)
		}
		queued := te.recipientsPages(t, keyA, base+"?status=queued", 1)
		if len(queued) != 2 || queued[0].ContactID.String() != ids[3] || queued[1].ContactID.String() != ids[6] {
			t.Fatalf("status=queued: %+v", queued)
		}
	})

	t.Run("stable while statuses change", func(t *testing.T) {
		r := te.do(http.MethodGet, base+"?limit=3", keyA, nil)
		var pg listPage[recipientResponse]
		r.decode(t, &pg)
		// Recipients of the first page and of the next change status meanwhile.
		if _, err := te.db.NewRaw("UPDATE broadcast_recipients SET status = 'cancelled' WHERE broadcast_id = ? AND status = 'queued'", bc.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		seen := map[uuid.UUID]bool{}
		for _, it := range pg.Items {
			seen[it.ContactID] = true
		}
		for _, it := range te.recipientsPages(t, keyA, base+"?cursor="+pg.NextCursor, 200) {
			if seen[it.ContactID] {
				t.Fatalf("%s twice", it.ContactID)
			}
			seen[it.ContactID] = true
		}
		if len(seen) != 7 {
			t.Fatalf("%d recipients across the change, want 7", len(seen))
		}
	})

	t.Run("csv equals the pages", func(t *testing.T) {
		for _, query := range []string{"", "?status=failed", "?status=queued"} {
			pages := te.recipientsPages(t, keyA, base+query, 2)
			for _, p := range []string{"/broadcast/" + bc.ID.String() + "/recipients.csv" + query, "/broadcast/" + bc.ID.String() + "/recipients.csv/" + query} {
				header, recs := recipientsCSV(t, te.do(http.MethodGet, p, keyA, nil))
				if strings.Join(header, ",") != "contact_id,chat_id,status,attempts,error,telegram_message_id,sent_at,updated_at" {
					t.Fatalf("header %q", header)
				}
				if len(recs) != len(pages) {
					t.Fatalf("%s: %d rows, JSON has %d", p, len(recs), len(pages))
				}
				for i := range recs {
					if want := asCSV(pages[i]); strings.Join(recs[i], "\x00") != strings.Join(want, "\x00") {
						t.Fatalf("%s row %d:\n got  %q\n want %q", p, i, recs[i], want)
					}
				}
			}
		}
	})

	t.Run("errors", func(t *testing.T) {
		for _, p := range []string{base, "/broadcast/" + bc.ID.String() + "/recipients.csv"} {
			r := te.do(http.MethodGet, p, keyB, nil) // another tenant's broadcast
			if r.Code != http.StatusNotFound || r.errorCode(t) != "broadcast_not_found" {
				t.Errorf("B GET %s: %d %s", p, r.Code, r.Body)
			}
			r = te.do(http.MethodGet, strings.Replace(p, bc.ID.String(), uuid.NewString(), 1), keyA, nil)
			if r.Code != http.StatusNotFound || r.errorCode(t) != "broadcast_not_found" {
				t.Errorf("unknown id %s: %d %s", p, r.Code, r.Body)
			}
			r = te.do(http.MethodGet, p+"?status=delivered", keyA, nil)
			if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" || !strings.Contains(string(r.Body), `"field":"status"`) {
				t.Errorf("bad status %s: %d %s", p, r.Code, r.Body)
			}
		}
		r := te.do(http.MethodGet, base+"?cursor=abc", keyA, nil)
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_cursor" {
			t.Errorf("bad cursor: %d %s", r.Code, r.Body)
		}
	})
}

func TestBroadcastList_Filters(t *testing.T) {
	te := newEnv(t)
	ctx := context.Background()
	tidA, keyA := te.newTenant("A")
	_, keyB := te.newTenant("B")
	bot, _ := te.newBot(keyA, "Bot")
	bot2, _ := te.newBot(keyA, "Bot2")
	botB, _ := te.newBot(keyB, "BotB")
	c1 := te.newContact(tidA, bot.BotAppID, 1)
	c2 := te.newContact(tidA, bot2.BotAppID, 2)
	create := func(botID uuid.UUID, c uuid.UUID, created string) uuid.UUID {
		r := te.do(http.MethodPost, "/broadcast/", keyA, map[string]any{"name": "n", "platform": "TELEGRAM", "message_text": "hi", "recipients": []uuid.UUID{c}, "bot_app_id": botID})
		mustStatus(t, r, http.StatusAccepted)
		var bc broadcastResponse
		r.decode(t, &bc)
		if _, err := te.db.NewRaw("UPDATE broadcasts SET created_at = ? WHERE id = ?", created, bc.ID).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		return bc.ID
	}
	jan := create(bot.BotAppID, c1.ID, "2026-01-01T00:00:00Z")
	feb := create(bot.BotAppID, c1.ID, "2026-02-01T00:00:00Z")
	mar := create(bot2.BotAppID, c2.ID, "2026-03-01T00:00:00Z")
	mustStatus(t, te.do(http.MethodPost, "/broadcast/"+feb.String()+"/cancel/", keyA, nil), http.StatusOK)

	// list pages through /broadcast/ with query, one item a page, and returns the ids.
	list := func(query string) []uuid.UUID {
		t.Helper()
		var got []uuid.UUID
		cursor := ""
		for {
			p := "/broadcast/?limit=1&" + query
			if cursor != "" {
				p += "&cursor=" + url.QueryEscape(cursor)
			}
			r := te.do(http.MethodGet, p, keyA, nil)
			mustStatus(t, r, http.StatusOK)
			var pg listPage[broadcastResponse]
			r.decode(t, &pg)
			for _, b := range pg.Items {
				got = append(got, b.ID)
			}
			if pg.NextCursor == "" {
				return got
			}
			cursor = pg.NextCursor
		}
	}
	eq := func(name string, got []uuid.UUID, want ...uuid.UUID) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %v, want %v", name, got, want)
			return
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("%s: %v, want %v", name, got, want)
				return
			}
		}
	}
	eq("all", list(""), mar, feb, jan)
	eq("status cancelled", list("status=cancelled"), feb)
	eq("status scheduled", list("status=SCHEDULED"), mar, jan)
	eq("status list", list("status=scheduled,cancelled,scheduled"), mar, feb, jan)
	eq("status running", list("status=running"))
	eq("bot", list("bot_app_id="+bot.BotAppID.String()), feb, jan)
	eq("bot2", list("bot_app_id="+bot2.BotAppID.String()), mar)
	eq("created_after (inclusive)", list("created_after=2026-02-01T00:00:00Z"), mar, feb)
	eq("created_before (exclusive)", list("created_before=2026-02-01T00:00:00Z"), jan)
	eq("range with offset", list("created_after="+url.QueryEscape("2026-01-15T00:00:00+02:00")+"&created_before=2026-03-01T00:00:00Z"), feb)
	eq("combined", list("status=scheduled&bot_app_id="+bot.BotAppID.String()+"&created_after=2025-12-01T00:00:00Z"), jan)

	for _, query := range []string{"status=delivered", "status=queued", "status=scheduled,", "status=,", "created_after=yesterday", "created_before=2026-02-01", "created_after=0000-01-01T00:00:00Z", "bot_app_id=x"} {
		field := strings.SplitN(query, "=", 2)[0]
		r := te.do(http.MethodGet, "/broadcast/?"+query, keyA, nil)
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" || !strings.Contains(string(r.Body), `"field":"`+field+`"`) {
			t.Errorf("%s: %d %s", query, r.Code, r.Body)
		}
	}
	// Another tenant's bot, or no bot at all: 404 bot_not_found, like GET /contacts/.
	for _, id := range []uuid.UUID{botB.BotAppID, uuid.New()} {
		r := te.do(http.MethodGet, "/broadcast/?bot_app_id="+id.String(), keyA, nil)
		if r.Code != http.StatusNotFound || r.errorCode(t) != "bot_not_found" {
			t.Errorf("bot %s: %d %s", id, r.Code, r.Body)
		}
	}
}

// TestBroadcastRecipientsCSV_Large streams the CSV of a 20,000-recipient broadcast over a
// real HTTP connection, before the worker wrote its recipient rows (from the audience) and
// after: every recipient once, in contact id order, sent in chunks (no Content-Length).
func TestBroadcastRecipientsCSV_Large(t *testing.T) {
	const n = 20_000
	te := newEnv(t)
	ctx := context.Background()
	tid, key := te.newTenant("A")
	bot, _ := te.newBot(key, "Bot")
	var ids []string
	if err := te.db.NewRaw(`WITH c AS (INSERT INTO contacts (tenant_id, bot_id, telegram_chat_id, telegram_user_id)
SELECT ?, ?, g, g FROM generate_series(1, ?) AS g RETURNING *),
l AS (INSERT INTO contact_bots (contact_id, tenant_id, bot_id, telegram_chat_id) SELECT id, tenant_id, bot_id, telegram_chat_id FROM c) SELECT id FROM c`, tid, bot.BotAppID, n).Scan(ctx, &ids); err != nil {
		t.Fatal(err)
	}
	r := te.do(http.MethodPost, "/broadcast/", key, map[string]any{"name": "big", "platform": "TELEGRAM", "message_text": "hi", "recipients": ids, "bot_app_id": bot.BotAppID})
	mustStatus(t, r, http.StatusAccepted)
	var bc broadcastResponse
	r.decode(t, &bc)
	sort.Strings(ids)

	srv := httptest.NewServer(te.e)
	defer srv.Close()
	stream := func(stage, wantStatus string) {
		t.Helper()
		start := time.Now()
		req, _ := http.NewRequest(http.MethodGet, srv.URL+"/broadcast/"+bc.ID.String()+"/recipients.csv", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK || res.ContentLength != -1 || len(res.TransferEncoding) == 0 {
			t.Log(te.logs.String())
			t.Fatalf("%s: %d, Content-Length %d, Transfer-Encoding %v: not streamed", stage, res.StatusCode, res.ContentLength, res.TransferEncoding)
		}
		cr := csv.NewReader(res.Body)
		cr.ReuseRecord = true
		rows := -1 // the header
		for {
			rec, err := cr.Read()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if rows >= 0 {
				if rows >= n || rec[0] != ids[rows] || rec[2] != wantStatus {
					t.Fatalf("%s: row %d is %q, want contact %s %s", stage, rows, rec, ids[min(rows, n-1)], wantStatus)
				}
			}
			rows++
		}
		if rows != n {
			t.Fatalf("%s: %d rows, want %d", stage, rows, n)
		}
		t.Logf("%s: %d rows streamed in %s", stage, rows, time.Since(start).Round(time.Millisecond))
	}
	var materialized bool
	if err := te.db.NewRaw("SELECT materialized FROM broadcasts WHERE id = ?", bc.ID).Scan(ctx, &materialized); err != nil || materialized {
		t.Fatalf("materialized %v %v: the test wants a broadcast still only an audience", materialized, err)
	}
	stream("audience", "queued")
	// What the worker's first run does (broadcast.materialize), then a status change.
	if _, err := te.db.NewRaw(`INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id)
SELECT b.id, c.id, c.telegram_chat_id FROM broadcasts b, unnest(b.audience) AS u(id) JOIN contacts c ON c.id = u.id WHERE b.id = ?`, bc.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := te.db.NewRaw("UPDATE broadcasts SET materialized = true, audience = NULL WHERE id = ?", bc.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := te.db.NewRaw("UPDATE broadcast_recipients SET status = 'sent', sent_at = now(), telegram_message_id = id WHERE broadcast_id = ?", bc.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	stream("rows", "sent")

	// A client that goes away after the first line: the export stops and logs a warning
	// (not an error: nothing is wrong on the server).
	te.logs.reset()
	req, _ := http.NewRequest(http.MethodGet, srv.URL+"/broadcast/"+bc.ID.String()+"/recipients.csv", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bufio.NewReader(res.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	_ = res.Body.Close()
	cut := time.Now()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(te.logs.String(), "recipients CSV cut short"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no log of the export cut short: %s", te.logs.String())
		}
	}
	t.Logf("cut short after %s", time.Since(cut))
	if logs := te.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Errorf("a client going away was logged as an error: %s", logs)
	}
}
