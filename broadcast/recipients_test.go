package broadcast

import (
	"sort"
	"testing"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/page"
)

// TestService_Recipients_Materialize pages through a large broadcast's recipients while
// they are still its audience, lets the worker write and send them between two pages, and
// reads on with the same cursor: every recipient exactly once, in contact id order, with
// the status its counts give it before and its real one after.
func TestService_Recipients_Materialize(t *testing.T) {
	e := newEnv(t, envOptions{})
	e.svc.syncRecipients = 2
	tn := e.tenant("a")
	b := e.bot(tn, 0)
	cs := e.contactsOf(b, 6)
	bc := e.create(b, cs)
	want := ids(cs)
	sort.Slice(want, func(i, j int) bool { return want[i].String() < want[j].String() })
	// A contact deleted since Create is left out, as materialize leaves it out.
	if _, err := e.db.NewRaw("DELETE FROM contacts WHERE id = ?", want[1]).Exec(e.ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want[:1], want[2:]...)

	rows, next, err := e.svc.Recipients(e.ctx, tn, bc.ID, RecipientFilter{Limit: 2})
	if err != nil || len(rows) != 2 || next == "" {
		t.Fatalf("first page: %d rows, next %q, %v", len(rows), next, err)
	}
	for i, r := range rows {
		if r.ContactID != want[i] || r.Status != RecipientQueued || r.Attempts != 0 || r.ChatID == 0 {
			t.Fatalf("audience row %d: %+v, want contact %s queued", i, r, want[i])
		}
	}
	if sent, _, err := e.svc.Recipients(e.ctx, tn, bc.ID, RecipientFilter{Status: "sent"}); err != nil || len(sent) != 0 {
		t.Fatalf("status=sent before the run: %d rows, %v", len(sent), err)
	}
	var all []RecipientRow
	if err := e.svc.EachRecipient(e.ctx, tn, bc.ID, "", func(rs []RecipientRow) error { all = append(all, rs...); return nil }); err != nil || len(all) != len(want) {
		t.Fatalf("EachRecipient before the run: %d rows, %v", len(all), err)
	}

	e.runToEnd(bc.ID, false, 10)
	got := rows
	for next != "" {
		rows, next, err = e.svc.Recipients(e.ctx, tn, bc.ID, RecipientFilter{Limit: 2, Cursor: next})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rows...)
	}
	if len(got) != len(want) {
		t.Fatalf("%d recipients across the materialization, want %d", len(got), len(want))
	}
	for i, r := range got {
		if r.ContactID != want[i] {
			t.Fatalf("row %d is %s, want %s", i, r.ContactID, want[i])
		}
		if i >= 2 && (r.Status != RecipientSent || r.TelegramMessageID == nil || r.SentAt.IsZero() || r.Attempts != 1) {
			t.Errorf("row %d after the run: %+v", i, r)
		}
	}
	all = nil
	if err := e.svc.EachRecipient(e.ctx, tn, bc.ID, "SENT", func(rs []RecipientRow) error { all = append(all, rs...); return nil }); err != nil || len(all) != len(want) {
		t.Fatalf("EachRecipient sent after the run: %d rows, %v", len(all), err)
	}

	// Another tenant's broadcast, a bad status, a bad cursor.
	other := e.tenant("b")
	if _, _, err := e.svc.Recipients(e.ctx, other, bc.ID, RecipientFilter{}); err != ErrNotFound {
		t.Errorf("other tenant: %v", err)
	}
	if err := e.svc.EachRecipient(e.ctx, other, bc.ID, "", func([]RecipientRow) error { t.Error("called"); return nil }); err != ErrNotFound {
		t.Errorf("other tenant, each: %v", err)
	}
	if _, _, err := e.svc.Recipients(e.ctx, tn, bc.ID, RecipientFilter{Status: "delivered"}); code1(err) != "invalid_field" {
		t.Errorf("bad status: %v", err)
	}
	if _, _, err := e.svc.Recipients(e.ctx, tn, bc.ID, RecipientFilter{Cursor: page.EncodeInt(3)}); err != page.ErrBadCursor {
		t.Errorf("int cursor: %v", err)
	}
	if _, _, err := e.svc.Recipients(e.ctx, tn, uuid.New(), RecipientFilter{}); err != ErrNotFound {
		t.Errorf("unknown id: %v", err)
	}
}
