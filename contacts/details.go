package contacts

import (
	"context"
	"fmt"
	"net/mail"
	"regexp"
	"strings"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/validate"
)

// MaxExternalIDLength is the longest external_id, in characters.
const MaxExternalIDLength = 255

// ErrExternalIDTaken is a 409: another contact of the tenant already has this external_id
// (unique per tenant, index contacts_tenant_external_id_uq).
var ErrExternalIDTaken = apperr.Conflict("external_id_taken", "another contact of the tenant has this external_id").
	WithDetails(map[string]any{"field": "external_id"})

// ValidateExternalID checks an external_id (the tenant's own id of the person): trimmed,
// 1-255 characters, valid UTF-8, no control characters (validate.Name's rules). It returns
// the trimmed value; errors are 422 invalid_field naming field.
func ValidateExternalID(field, s string) (string, error) {
	return validate.Name(field, s, MaxExternalIDLength)
}

// phoneRE is E.164: "+", then 7-15 digits, the first not 0 (ITU-T E.164 allows at most 15).
var phoneRE = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

// ValidateEmail checks an email address: "" (unset) or one bare address as RFC 5322
// parses it (net/mail), at most 254 characters (RFC 5321 path limit), no display name.
// It returns the trimmed value.
func ValidateEmail(field, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s || len(s) > 254 {
		return "", validate.Field(field, "not an email address (a bare address such as ann@example.com)")
	}
	return s, nil
}

// ValidatePhone checks a phone number: "" (unset) or E.164 ("+" and 7-15 digits, spaces,
// dashes, dots and parentheses removed first). It returns the normalised number.
func ValidatePhone(field, s string) (string, error) {
	s = strings.Map(func(r rune) rune {
		if strings.ContainsRune(" -.()", r) {
			return -1
		}
		return r
	}, s)
	if s == "" {
		return "", nil
	}
	if !phoneRE.MatchString(s) {
		return "", validate.Field(field, "not an E.164 phone number (+ and 7 to 15 digits, e.g. +4915112345678)")
	}
	return s, nil
}

// Erase deletes the tenant's contact id and everything stored about the person (right to be
// forgotten, GDPR art. 17), in one transaction: its messages (inbound and outbound), the raw
// Telegram updates of its private chats (webhook_events whose message, edited_message,
// callback_query or my_chat_member came from the person's chat), and the contact row, whose
// deletion cascades to its broadcast recipients rows, topic opt-outs, conversation and
// verification codes; the link tokens it consumed are deleted. Broadcast counters keep counting the sends that happened. Event
// callbacks already queued for the tenant's own endpoints are left to be delivered.
// Errors: ErrNotFound (also another tenant's contact), apperr kinds.
func (s *Service) Erase(ctx context.Context, tenantID, id uuid.UUID) error {
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var c Contact
		if err := tx.NewSelect().Model(&c).Where("c.tenant_id = ?", tenantID).Where("c.id = ?", id).
			For("UPDATE").Scan(ctx); err != nil {
			return err
		}
		var chats []int64
		if err := tx.NewRaw("SELECT DISTINCT chat_id FROM messages WHERE contact_id = ? UNION SELECT ?", id, c.TelegramChatID).
			Scan(ctx, &chats); err != nil {
			return err
		}
		for _, chat := range chats {
			if _, err := tx.NewRaw(`DELETE FROM webhook_events WHERE tenant_id = ? AND (
	payload @> jsonb_build_object('message', jsonb_build_object('chat', jsonb_build_object('id', ?::bigint)))
	OR payload @> jsonb_build_object('edited_message', jsonb_build_object('chat', jsonb_build_object('id', ?::bigint)))
	OR payload @> jsonb_build_object('my_chat_member', jsonb_build_object('chat', jsonb_build_object('id', ?::bigint)))
	OR payload @> jsonb_build_object('callback_query', jsonb_build_object('from', jsonb_build_object('id', ?::bigint))))`,
				tenantID, chat, chat, chat, chat).Exec(ctx); err != nil {
				return err
			}
		}
		if _, err := tx.NewDelete().TableExpr("messages").Where("tenant_id = ?", tenantID).Where("contact_id = ?", id).Exec(ctx); err != nil {
			return err
		}
		if _, err := tx.NewDelete().TableExpr("link_tokens").Where("tenant_id = ?", tenantID).Where("used_by_contact_id = ?", id).Exec(ctx); err != nil {
			return err
		}
		_, err := tx.NewDelete().TableExpr("contacts").Where("tenant_id = ?", tenantID).Where("id = ?", id).Exec(ctx)
		return err
	})
	if err != nil {
		if database.IsNoRows(err) {
			return ErrNotFound
		}
		return apperr.Classify(fmt.Errorf("erase contact: %w", err))
	}
	return nil
}
