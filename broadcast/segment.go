package broadcast

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/validate"
)

// Limits of a Segment.
const (
	// MaxSegmentTags is the most tags of each of tags_any, tags_all and tags_none
	// (contacts.MaxTags: a contact never holds more).
	MaxSegmentTags = contacts.MaxTags
	// MaxConditions is the most attribute conditions of a segment.
	MaxConditions = 20
	// MaxInValues is the most values of one `in` condition.
	MaxInValues = 100
	// PreviewSample is how many contacts PreviewAudience returns.
	PreviewSample = 10
)

// Attribute condition operators (Condition.Op).
const (
	OpEq     = "eq"
	OpNe     = "ne"
	OpIn     = "in"
	OpExists = "exists"
	OpGt     = "gt"
	OpLt     = "lt"
)

// ErrEmptySegment is the answer to a broadcast whose segment matches no contact of its bot
// (422 invalid_field, field "segment"): nothing is created, so that a mistyped tag does not
// leave a completed broadcast of 0 recipients behind.
var ErrEmptySegment = validate.Field("segment", "the segment matches no contacts of this bot")

// Segment selects a broadcast's audience among the contacts of its bot (issue 7,
// "Audience"): a contact matches when it satisfies every given part. The zero Segment ({})
// is all the bot's contacts.
//
//   - TagsAny: the contact has at least one of these tags; TagsAll: all of them; TagsNone:
//     none of them. Tags follow contacts.ValidateTag (exact, case-sensitive), at most
//     MaxSegmentTags per list.
//   - Attributes: up to MaxConditions conditions on contacts' attributes, all of which must
//     hold (see Condition).
type Segment struct {
	TagsAny    []string    `json:"tags_any,omitempty"`
	TagsAll    []string    `json:"tags_all,omitempty"`
	TagsNone   []string    `json:"tags_none,omitempty"`
	Attributes []Condition `json:"attributes,omitempty"`
}

// Condition is one attribute condition of a Segment: Key is an attribute key
// (contacts.ValidAttributeKey). Op and Value:
//
//   - "eq": the attribute equals Value (a string, number or bool), compared as JSON values:
//     the string "5" is not the number 5, true is not "true"; numbers compare numerically
//     (1 equals 1.0).
//   - "ne": not "eq"; a contact without the attribute matches.
//   - "in": the attribute equals one of Value, an array of 1-MaxInValues strings, numbers or
//     bools (compared as "eq").
//   - "exists": the contact has the attribute (any value); Value must be absent.
//   - "gt", "lt": the attribute is a number greater (less) than Value, a number; a contact
//     whose attribute is a string or a bool, or who has none, never matches.
//
// Op is case-insensitive and stored in lower case.
type Condition struct {
	Key   string          `json:"key"`
	Op    string          `json:"op"`
	Value json.RawMessage `json:"value,omitempty"`
}

// validateSegment checks and normalises sg (tags deduplicated and sorted, ops in lower case,
// values compacted). Errors are invalid_field naming the part: "segment.tags_any[i]",
// "segment.attributes[i].key", "segment.attributes[i].op", "segment.attributes[i].value".
func validateSegment(sg *Segment) error {
	for _, l := range []struct {
		name string
		tags *[]string
	}{{"tags_any", &sg.TagsAny}, {"tags_all", &sg.TagsAll}, {"tags_none", &sg.TagsNone}} {
		field := "segment." + l.name
		if len(*l.tags) > MaxSegmentTags {
			return validate.Field(field, "%s holds at most %d tags", field, MaxSegmentTags)
		}
		if *l.tags == nil {
			continue
		}
		tags, err := contacts.ValidateTags(field, *l.tags)
		if err != nil {
			return err
		}
		*l.tags = tags
	}
	if len(sg.Attributes) > MaxConditions {
		return validate.Field("segment.attributes", "segment.attributes holds at most %d conditions", MaxConditions)
	}
	for i := range sg.Attributes {
		c := &sg.Attributes[i]
		f := fmt.Sprintf("segment.attributes[%d]", i)
		if !contacts.ValidAttributeKey(c.Key) {
			return validate.Field(f+".key", "%s.key must be 1-%d characters of A-Z, a-z, 0-9 and _", f, contacts.MaxAttributeKeyLen)
		}
		c.Op = strings.ToLower(strings.TrimSpace(c.Op))
		v := bytes.TrimSpace(c.Value)
		absent := len(v) == 0 || string(v) == "null"
		switch c.Op {
		case OpExists:
			if !absent {
				return validate.Field(f+".value", "%s.value must be absent with op exists", f)
			}
			c.Value = nil
		case OpEq, OpNe:
			kind, ok := scalar(v)
			if !ok {
				return validate.Field(f+".value", "%s.value must be a string, a number or a bool", f)
			}
			c.Value = compact(v, kind)
		case OpGt, OpLt:
			if kind, ok := scalar(v); !ok || kind != "number" {
				return validate.Field(f+".value", "%s.value must be a number with op %s", f, c.Op)
			}
			c.Value = compact(v, "number")
		case OpIn:
			var vals []json.RawMessage
			if absent || v[0] != '[' || json.Unmarshal(v, &vals) != nil || len(vals) == 0 || len(vals) > MaxInValues {
				return validate.Field(f+".value", "%s.value must be an array of 1-%d strings, numbers or bools with op in", f, MaxInValues)
			}
			out := make([]json.RawMessage, len(vals))
			for j, e := range vals {
				e = bytes.TrimSpace(e)
				kind, ok := scalar(e)
				if !ok {
					return validate.Field(f+".value", "%s.value[%d] must be a string, a number or a bool", f, j)
				}
				out[j] = compact(e, kind)
			}
			c.Value, _ = json.Marshal(out)
		default:
			return validate.Field(f+".op", "%s.op must be one of eq, ne, in, exists, gt, lt", f)
		}
	}
	return nil
}

// scalar reports the JSON kind of v ("string", "number" or "bool") when it is one of those
// and valid (a number within float64 range).
func scalar(v []byte) (string, bool) {
	switch {
	case len(v) == 0:
		return "", false
	case string(v) == "true" || string(v) == "false":
		return "bool", true
	case v[0] == '"':
		var s string
		return "string", json.Unmarshal(v, &s) == nil
	case v[0] == '-' || v[0] >= '0' && v[0] <= '9':
		if !json.Valid(v) {
			return "", false
		}
		_, err := strconv.ParseFloat(string(v), 64)
		return "number", err == nil
	}
	return "", false
}

// compact returns v (a valid scalar of kind) in its canonical JSON form.
func compact(v []byte, kind string) json.RawMessage {
	if kind == "string" {
		var s string
		_ = json.Unmarshal(v, &s)
		b, _ := json.Marshal(s)
		return b
	}
	return append(json.RawMessage(nil), v...)
}

// where returns sg (validated) as one SQL condition over contacts aliased c, with its
// arguments for bun's ? placeholders: user strings are only ever arguments. Tag lists use
// the contacts_tags_idx GIN index (&&, @>), eq uses contacts_attributes_idx (@>).
func (sg Segment) where() (string, []any) {
	conds := []string{"true"}
	var args []any
	if len(sg.TagsAny) > 0 {
		conds = append(conds, "c.tags && ?::text[]")
		args = append(args, pgdialect.Array(sg.TagsAny))
	}
	if len(sg.TagsAll) > 0 {
		conds = append(conds, "c.tags @> ?::text[]")
		args = append(args, pgdialect.Array(sg.TagsAll))
	}
	if len(sg.TagsNone) > 0 {
		conds = append(conds, "NOT (c.tags && ?::text[])")
		args = append(args, pgdialect.Array(sg.TagsNone))
	}
	for _, c := range sg.Attributes {
		switch c.Op {
		case OpEq, OpNe:
			obj, _ := json.Marshal(map[string]json.RawMessage{c.Key: c.Value})
			cond := "c.attributes @> ?::jsonb"
			if c.Op == OpNe {
				cond = "NOT (" + cond + ")"
			}
			conds = append(conds, cond)
			args = append(args, string(obj))
		case OpIn:
			conds = append(conds, "(c.attributes -> ?) IN (SELECT jsonb_array_elements(?::jsonb))")
			args = append(args, c.Key, string(c.Value))
		case OpExists:
			// jsonb's ? operator would clash with bun's placeholders.
			conds = append(conds, "(c.attributes -> ?) IS NOT NULL")
			args = append(args, c.Key)
		case OpGt, OpLt:
			cmp := ">"
			if c.Op == OpLt {
				cmp = "<"
			}
			// CASE guarantees the cast only runs on numbers.
			conds = append(conds, "(CASE WHEN jsonb_typeof(c.attributes -> ?) = 'number' THEN (c.attributes ->> ?)::numeric "+cmp+" ?::numeric ELSE false END)")
			args = append(args, c.Key, c.Key, string(c.Value))
		}
	}
	return strings.Join(conds, " AND "), args
}

// audienceFrom joins the tenant's contacts c to their links cb, for audienceWhere.
const audienceFrom = "contacts c JOIN contact_bots cb ON cb.contact_id = c.id"

// audienceWhere is the condition over contacts c and their links cb (audienceFrom) of the
// audience of a broadcast of botID: the tenant's contacts linked to that bot that are in ids
// (when seg is nil) or match seg.
func audienceWhere(tenantID, botID uuid.UUID, ids []uuid.UUID, seg *Segment) (string, []any) {
	where, args := "c.tenant_id = ? AND cb.bot_id = ?", []any{tenantID, botID}
	if seg == nil {
		return where + " AND c.id = ANY(?::uuid[])", append(args, uuidArray(ids))
	}
	sw, sargs := seg.where()
	return where + " AND " + sw, append(args, sargs...)
}

// insertSegmentBroadcast inserts b (Segment set) and one recipient per contact of its bot
// that matches the segment, with one INSERT … SELECT in tx (blocked contacts stored as
// skipped, as insertBroadcast does), and sets b.Total. Errors: ErrEmptySegment, invalid_field
// "segment" past MaxRecipients (the transaction is rolled back).
func insertSegmentBroadcast(ctx context.Context, tx bun.Tx, b *Broadcast) error {
	if _, err := tx.NewInsert().Model(b).Returning("*").Exec(ctx); err != nil {
		return fmt.Errorf("insert broadcast: %w", err)
	}
	where, wargs := audienceWhere(b.TenantID, b.BotID, nil, b.Segment)
	args := append([]any{b.ID, b.ID}, wargs...)
	// LIMIT bounds the work of a segment that is too large: it is refused, rolled back.
	args = append(args, MaxRecipients+1)
	res, err := tx.NewRaw(`INSERT INTO broadcast_recipients (broadcast_id, contact_id, chat_id, status, error)
SELECT ?, c.id, cb.telegram_chat_id, `+recipientStatusSQL+`, `+recipientErrorSQL+`
FROM `+audienceFrom+` JOIN broadcasts b ON b.id = ?
WHERE `+where+`
LIMIT ?`, args...).Exec(ctx)
	if err != nil {
		return fmt.Errorf("insert segment recipients: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	switch {
	case n == 0:
		return ErrEmptySegment
	case n > MaxRecipients:
		return validate.Field("segment", "the segment matches more than %d contacts, the most recipients of a broadcast", MaxRecipients)
	}
	b.Total = int(n)
	if _, err := tx.NewUpdate().Model(b).Column("total").WherePK().Exec(ctx); err != nil {
		return fmt.Errorf("update total: %w", err)
	}
	return nil
}

// Audience is the answer of PreviewAudience: Count contacts would be recipients (Blocked of
// them have blocked the bot and OptedOut others opted out with /stop: a broadcast records
// both as skipped without sending), and Sample is up to PreviewSample of them, newest first
// (the order of GET /contacts/).
type Audience struct {
	Count    int
	Blocked  int
	OptedOut int
	Sample   []contacts.Contact
}

// PreviewAudience answers what Create would target for the same bot and recipients or
// segment (exactly one of them), without creating anything. Errors: those of Create's
// audience checks (invalid_field recipients/segment…, telegram.ErrBotNotFound 404 for
// another tenant's bot, ErrUnknownRecipients, ErrRecipientsNotOfBot); an empty segment is
// not an error here (Count 0).
func (s *Service) PreviewAudience(ctx context.Context, tenantID uuid.UUID, botID *uuid.UUID, recipients []uuid.UUID, seg *Segment) (Audience, error) {
	ids, err := validateAudience(recipients, seg)
	if err != nil {
		return Audience{}, err
	}
	bot, err := s.tg.BotForTenant(ctx, tenantID, botID)
	if err != nil {
		return Audience{}, err
	}
	if seg == nil {
		unknown, otherBot, err := foreignRecipients(ctx, s.db, tenantID, bot.ID, ids)
		if err != nil {
			return Audience{}, err
		}
		if len(unknown) > 0 {
			return Audience{}, idsError(ErrUnknownRecipients, unknown)
		}
		if len(otherBot) > 0 {
			return Audience{}, idsError(ErrRecipientsNotOfBot, otherBot)
		}
	}
	where, args := audienceWhere(tenantID, bot.ID, ids, seg)
	a := Audience{Sample: []contacts.Contact{}}
	var n struct {
		Count    int `bun:"count"`
		Blocked  int `bun:"blocked"`
		OptedOut int `bun:"opted_out"`
	}
	if err := s.db.NewRaw("SELECT count(*) AS count, count(*) FILTER (WHERE cb.blocked) AS blocked, count(*) FILTER (WHERE cb.opted_out AND NOT cb.blocked) AS opted_out FROM "+audienceFrom+" WHERE "+where, args...).Scan(ctx, &n); err != nil {
		return Audience{}, apperr.Classify(fmt.Errorf("count audience: %w", err))
	}
	a.Count, a.Blocked, a.OptedOut = n.Count, n.Blocked, n.OptedOut
	if err := s.db.NewSelect().Model(&a.Sample).Join("JOIN contact_bots AS cb ON cb.contact_id = c.id").Where(where, args...).
		OrderExpr("c.created_at DESC, c.id DESC").Limit(PreviewSample).Scan(ctx); err != nil {
		return Audience{}, apperr.Classify(fmt.Errorf("sample audience: %w", err))
	}
	if err := contacts.AttachLinks(ctx, s.db, a.Sample); err != nil {
		return Audience{}, err
	}
	return a, nil
}
