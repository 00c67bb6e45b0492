package contacts

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/validate"
)

// Limits of contact tags and attributes (issue 7, "Audience").
const (
	// MaxTags is the most tags a contact holds, after a PATCH or a bulk add.
	MaxTags = 50
	// MaxTagLen is the longest tag, in characters.
	MaxTagLen = 64
	// MaxAttributes is the most attribute keys a contact holds, after a merge.
	MaxAttributes = 50
	// MaxAttributeKeyLen is the longest attribute key, in characters ([A-Za-z0-9_]).
	MaxAttributeKeyLen = 64
	// MaxAttributeValueLen is the longest string attribute value, in characters.
	MaxAttributeValueLen = 1024
	// MaxBulkIDs is the most contact_ids of one POST /contacts/bulk-tags.
	MaxBulkIDs = 10_000
	// overLimitSample is how many ids of contacts over MaxTags a bulk result lists.
	overLimitSample = 10
)

// Attributes are a contact's custom attributes: key -> JSON value (a string, a number or a
// bool), kept as the client wrote it (numbers are not rounded through float64).
type Attributes map[string]json.RawMessage

// ErrUnknownContacts is the answer to a bulk request naming a contact id that is not one of
// the tenant's (another tenant's or no contact at all: the same answer); nothing is changed.
var ErrUnknownContacts = apperr.NotFound("unknown_contacts", "some contacts are not contacts of this tenant")

// ValidateTag checks one tag: 1-MaxTagLen characters of valid UTF-8 without control
// characters and without leading or trailing white space (a tag is stored exactly as given
// and compared case-sensitively: "VIP" and "vip" are two tags; rejecting surrounding
// spaces rather than trimming them keeps " vip" from silently becoming "vip").
func ValidateTag(field, tag string) error {
	if tag == "" {
		return validate.Field(field, "%s must be 1-%d characters", field, MaxTagLen)
	}
	if strings.TrimSpace(tag) != tag {
		return validate.Field(field, "%s must not start or end with white space", field)
	}
	_, err := validate.Name(field, tag, MaxTagLen)
	return err
}

// ValidateTags checks a list of tags (field is the JSON name of the list: errors name
// "field[i]") and returns them deduplicated and sorted (byte order). It does not check
// MaxTags: the caller does after merging.
func ValidateTags(field string, tags []string) ([]string, error) {
	out := make([]string, 0, len(tags))
	for i, t := range tags {
		if err := ValidateTag(fmt.Sprintf("%s[%d]", field, i), t); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// validKey reports whether k is an attribute key: 1-MaxAttributeKeyLen of [A-Za-z0-9_], so
// that a `{attributes.KEY}` message variable can name it.
func validKey(k string) bool {
	if k == "" || len(k) > MaxAttributeKeyLen {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !keyByte(k[i]) {
			return false
		}
	}
	return true
}

// keyByte reports whether c is one of [A-Za-z0-9_].
func keyByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// ValidateAttributes checks an attributes patch (field is its JSON name; errors name
// "field.KEY" or "field" for a bad key): keys of 1-64 [A-Za-z0-9_], values a string (at
// most MaxAttributeValueLen characters, validate.OptionalText: may be empty), a finite
// number or a bool; null (when allowNull) marks the key for removal. Objects and arrays
// are refused. It returns the values to set (compacted) and the keys to remove, sorted.
func ValidateAttributes(field string, patch map[string]json.RawMessage, allowNull bool) (set Attributes, remove []string, err error) {
	set = Attributes{}
	keys := make([]string, 0, len(patch))
	for k := range patch {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		f := field + "." + k
		if !validKey(k) {
			if !utf8.ValidString(k) || len(k) > 2*MaxAttributeKeyLen {
				f = field
			}
			return nil, nil, validate.Field(f, "%s keys must be 1-%d characters of A-Z, a-z, 0-9 and _", field, MaxAttributeKeyLen)
		}
		v := bytes.TrimSpace(patch[k])
		switch {
		case len(v) == 0:
			return nil, nil, validate.Field(f, "%s must be a string, a number or a bool", f)
		case string(v) == "null":
			if !allowNull {
				return nil, nil, validate.Field(f, "%s must be a string, a number or a bool", f)
			}
			remove = append(remove, k)
		case string(v) == "true" || string(v) == "false":
			set[k] = json.RawMessage(v)
		case v[0] == '"':
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, nil, validate.Field(f, "%s must be a string, a number or a bool", f)
			}
			if err := validate.OptionalText(f, s, MaxAttributeValueLen); err != nil {
				return nil, nil, err
			}
			b, _ := json.Marshal(s)
			set[k] = b
		case v[0] == '-' || v[0] >= '0' && v[0] <= '9':
			if _, err := strconv.ParseFloat(string(v), 64); err != nil {
				return nil, nil, validate.Field(f, "%s must be a number within float64 range", f)
			}
			set[k] = json.RawMessage(v)
		default:
			return nil, nil, validate.Field(f, "%s must be a string, a number or a bool (not an object or an array)", f)
		}
	}
	return set, remove, nil
}

// Patch is a PATCH /contacts/{id}/: Tags (when non-nil) replaces the set; Attributes merges
// into the stored ones like a JSON merge patch (RFC 7396) one level deep: a key with a value
// sets it, a key with null removes it, keys not named are kept.
type Patch struct {
	Tags       *[]string
	Attributes map[string]json.RawMessage
	// ExternalIDSet: ExternalID is given; then ExternalID nil clears it, else sets it
	// (ValidateExternalID; unique per tenant: ErrExternalIDTaken).
	ExternalIDSet bool
	ExternalID    *string
	// Email and Phone, when not nil, replace the stored ones ("" clears; ValidateEmail,
	// ValidatePhone).
	Email, Phone *string
}

// Update applies p to the tenant's contact id in one transaction (the row is locked while
// merging) and returns the stored contact. Errors: ErrNotFound (also another tenant's),
// validate.ErrInvalidField kinds ("tags[i]", "tags" past MaxTags, "attributes.KEY",
// "attributes" past MaxAttributes).
func (s *Service) Update(ctx context.Context, tenantID, id uuid.UUID, p Patch) (Contact, error) {
	var tags []string
	if p.Tags != nil {
		var err error
		if tags, err = ValidateTags("tags", *p.Tags); err != nil {
			return Contact{}, err
		}
		if len(tags) > MaxTags {
			return Contact{}, validate.Field("tags", "a contact has at most %d tags, not %d", MaxTags, len(tags))
		}
	}
	set, remove, err := ValidateAttributes("attributes", p.Attributes, true)
	if err != nil {
		return Contact{}, err
	}
	var extID, email, phone string
	if p.ExternalIDSet && p.ExternalID != nil {
		if extID, err = ValidateExternalID("external_id", *p.ExternalID); err != nil {
			return Contact{}, err
		}
	}
	if p.Email != nil {
		if email, err = ValidateEmail("email", *p.Email); err != nil {
			return Contact{}, err
		}
	}
	if p.Phone != nil {
		if phone, err = ValidatePhone("phone", *p.Phone); err != nil {
			return Contact{}, err
		}
	}
	var c Contact
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		err := tx.NewSelect().Model(&c).Where("c.tenant_id = ?", tenantID).Where("c.id = ?", id).For("UPDATE").Scan(ctx)
		if err != nil {
			return err
		}
		if p.Tags != nil {
			c.Tags = tags
		}
		if c.Attributes == nil {
			c.Attributes = Attributes{}
		}
		for k, v := range set {
			c.Attributes[k] = v
		}
		for _, k := range remove {
			delete(c.Attributes, k)
		}
		if len(c.Attributes) > MaxAttributes {
			return validate.Field("attributes", "a contact has at most %d attributes, not %d after the merge", MaxAttributes, len(c.Attributes))
		}
		if c.Tags == nil {
			c.Tags = []string{}
		}
		if p.ExternalIDSet {
			c.ExternalID = extID
		}
		if p.Email != nil {
			c.Email = email
		}
		if p.Phone != nil {
			c.Phone = phone
		}
		_, err = tx.NewUpdate().Model(&c).Column("tags", "attributes", "external_id", "email", "phone").
			Set("updated_at = now()").WherePK().Returning("*").Exec(ctx)
		return err
	})
	if err != nil {
		if database.IsNoRows(err) {
			return Contact{}, ErrNotFound
		}
		if database.IsUniqueViolation(err) {
			return Contact{}, ErrExternalIDTaken
		}
		return Contact{}, apperr.Classify(err)
	}
	return c, attachLinks(ctx, s.db, []*Contact{&c})
}

// BulkTags is a POST /contacts/bulk-tags: exactly one of IDs or Filter selects the tenant's
// contacts; Add is added to and Remove removed from each one's tags.
type BulkTags struct {
	IDs    []uuid.UUID
	Filter *BulkFilter
	Add    []string
	Remove []string
}

// BulkFilter selects contacts by bot and/or tag (both optional: an empty filter is all of
// the tenant's contacts).
type BulkFilter struct {
	BotID *uuid.UUID
	Tag   string
}

// BulkResult is the outcome of BulkTag: Matched contacts were selected, Updated of them had
// their tags changed (the others already had them as asked), OverLimit were left unchanged
// because they would have had more than MaxTags tags (never truncated), and
// OverLimitSample lists up to 10 of those, by id.
type BulkResult struct {
	Matched         int         `bun:"matched"`
	Updated         int         `bun:"updated"`
	OverLimit       int         `bun:"over_limit"`
	OverLimitSample []uuid.UUID `bun:"over_limit_sample,array"`
}

// BulkTag adds and removes tags on many contacts in one UPDATE: the selected rows are locked
// in id order (so that two bulk requests cannot deadlock), each row's new tags are
// (tags ∪ add) ∖ remove, deduplicated and sorted, and rows that would exceed MaxTags are
// left as they were and counted in OverLimit. Errors: validate.ErrInvalidField kinds
// ("contact_ids", "add[i]", "remove[i]", a tag in both lists), ErrUnknownContacts (an id is
// not the tenant's: nothing changed).
func (s *Service) BulkTag(ctx context.Context, tenantID uuid.UUID, b BulkTags) (BulkResult, error) {
	if (b.IDs == nil) == (b.Filter == nil) {
		return BulkResult{}, validate.Field("contact_ids", "give exactly one of contact_ids and filter")
	}
	if b.IDs != nil && (len(b.IDs) == 0 || len(b.IDs) > MaxBulkIDs) {
		return BulkResult{}, validate.Field("contact_ids", "contact_ids must hold 1-%d ids", MaxBulkIDs)
	}
	add, err := ValidateTags("add", b.Add)
	if err != nil {
		return BulkResult{}, err
	}
	remove, err := ValidateTags("remove", b.Remove)
	if err != nil {
		return BulkResult{}, err
	}
	if len(add) == 0 && len(remove) == 0 {
		return BulkResult{}, validate.Field("add", "give at least one tag to add or remove")
	}
	if len(add) > MaxTags {
		return BulkResult{}, validate.Field("add", "add holds at most %d tags", MaxTags)
	}
	for i, t := range b.Remove {
		if _, found := slices.BinarySearch(add, t); found {
			return BulkResult{}, validate.Field(fmt.Sprintf("remove[%d]", i), "tag %q is both in add and in remove", t)
		}
	}
	if b.Filter != nil && b.Filter.Tag != "" {
		if err := ValidateTag("filter.tag", b.Filter.Tag); err != nil {
			return BulkResult{}, err
		}
	}

	var res BulkResult
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		where := "c.tenant_id = ?"
		args := []any{tenantID}
		if b.IDs != nil {
			ids := make([]string, len(b.IDs))
			for i, id := range b.IDs {
				ids[i] = id.String()
			}
			var known int
			if err := tx.NewRaw("SELECT count(*) FROM contacts AS c WHERE c.tenant_id = ? AND c.id = ANY(?::uuid[])",
				tenantID, pgdialect.Array(ids)).Scan(ctx, &known); err != nil {
				return err
			}
			if known != len(distinctIDs(b.IDs)) {
				return ErrUnknownContacts
			}
			where += " AND c.id = ANY(?::uuid[])"
			args = append(args, pgdialect.Array(ids))
		} else {
			if b.Filter.BotID != nil {
				where += " AND EXISTS (SELECT 1 FROM contact_bots cb WHERE cb.contact_id = c.id AND cb.bot_id = ?)"
				args = append(args, *b.Filter.BotID)
			}
			if b.Filter.Tag != "" {
				where += " AND c.tags @> ARRAY[?]::text[]"
				args = append(args, b.Filter.Tag)
			}
		}
		q := `WITH target AS (
	SELECT c.id, c.tags FROM contacts AS c WHERE ` + where + ` ORDER BY c.id FOR UPDATE
), computed AS (
	SELECT t.id, t.tags AS old, ARRAY(
		SELECT d.x FROM (SELECT DISTINCT unnest(t.tags || ?::text[]) AS x) AS d
		WHERE d.x <> ALL(?::text[]) ORDER BY d.x COLLATE "C"
	) AS new FROM target AS t
), upd AS (
	UPDATE contacts AS c SET tags = computed.new, updated_at = now() FROM computed
	WHERE c.id = computed.id AND cardinality(computed.new) <= ? AND computed.new <> computed.old
	RETURNING c.id
)
SELECT (SELECT count(*) FROM computed) AS matched, (SELECT count(*) FROM upd) AS updated,
	(SELECT count(*) FROM computed WHERE cardinality(new) > ?) AS over_limit,
	ARRAY(SELECT id FROM computed WHERE cardinality(new) > ? ORDER BY id LIMIT ?) AS over_limit_sample`
		args = append(args, pgdialect.Array(nonNil(add)), pgdialect.Array(nonNil(remove)), MaxTags, MaxTags, MaxTags, overLimitSample)
		return tx.NewRaw(q, args...).Scan(ctx, &res)
	})
	if err != nil {
		if errors.Is(err, ErrUnknownContacts) {
			return BulkResult{}, err
		}
		return BulkResult{}, apperr.Classify(fmt.Errorf("bulk tags: %w", err))
	}
	if res.OverLimitSample == nil {
		res.OverLimitSample = []uuid.UUID{}
	}
	return res, nil
}

func distinctIDs(ids []uuid.UUID) []uuid.UUID {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ValidAttributeKey reports whether k is a valid attribute key: 1-MaxAttributeKeyLen
// characters of A-Z, a-z, 0-9 and _ (the rule of ValidateAttributes).
func ValidAttributeKey(k string) bool { return validKey(k) }
