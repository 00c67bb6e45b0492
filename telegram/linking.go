package telegram

// Account linking (issue 9): link tokens presented to the bot (/start <token> from a deep
// link, /link <token>), verification codes sent by the bot (POST
// /contacts/verification-codes/, POST /contacts/verify/) and /status.

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"github.com/botfleet/botfleet/callbacks"
	"math/big"
	"regexp"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/validate"
)

// Link token and verification code settings.
const (
	// LinkTokenPrefix starts every link token, so that a /start payload that is not one
	// (a campaign code, for example) is not a link attempt: the bot welcomes as usual.
	LinkTokenPrefix = "link_"
	// DefaultLinkTokenTTL is a link token's lifetime when ttl_seconds is not given.
	DefaultLinkTokenTTL = 15 * time.Minute
	// MinLinkTokenTTL and MaxLinkTokenTTL bound ttl_seconds.
	MinLinkTokenTTL = time.Minute
	MaxLinkTokenTTL = 7 * 24 * time.Hour
	// MaxExternalIDLength is the longest external_id, in characters.
	MaxExternalIDLength = contacts.MaxExternalIDLength
	// VerificationCodeTTL is how long a verification code is accepted.
	VerificationCodeTTL = 10 * time.Minute
	// VerificationMaxAttempts is how many wrong codes lock a verification attempt (a new
	// code request starts over).
	VerificationMaxAttempts = 5
	// VerificationCodeText is the message that carries the code (%s: the 6 digits).
	VerificationCodeText = "Your verification code is %s. It expires in 10 minutes. If you did not ask for it, ignore this message."
)

// Default texts of the link templates (template text: {external_id} is the contact's).
const (
	defaultLinkSuccessText = "Your Telegram account is now linked to account {external_id}."
	defaultLinkFailedText  = "This link is invalid, expired or already used. Please request a new one."
	defaultLinkStatusText  = "Linked account: {external_id|not linked}"
)

// Errors of account linking.
var (
	// ErrVerificationNotFound: no pending verification code for this external_id (never
	// requested, or already used).
	ErrVerificationNotFound = apperr.NotFound("verification_not_found", "no pending verification code for this external_id")
	// ErrVerificationCodeInvalid: a wrong code (422); details.field "code", details.attempts_left.
	ErrVerificationCodeInvalid = apperr.Invalid("verification_code_invalid", "the verification code is wrong")
	// ErrVerificationCodeExpired: the code is older than VerificationCodeTTL (422).
	ErrVerificationCodeExpired = apperr.Invalid("verification_code_expired", "the verification code has expired; request a new one").WithDetails(map[string]any{"field": "code"})
	// ErrVerificationLocked: VerificationMaxAttempts wrong codes (422); request a new code.
	ErrVerificationLocked = apperr.Invalid("verification_locked", "too many wrong codes; request a new one").WithDetails(map[string]any{"field": "code"})
)

// linkTokenRe is Telegram's rule for a deep-link start parameter: 1-64 characters of
// A-Za-z0-9_- (core.telegram.org/bots/features#deep-linking).
var linkTokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// codeRe is a verification code: 6 digits.
var codeRe = regexp.MustCompile(`^[0-9]{6}$`)

// NewLinkToken is the body of POST /contacts/link-tokens/.
type NewLinkToken struct {
	// ExternalID is the tenant's id of the person (1-255 characters, one line).
	ExternalID string
	// BotID is the bot the token is for (its username makes the deep link).
	BotID uuid.UUID
	// TTL is the token's lifetime, MinLinkTokenTTL..MaxLinkTokenTTL; 0 means
	// DefaultLinkTokenTTL.
	TTL time.Duration
}

// LinkToken is a created link token: shown once, stored as its SHA-256.
type LinkToken struct {
	// Token is LinkTokenPrefix + 32 characters of base64url (24 random bytes): 37 characters
	// of A-Za-z0-9_-, a valid start parameter.
	Token string
	// DeepLink is https://t.me/<bot username>?start=<token>.
	DeepLink  string
	ExpiresAt time.Time
}

// ContactLinked is what happened when a contact got an external_id through account linking.
type ContactLinked struct {
	TenantID   uuid.UUID
	ContactID  uuid.UUID
	BotID      uuid.UUID
	ExternalID string
	// Via is "link_token" or "verification_code".
	Via string
	// MovedFrom are the contacts the external_id was cleared on (it moved to ContactID).
	MovedFrom []uuid.UUID
	At        time.Time
}

// OnContactLinked is the hook point of the contact.linked event callback: it is called inside
// the transaction that links the contact (the batch of inbound updates for link tokens, the
// verify transaction for codes), so that an outbox row written on idb commits with the link.
// It emits the contact.linked event callback (callbacks.EmitContactLinked: an outbox row
// for each subscribed endpoint of the tenant, none and no query when there is none). An
// error aborts the link.
func (s *Service) OnContactLinked(ctx context.Context, idb bun.IDB, ev ContactLinked) error {
	return s.cb.EmitContactLinked(ctx, idb, ev.TenantID, callbacks.ContactLinkedData{
		ContactID: ev.ContactID, ExternalID: ev.ExternalID, BotAppID: ev.BotID, Method: ev.Via,
	})
}

// checkExternalID validates an external_id field (trimmed, 1-255 characters, one line).
func checkExternalID(s string) (string, error) {
	return contacts.ValidateExternalID("external_id", s)
}

// hashLinkToken is SHA-256 of a link token.
func hashLinkToken(token string) []byte {
	h := sha256.Sum256([]byte(token))
	return h[:]
}

// CreateLinkToken creates a single-use link token for nl.ExternalID on bot nl.BotID. Errors:
// invalid_field (external_id, ttl_seconds), ErrBotNotFound (404, also another tenant's),
// apperr.ErrUnavailable.
func (s *Service) CreateLinkToken(ctx context.Context, tenantID uuid.UUID, nl NewLinkToken) (LinkToken, error) {
	ext, err := checkExternalID(nl.ExternalID)
	if err != nil {
		return LinkToken{}, err
	}
	ttl := nl.TTL
	if ttl == 0 {
		ttl = DefaultLinkTokenTTL
	}
	if ttl < MinLinkTokenTTL || ttl > MaxLinkTokenTTL {
		return LinkToken{}, validate.Field("ttl_seconds", "ttl_seconds must be %d-%d", int(MinLinkTokenTTL.Seconds()), int(MaxLinkTokenTTL.Seconds()))
	}
	bot, err := s.GetBot(ctx, tenantID, nl.BotID)
	if err != nil {
		return LinkToken{}, err
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return LinkToken{}, fmt.Errorf("link token: %w", err)
	}
	token := LinkTokenPrefix + base64.RawURLEncoding.EncodeToString(raw[:])
	exp := s.now().Add(ttl).UTC().Truncate(time.Microsecond)
	_, err = s.db.NewRaw(`INSERT INTO link_tokens (tenant_id, bot_id, external_id, token_hash, expires_at) VALUES (?, ?, ?, ?, ?)`,
		tenantID, bot.ID, ext, hashLinkToken(token), exp).Exec(ctx)
	if err != nil {
		return LinkToken{}, apperr.Classify(fmt.Errorf("create link token: %w", err))
	}
	return LinkToken{Token: token, DeepLink: "https://t.me/" + bot.Username + "?start=" + token, ExpiresAt: exp}, nil
}

// linkCommand handles the account-linking commands of message plan p inside the batch's
// transaction tx: /start <token> (a deep link; the token starts with LinkTokenPrefix),
// /link <token> and /status. handled is false for every other message, at no cost (no
// query): the caller answers it as usual. A tenant-defined template bound to /link or
// /status wins over the built-in behaviour (the bot answers with it and links nothing).
//
// A token is consumed with one UPDATE (unused, unexpired, of this bot); on success the
// contact gets its external_id (moved from another contact of the tenant holding it,
// contacts.LinkExternalID), OnContactLinked runs, and the reply is link_success; an
// unknown, used or expired token changes nothing and gets link_failed. /status answers
// link_status.
func (s *Service) linkCommand(ctx context.Context, tx bun.Tx, p *eventPlan, st *contactState, cmd, args string, tpls *botTemplates) (text, mode string, handled bool, err error) {
	switch cmd {
	case "start":
		if !strings.HasPrefix(args, LinkTokenPrefix) {
			return "", "", false, nil
		}
	case "link", "status":
		if tpls != nil && tpls.byCommand[cmd] != nil {
			return "", "", false, nil
		}
	default:
		return "", "", false, nil
	}
	if cmd == "status" {
		text, mode = s.linkReply(p, &st.contact, TemplateLinkStatus, tpls)
		return text, mode, true, nil
	}
	token, _, _ := strings.Cut(strings.TrimSpace(args), " ")
	key := TemplateLinkFailed
	if linkTokenRe.MatchString(token) {
		ok, err := s.consumeLinkToken(ctx, tx, p, st, token)
		if err != nil {
			return "", "", true, err
		}
		if ok {
			key = TemplateLinkSuccess
		}
	}
	s.log.Info("telegram: link token presented", "bot_app_id", p.ev.BotID.String(), "update_id", p.ev.UpdateID,
		"chat_id", p.key.chatID, "linked", key == TemplateLinkSuccess)
	text, mode = s.linkReply(p, &st.contact, key, tpls)
	return text, mode, true, nil
}

// consumeLinkToken marks token used by st's contact and links the contact; false when the
// token is unknown, used, expired or another bot's.
func (s *Service) consumeLinkToken(ctx context.Context, tx bun.Tx, p *eventPlan, st *contactState, token string) (bool, error) {
	now := s.now()
	var ext []string
	err := tx.NewRaw(`UPDATE link_tokens SET used_at = ?, used_by_contact_id = ?
		WHERE token_hash = ? AND bot_id = ? AND tenant_id = ? AND used_at IS NULL AND expires_at > ? RETURNING external_id`,
		now, st.contact.ID, hashLinkToken(token), p.ev.BotID, p.ev.TenantID, now).Scan(ctx, &ext)
	if err != nil && !database.IsNoRows(err) {
		return false, apperr.Classify(fmt.Errorf("consume link token: %w", err))
	}
	if len(ext) == 0 {
		return false, nil
	}
	moved, err := s.contacts.LinkExternalID(ctx, tx, p.ev.TenantID, st.contact.ID, ext[0])
	if err != nil {
		return false, err
	}
	st.contact.ExternalID = ext[0]
	return true, s.OnContactLinked(ctx, tx, ContactLinked{TenantID: p.ev.TenantID, ContactID: st.contact.ID, BotID: p.ev.BotID,
		ExternalID: ext[0], Via: "link_token", MovedFrom: moved, At: now})
}

// linkReply renders link template key for contact c: the bot's edited template, else the
// built-in default.
func (s *Service) linkReply(p *eventPlan, c *contacts.Contact, key string, tpls *botTemplates) (string, string) {
	if tpls != nil {
		if t := tpls.byKey[key]; t != nil {
			if text, mode, ok := s.renderReply(p, c, t); ok {
				return text, mode
			}
		}
	}
	def, _ := DefaultTemplateText(key)
	mt, err := compileTemplate(def, "", nil)
	if err != nil { // the defaults are constants that parse
		panic(err)
	}
	text, mode, _ := s.renderReply(p, c, &compiledTemplate{key: key, mt: mt})
	return text, mode
}

// VerificationRequest is the body of POST /contacts/verification-codes/.
type VerificationRequest struct {
	ExternalID string
	BotID      uuid.UUID
	// Username is the Telegram username of a contact of BotID (with or without "@").
	Username string
}

// codeHash is HMAC-SHA256 of a verification code for (tenantID, externalID), keyed from the
// encryption key: a 6-digit code has too few values for a plain hash to hide it.
func (s *Service) codeHash(tenantID uuid.UUID, externalID, code string) []byte {
	k := hmac.New(sha256.New, s.cfg.EncryptionKey)
	k.Write([]byte("botfleet verification codes v1"))
	m := hmac.New(sha256.New, k.Sum(nil))
	fmt.Fprintf(m, "%s\x00%s\x00%s", tenantID, externalID, code)
	return m.Sum(nil)
}

// RequestVerificationCode sends a new 6-digit code (crypto/rand) through bot r.BotID to the
// tenant's contact known by r.Username on that bot, as POST /messages/ sends (CreateMessage:
// queued, sent by the worker), and stores its hash for (tenant, external_id), replacing a
// previous attempt (attempts start over). It returns when the code expires. Errors:
// invalid_field (external_id, username), ErrBotNotFound, contacts.ErrNotFound (no contact
// with that username on the bot), CreateMessage's errors (blocked, opted out),
// apperr.ErrUnavailable.
func (s *Service) RequestVerificationCode(ctx context.Context, tenantID uuid.UUID, r VerificationRequest) (time.Time, error) {
	ext, err := checkExternalID(r.ExternalID)
	if err != nil {
		return time.Time{}, err
	}
	username, err := validate.Name("username", r.Username, 64)
	if err != nil {
		return time.Time{}, err
	}
	bot, err := s.GetBot(ctx, tenantID, r.BotID)
	if err != nil {
		return time.Time{}, err
	}
	c, err := s.contacts.GetByUsername(ctx, tenantID, username, &bot.ID)
	if err != nil {
		return time.Time{}, err
	}
	n, err := rand.Int(rand.Reader, big.NewInt(1_000_000))
	if err != nil {
		return time.Time{}, fmt.Errorf("verification code: %w", err)
	}
	code := fmt.Sprintf("%06d", n.Int64())
	hash := s.codeHash(tenantID, ext, code)
	exp := s.now().Add(VerificationCodeTTL).UTC().Truncate(time.Microsecond)
	_, err = s.db.NewRaw(`INSERT INTO verification_codes (tenant_id, external_id, bot_id, contact_id, code_hash, attempts, expires_at)
		VALUES (?, ?, ?, ?, ?, 0, ?)
		ON CONFLICT (tenant_id, external_id) DO UPDATE SET bot_id = EXCLUDED.bot_id, contact_id = EXCLUDED.contact_id,
			code_hash = EXCLUDED.code_hash, attempts = 0, expires_at = EXCLUDED.expires_at, used_at = NULL, created_at = now()`,
		tenantID, ext, bot.ID, c.ID, hash, exp).Exec(ctx)
	if err != nil {
		return time.Time{}, apperr.Classify(fmt.Errorf("store verification code: %w", err))
	}
	if _, err := s.CreateMessage(ctx, tenantID, NewMessage{BotID: bot.ID, ContactID: c.ID, Text: fmt.Sprintf(VerificationCodeText, code)}); err != nil {
		// Nothing was sent: forget this code (unless a newer request replaced it).
		_, _ = s.db.NewRaw(`DELETE FROM verification_codes WHERE tenant_id = ? AND external_id = ? AND code_hash = ?`, tenantID, ext, hash).Exec(context.WithoutCancel(ctx))
		return time.Time{}, err
	}
	return exp, nil
}

// VerifyCode checks code for (tenantID, externalID) and, when right, gives the contact the
// code was sent to that external_id (moved from another contact holding it,
// contacts.LinkExternalID; OnContactLinked runs in the same transaction) and returns it.
//
// The attempt is counted by one UPDATE (row-locked, so concurrent guesses cannot exceed
// VerificationMaxAttempts). Errors: invalid_field (external_id; code not 6 digits, not
// counted), ErrVerificationNotFound (404: none pending), ErrVerificationCodeInvalid (422,
// details.attempts_left), ErrVerificationCodeExpired (422), ErrVerificationLocked (422),
// apperr.ErrUnavailable.
func (s *Service) VerifyCode(ctx context.Context, tenantID uuid.UUID, externalID, code string) (contacts.Contact, error) {
	ext, err := checkExternalID(externalID)
	if err != nil {
		return contacts.Contact{}, err
	}
	if !codeRe.MatchString(code) {
		return contacts.Contact{}, validate.Field("code", "code must be the 6 digits the bot sent")
	}
	hash := s.codeHash(tenantID, ext, code)
	now := s.now()
	var row struct {
		Attempts  int
		OK        bool
		ContactID uuid.UUID
		BotID     uuid.UUID
	}
	var found bool
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		err := tx.NewRaw(`UPDATE verification_codes
			SET attempts = attempts + CASE WHEN code_hash = ? THEN 0 ELSE 1 END,
			    used_at = CASE WHEN code_hash = ? THEN ?::timestamptz END
			WHERE tenant_id = ? AND external_id = ? AND used_at IS NULL AND attempts < ? AND expires_at > ?
			RETURNING attempts, used_at IS NOT NULL AS ok, contact_id, bot_id`,
			hash, hash, now, tenantID, ext, VerificationMaxAttempts, now).Scan(ctx, &row)
		if database.IsNoRows(err) {
			return nil
		}
		if err != nil {
			return err
		}
		found = true
		if !row.OK {
			return nil // the counted attempt commits
		}
		moved, err := s.contacts.LinkExternalID(ctx, tx, tenantID, row.ContactID, ext)
		if err != nil {
			return err
		}
		return s.OnContactLinked(ctx, tx, ContactLinked{TenantID: tenantID, ContactID: row.ContactID, BotID: row.BotID,
			ExternalID: ext, Via: "verification_code", MovedFrom: moved, At: now})
	})
	if err != nil {
		return contacts.Contact{}, apperr.Classify(fmt.Errorf("verify code: %w", err))
	}
	if !found {
		return contacts.Contact{}, s.verificationState(ctx, tenantID, ext, now)
	}
	if !row.OK {
		left := VerificationMaxAttempts - row.Attempts
		if left <= 0 {
			return contacts.Contact{}, ErrVerificationCodeInvalid.WithMessage("the verification code is wrong; the attempt is now locked: request a new code").
				WithDetails(map[string]any{"field": "code", "attempts_left": 0})
		}
		return contacts.Contact{}, ErrVerificationCodeInvalid.WithDetails(map[string]any{"field": "code", "attempts_left": left})
	}
	return s.contacts.Get(ctx, tenantID, row.ContactID)
}

// verificationState explains why no pending code matched: none, locked or expired.
func (s *Service) verificationState(ctx context.Context, tenantID uuid.UUID, ext string, now time.Time) error {
	var rows []struct {
		Attempts  int
		ExpiresAt time.Time
		Used      bool
	}
	err := s.db.NewRaw(`SELECT attempts, expires_at, used_at IS NOT NULL AS used FROM verification_codes WHERE tenant_id = ? AND external_id = ?`,
		tenantID, ext).Scan(ctx, &rows)
	if err != nil && !database.IsNoRows(err) {
		return apperr.Classify(fmt.Errorf("verification state: %w", err))
	}
	switch {
	case len(rows) == 0 || rows[0].Used:
		return ErrVerificationNotFound
	case rows[0].Attempts >= VerificationMaxAttempts:
		return ErrVerificationLocked
	case !rows[0].ExpiresAt.After(now):
		return ErrVerificationCodeExpired
	}
	return ErrVerificationNotFound // changed meanwhile (a new request): try again
}
