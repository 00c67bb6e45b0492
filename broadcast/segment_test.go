package broadcast

import (
	"encoding/json"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
)

// tagged sets c's tags and attributes (attrs is a JSON object).
func (e *env) tagged(c contacts.Contact, tags []string, attrs string) contacts.Contact {
	e.t.Helper()
	var a map[string]json.RawMessage
	if err := json.Unmarshal([]byte(attrs), &a); err != nil {
		e.t.Fatal(err)
	}
	c, err := e.contacts.Update(e.ctx, c.TenantID, c.ID, contacts.Patch{Tags: &tags, Attributes: a})
	if err != nil {
		e.t.Fatalf("Update: %v", err)
	}
	return c
}

func sortedIDs(ids []uuid.UUID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	slices.Sort(out)
	return out
}

func cond(key, op, value string) Condition {
	c := Condition{Key: key, Op: op}
	if value != "" {
		c.Value = json.RawMessage(value)
	}
	return c
}

// TestService_Segment checks each segment part against a fixed set of contacts: the
// preview's count and sample, then the recipients Create writes, are exactly the matching
// contacts of the bot (never another bot's or tenant's, blocked ones included as skipped).
func TestService_Segment(t *testing.T) {
	e := newEnv(t, envOptions{})
	tenantA, tenantB := e.tenant("a"), e.tenant("b")
	bot, bot2, botB := e.bot(tenantA, 0), e.bot(tenantA, 0), e.bot(tenantB, 0)
	a := e.tagged(e.contact(bot), []string{"vip", "de"}, `{"plan":"pro","age":30,"score":"10"}`)
	b := e.tagged(e.contact(bot), []string{"vip"}, `{"plan":"free","age":17}`)
	c := e.tagged(e.contact(bot), []string{"de"}, `{"plan":"pro","active":true}`)
	d := e.contact(bot)
	blk := e.tagged(e.contact(bot), []string{"vip"}, `{"plan":"pro"}`)
	if _, err := e.contacts.SetBlocked(e.ctx, e.db, bot.ID, blk.TelegramChatID, true); err != nil {
		t.Fatal(err)
	}
	e.tagged(e.contact(bot2), []string{"vip", "de"}, `{"plan":"pro","age":30}`)
	e.tagged(e.contact(botB), []string{"vip", "de"}, `{"plan":"pro","age":30}`)
	all := []contacts.Contact{a, b, c, d, blk}

	tests := []struct {
		name string
		seg  Segment
		want []contacts.Contact
	}{
		{"all of the bot", Segment{}, all},
		{"tags_any", Segment{TagsAny: []string{"de", "nope"}}, []contacts.Contact{a, c}},
		{"tags_all", Segment{TagsAll: []string{"vip", "de"}}, []contacts.Contact{a}},
		{"tags_none", Segment{TagsNone: []string{"vip"}}, []contacts.Contact{c, d}},
		{"tags are case-sensitive", Segment{TagsAny: []string{"VIP"}}, nil},
		{"eq string", Segment{Attributes: []Condition{cond("plan", "eq", `"pro"`)}}, []contacts.Contact{a, c, blk}},
		{"eq number compares numerically", Segment{Attributes: []Condition{cond("age", "EQ", `30.0`)}}, []contacts.Contact{a}},
		{"eq string is not a number", Segment{Attributes: []Condition{cond("age", "eq", `"30"`)}}, nil},
		{"eq bool", Segment{Attributes: []Condition{cond("active", "eq", `true`)}}, []contacts.Contact{c}},
		{"eq bool is not a string", Segment{Attributes: []Condition{cond("active", "eq", `"true"`)}}, nil},
		{"ne includes contacts without the key", Segment{Attributes: []Condition{cond("plan", "ne", `"pro"`)}}, []contacts.Contact{b, d}},
		{"in", Segment{Attributes: []Condition{cond("plan", "in", `["free","pro"]`)}}, []contacts.Contact{a, b, c, blk}},
		{"in mixed kinds", Segment{Attributes: []Condition{cond("age", "in", `["30", 17, true]`)}}, []contacts.Contact{b}},
		{"exists", Segment{Attributes: []Condition{cond("age", "exists", "")}}, []contacts.Contact{a, b}},
		{"gt", Segment{Attributes: []Condition{cond("age", "gt", `18`)}}, []contacts.Contact{a}},
		{"lt", Segment{Attributes: []Condition{cond("age", "lt", `18.5`)}}, []contacts.Contact{b}},
		{"gt ignores string values", Segment{Attributes: []Condition{cond("score", "gt", `5`)}}, nil},
		{"combined", Segment{TagsAny: []string{"vip"}, TagsNone: []string{"nope"},
			Attributes: []Condition{cond("plan", "ne", `"free"`), cond("age", "exists", "")}}, []contacts.Contact{a}},
		{"quotes are data", Segment{TagsAny: []string{"x'); DELETE FROM contacts; --"},
			Attributes: []Condition{cond("plan", "eq", `"' OR '1'='1"`)}}, nil},
	}
	botID := bot.ID
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want := sortedIDs(ids(tc.want))
			wantBlocked := 0
			if slices.Contains(ids(tc.want), blk.ID) {
				wantBlocked = 1
			}
			seg := tc.seg
			pv, err := e.svc.PreviewAudience(e.ctx, tenantA, &botID, nil, &seg)
			if err != nil {
				t.Fatalf("PreviewAudience: %v", err)
			}
			got := make([]uuid.UUID, len(pv.Sample))
			for i, s := range pv.Sample {
				got[i] = s.ID
			}
			if pv.Count != len(want) || pv.Blocked != wantBlocked || !slices.Equal(sortedIDs(got), want) {
				t.Fatalf("preview = count %d blocked %d sample %v, want %d %d %v", pv.Count, pv.Blocked, sortedIDs(got), len(want), wantBlocked, want)
			}

			seg = tc.seg
			bc, counts, err := e.svc.Create(e.ctx, tenantA, NewBroadcast{Name: "seg", Platform: "TELEGRAM", MessageText: "Hi", BotID: &botID, Segment: &seg})
			if len(want) == 0 {
				if validate.FieldOf(err) != "segment" || !strings.Contains(err.Error(), "matches no contacts") {
					t.Fatalf("Create of an empty segment = %v, want invalid_field segment", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			if bc.Total != len(want) || counts.Total != len(want) || counts.Skipped != wantBlocked || counts.Failed != 0 {
				t.Errorf("total %d counts %+v, want %d recipients, %d skipped", bc.Total, counts, len(want), wantBlocked)
			}
			var rids []uuid.UUID
			for _, r := range e.recipients(bc.ID) {
				rids = append(rids, r.ContactID)
			}
			if !slices.Equal(sortedIDs(rids), want) {
				t.Errorf("recipients %v, want %v", sortedIDs(rids), want)
			}
			stored, _ := e.get(bot, bc.ID)
			if stored.Segment == nil || !reflect.DeepEqual(*stored.Segment, seg) {
				t.Errorf("stored segment %+v, want %+v", stored.Segment, seg)
			}
		})
	}

	t.Run("preview with recipients equals Create", func(t *testing.T) {
		pv, err := e.svc.PreviewAudience(e.ctx, tenantA, &botID, []uuid.UUID{a.ID, d.ID, a.ID}, nil)
		if err != nil || pv.Count != 2 || len(pv.Sample) != 2 {
			t.Fatalf("preview = %+v, %v; want 2 contacts", pv, err)
		}
		bc := e.create(bot, []contacts.Contact{a, d})
		if bc.Total != 2 || bc.Segment != nil {
			t.Errorf("recipients broadcast: total %d segment %v", bc.Total, bc.Segment)
		}
	})
	t.Run("preview 404 for another tenant's bot", func(t *testing.T) {
		other := botB.ID
		_, err := e.svc.PreviewAudience(e.ctx, tenantA, &other, nil, &Segment{})
		if code1(err) != "bot_not_found" {
			t.Fatalf("err = %v, want bot_not_found", err)
		}
	})
	t.Run("sample is at most 10, newest first", func(t *testing.T) {
		many := e.contactsOf(bot2, PreviewSample+2)
		id2 := bot2.ID
		pv, err := e.svc.PreviewAudience(e.ctx, tenantA, &id2, nil, &Segment{TagsNone: []string{"vip"}})
		if err != nil || pv.Count != len(many) || len(pv.Sample) != PreviewSample || pv.Sample[0].ID != many[len(many)-1].ID {
			t.Fatalf("preview = count %d sample %d, %v", pv.Count, len(pv.Sample), err)
		}
	})
}

// TestService_SegmentValidation checks that each bad part of a segment is a 422 naming it.
func TestService_SegmentValidation(t *testing.T) {
	e := newEnv(t, envOptions{})
	bot := e.bot(e.tenant("a"), 0)
	ct := e.contact(bot)
	botID := bot.ID
	many := make([]Condition, MaxConditions+1)
	for i := range many {
		many[i] = cond("k"+strconv.Itoa(i), "exists", "")
	}
	tests := []struct {
		name       string
		recipients []uuid.UUID
		seg        *Segment
		field      string
	}{
		{"both recipients and segment", []uuid.UUID{ct.ID}, &Segment{}, "segment"},
		{"empty recipients and segment", []uuid.UUID{}, &Segment{}, "segment"},
		{"neither", nil, nil, "recipients"},
		{"empty tag", nil, &Segment{TagsAny: []string{"ok", ""}}, "segment.tags_any[1]"},
		{"spaced tag", nil, &Segment{TagsAll: []string{" vip"}}, "segment.tags_all[0]"},
		{"control char tag", nil, &Segment{TagsNone: []string{"a\x01"}}, "segment.tags_none[0]"},
		{"bad key", nil, &Segment{Attributes: []Condition{cond("plan", "eq", `1`), cond("bad-key", "eq", `1`)}}, "segment.attributes[1].key"},
		{"bad op", nil, &Segment{Attributes: []Condition{cond("plan", "like", `"p%"`)}}, "segment.attributes[0].op"},
		{"eq without value", nil, &Segment{Attributes: []Condition{cond("plan", "eq", "")}}, "segment.attributes[0].value"},
		{"eq null", nil, &Segment{Attributes: []Condition{cond("plan", "eq", "null")}}, "segment.attributes[0].value"},
		{"eq object", nil, &Segment{Attributes: []Condition{cond("plan", "eq", `{"a":1}`)}}, "segment.attributes[0].value"},
		{"ne array", nil, &Segment{Attributes: []Condition{cond("plan", "ne", `[1]`)}}, "segment.attributes[0].value"},
		{"gt string", nil, &Segment{Attributes: []Condition{cond("age", "gt", `"5"`)}}, "segment.attributes[0].value"},
		{"lt bool", nil, &Segment{Attributes: []Condition{cond("age", "lt", `true`)}}, "segment.attributes[0].value"},
		{"gt out of range", nil, &Segment{Attributes: []Condition{cond("age", "gt", `1e999`)}}, "segment.attributes[0].value"},
		{"in empty", nil, &Segment{Attributes: []Condition{cond("plan", "in", `[]`)}}, "segment.attributes[0].value"},
		{"in scalar", nil, &Segment{Attributes: []Condition{cond("plan", "in", `"pro"`)}}, "segment.attributes[0].value"},
		{"in with object", nil, &Segment{Attributes: []Condition{cond("plan", "in", `["a",{}]`)}}, "segment.attributes[0].value"},
		{"exists with value", nil, &Segment{Attributes: []Condition{cond("plan", "exists", `1`)}}, "segment.attributes[0].value"},
		{"too many conditions", nil, &Segment{Attributes: many}, "segment.attributes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := e.svc.Create(e.ctx, bot.TenantID, NewBroadcast{Name: "x", Platform: "TELEGRAM", MessageText: "Hi",
				BotID: &botID, Recipients: tc.recipients, Segment: tc.seg})
			if code1(err) != "invalid_field" || validate.FieldOf(err) != tc.field {
				t.Fatalf("Create = %v (field %q), want invalid_field %q", err, validate.FieldOf(err), tc.field)
			}
			_, err = e.svc.PreviewAudience(e.ctx, bot.TenantID, &botID, tc.recipients, tc.seg)
			if code1(err) != "invalid_field" || validate.FieldOf(err) != tc.field {
				t.Fatalf("PreviewAudience = %v (field %q), want invalid_field %q", err, validate.FieldOf(err), tc.field)
			}
		})
	}
	if n, _ := e.db.NewSelect().Model((*Broadcast)(nil)).Count(e.ctx); n != 0 {
		t.Fatalf("invalid requests stored %d broadcasts", n)
	}
}

// TestService_SegmentSend runs a segment broadcast through HandleRun: exactly the matching
// contacts get the message, the blocked one is skipped without a send.
func TestService_SegmentSend(t *testing.T) {
	e := newEnv(t, envOptions{})
	bot := e.bot(e.tenant("a"), 0)
	cs := e.contactsOf(bot, 6)
	var want []contacts.Contact
	for i, c := range cs {
		if i%2 == 0 {
			e.tagged(c, []string{"spring"}, `{"orders":`+strconv.Itoa(i)+`}`)
			if i > 0 {
				want = append(want, c)
			}
		}
	}
	blk := e.tagged(e.contact(bot), []string{"spring"}, `{"orders":9}`)
	if _, err := e.contacts.SetBlocked(e.ctx, e.db, bot.ID, blk.TelegramChatID, true); err != nil {
		t.Fatal(err)
	}
	botID := bot.ID
	seg := Segment{TagsAll: []string{"spring"}, Attributes: []Condition{cond("orders", "gt", "0")}}
	bc, _, err := e.svc.Create(e.ctx, bot.TenantID, NewBroadcast{Name: "spring", Platform: "TELEGRAM", MessageText: "Sale!", BotID: &botID, Segment: &seg})
	if err != nil {
		t.Fatal(err)
	}
	e.runToEnd(bc.ID, false, 10)
	got, counts := e.get(bot, bc.ID)
	if got.Status != StatusCompleted || counts != (Counts{Total: 3, Sent: 2, Skipped: 1}) {
		t.Fatalf("status %s counts %+v", got.Status, counts)
	}
	var sentTo []string
	for _, call := range e.emu.Calls(bot.emuID, "sendMessage") {
		sentTo = append(sentTo, call.Params["chat_id"])
	}
	var wantTo []string
	for _, c := range want {
		wantTo = append(wantTo, strconv.FormatInt(c.TelegramChatID, 10))
	}
	slices.Sort(sentTo)
	slices.Sort(wantTo)
	if !slices.Equal(sentTo, wantTo) {
		t.Fatalf("sendMessage to %v, want %v", sentTo, wantTo)
	}
	if r := e.recipientOf(bc.ID, blk.TelegramChatID); r.Status != RecipientSkipped || r.Error != SkipBlocked {
		t.Errorf("blocked recipient %+v", r)
	}
}
