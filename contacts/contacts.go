// Package contacts owns contacts (the Telegram chats that talked to a tenant's bots) and
// their messages, inbound and outbound.
//
// A contact is a person of the tenant: unique on (tenant_id, telegram_chat_id), a private
// chat's id being the Telegram user's id. Its Telegram identity attaches to it per bot in
// contact_bots (Link, links.go): the same user writing to two bots of one tenant is one
// contact with two links, each with its own blocked and opted_out state. Every method that
// reads on behalf of an API client takes the tenant id first and scopes by it; another
// tenant's contact is ErrNotFound.
package contacts

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
)

// Errors returned by this package.
var (
	ErrNotFound        = apperr.NotFound("contact_not_found", "contact not found")
	ErrMessageNotFound = apperr.NotFound("message_not_found", "message not found")
)

// Contact is a person who messaged one or more of the tenant's bots.
type Contact struct {
	bun.BaseModel `bun:"table:contacts,alias:c"`

	ID       uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID uuid.UUID `bun:",type:uuid,notnull"`
	// BotID and TelegramChatID are the bot the person first wrote to and the chat there;
	// when the contact is read at one bot (UpsertManyFromTelegram, GetByChat) they are that
	// bot's, as are Blocked and OptedOut.
	BotID            uuid.UUID `bun:",type:uuid,notnull"`
	TelegramChatID   int64     `bun:",notnull"`
	TelegramUserID   int64     `bun:",notnull"`
	TelegramUsername string    `bun:",notnull"`
	FirstName        string    `bun:",notnull"`
	LastName         string    `bun:",notnull"`
	LanguageCode     string    `bun:",notnull"`
	// Blocked and BlockedAt are those of the link to BotID (stored in contact_bots).
	Blocked    bool      `bun:",scanonly"`
	BlockedAt  time.Time `bun:",scanonly"`
	LastSeenAt time.Time `bun:",nullzero,notnull,default:now()"`
	CreatedAt  time.Time `bun:",nullzero,notnull,default:now()"`
	UpdatedAt  time.Time `bun:",nullzero,notnull,default:now()"`
	// Tags is the contact's set of tags, sorted (byte order), at most MaxTags (tags.go).
	Tags []string `bun:",array,nullzero,notnull,default:'{}'"`
	// Attributes are the contact's custom attributes, at most MaxAttributes (tags.go).
	Attributes Attributes `bun:",type:jsonb,nullzero,notnull,default:'{}'"`
	// OptedOut is set by the contact's /stop and cleared by /start: broadcasts skip the
	// contact (reason "opted_out"), apart from Blocked (the user blocked the bot). OptedOutAt
	// is when it was set (zero when not opted out).
	OptedOut   bool      `bun:",scanonly"`
	OptedOutAt time.Time `bun:",scanonly"`
	// ExternalID is the tenant's own id of the person (unique per tenant; "" = unset, stored
	// as NULL). Email and Phone are free contact details ("" when unset).
	ExternalID string `bun:",nullzero"`
	Email      string `bun:",notnull"`
	Phone      string `bun:",notnull"`
	// Bots are the contact's links, one per bot it wrote to, oldest first; filled by the
	// methods that say so (Get, GetByChat, List, Update), else nil.
	Bots []Link `bun:"-"`
}

// Identity is what an update tells about its sender (Telegram's User and Chat objects).
type Identity struct {
	ChatID       int64
	UserID       int64
	Username     string
	FirstName    string
	LastName     string
	LanguageCode string
}

// Message directions, statuses and kinds.
const (
	DirectionInbound  = "inbound"
	DirectionOutbound = "outbound"

	StatusReceived = "received" // inbound
	StatusQueued   = "queued"   // outbound, waiting for the worker
	StatusSending  = "sending"  // outbound, a worker is calling Telegram (attempt counted)
	StatusSent     = "sent"
	StatusFailed   = "failed"

	KindMessage = "message" // POST /messages/
	KindReply   = "reply"   // a command reply
	KindInbound = "inbound"
)

// Message is one message in a contact's conversation.
type Message struct {
	bun.BaseModel `bun:"table:messages,alias:m"`

	ID                uuid.UUID  `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID          uuid.UUID  `bun:",type:uuid,notnull"`
	BotID             uuid.UUID  `bun:",type:uuid,notnull"`
	ContactID         *uuid.UUID `bun:",type:uuid"`
	ChatID            int64      `bun:",notnull"`
	Direction         string     `bun:",notnull"`
	Kind              string     `bun:",notnull"`
	Text              string     `bun:",notnull"`
	ParseMode         string     `bun:",notnull"`
	Status            string     `bun:",notnull"`
	Error             string     `bun:",notnull"`
	Attempts          int        `bun:",notnull"`
	TelegramMessageID *int64
	UpdateID          *int64
	// Content is the JSON of the message's photo or document, inline keyboard and flags
	// (telegram.Content), opaque to this package; nil for a plain text message.
	Content   json.RawMessage `bun:",type:jsonb,nullzero"`
	CreatedAt time.Time       `bun:",nullzero,notnull,default:now()"`
	UpdatedAt time.Time       `bun:",nullzero,notnull,default:now()"`
	SentAt    time.Time       `bun:",nullzero"`
	// Inbox reports whether an inbound message is flagged for the inbox: set when it is
	// stored, from its bot's inbox mode (telegram.InboxFlag); always false for outbound
	// messages.
	Inbox bool `bun:",notnull"`
	// SentBy is the name of the API key that sent an outbound message (POST /messages/,
	// POST /contacts/{id}/messages/); "" otherwise (inbound, automatic replies).
	SentBy string `bun:",notnull"`
	// Media is the JSON of an inbound message's media metadata (telegram.Media: file_id,
	// sizes, location ...; never the bytes); nil for none.
	Media json.RawMessage `bun:",type:jsonb,nullzero"`
}

// ListFilter selects contacts: an optional bot, a cursor from a previous page and a limit
// (0 = page.DefaultLimit, at most page.MaxLimit).
type ListFilter struct {
	// BotID, when not nil, keeps the contacts linked to this bot.
	BotID *uuid.UUID
	// Tag, when not empty, keeps the contacts that have this tag (exact, case-sensitive).
	Tag string
	// Q, when not empty, keeps the contacts whose Telegram username, first name or last
	// name starts with Q (case-insensitive; "@" before a username is ignored).
	Q string
	// Blocked and OptedOut, when not nil, keep the contacts with a link (to BotID, when
	// set) whose blocked / opted_out flag has that value.
	Blocked, OptedOut *bool
	// ExternalID, when not empty, keeps the contact with this external_id (exact).
	ExternalID string
	Cursor     string
	Limit      int
}

// Service stores contacts and messages.
type Service struct {
	db *bun.DB
}

// New returns a Service on db.
func New(db *bun.DB) *Service { return &Service{db: db} }

// DB returns the database handle, for callers that need a transaction spanning packages.
func (s *Service) DB() *bun.DB { return s.db }

// UpsertFromTelegram creates or refreshes the contact of (botID, id.ChatID) under tenantID
// with the sender's identity and last_seen_at = seenAt, as UpsertManyFromTelegram (links.go)
// does for one row, and returns it seen at botID. It runs on idb (a *bun.DB or a bun.Tx).
func (s *Service) UpsertFromTelegram(ctx context.Context, idb bun.IDB, tenantID, botID uuid.UUID, id Identity, seenAt time.Time) (Contact, error) {
	cs, err := s.UpsertManyFromTelegram(ctx, idb, []TelegramUpsert{{TenantID: tenantID, BotID: botID, Identity: id, SeenAt: seenAt}})
	if err != nil {
		return Contact{}, err
	}
	return cs[0], nil
}

// SetBlocked marks the link of (botID, chatID) blocked or unblocked (Telegram
// my_chat_member kicked / member, or a 403 "bot was blocked by the user"). It reports
// whether a link was changed; an unknown chat is not an error.
func (s *Service) SetBlocked(ctx context.Context, idb bun.IDB, botID uuid.UUID, chatID int64, blocked bool) (bool, error) {
	q := idb.NewUpdate().Model((*Link)(nil)).
		Set("blocked = ?", blocked).Set("updated_at = now()").
		Where("bot_id = ?", botID).Where("telegram_chat_id = ?", chatID).Where("blocked <> ?", blocked)
	if blocked {
		q = q.Set("blocked_at = now()")
	} else {
		q = q.Set("blocked_at = NULL")
	}
	res, err := q.Exec(ctx)
	if err != nil {
		return false, apperr.Classify(fmt.Errorf("set blocked: %w", err))
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// MigrateChat moves the link of (botID, oldChatID) to newChatID (Telegram's
// migrate_to_chat_id when a group becomes a supergroup), and its contact with it when the
// tenant has no contact of newChatID yet.
func (s *Service) MigrateChat(ctx context.Context, botID uuid.UUID, oldChatID, newChatID int64) error {
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		// The contact row is locked before its link, in the order inbound processing takes
		// them (UpsertManyFromTelegram), so that the two cannot deadlock.
		var contactID uuid.UUID
		err := tx.NewRaw(`SELECT c.id FROM contact_bots cb JOIN contacts c ON c.id = cb.contact_id
WHERE cb.bot_id = ? AND cb.telegram_chat_id = ? FOR UPDATE OF c`, botID, oldChatID).Scan(ctx, &contactID)
		if err != nil {
			if database.IsNoRows(err) {
				return nil
			}
			return err
		}
		if _, err = tx.NewRaw(`UPDATE contact_bots SET telegram_chat_id = ?, updated_at = now()
WHERE bot_id = ? AND telegram_chat_id = ?`, newChatID, botID, oldChatID).Exec(ctx); err != nil {
			return err
		}
		_, err = tx.NewRaw(`UPDATE contacts c SET telegram_chat_id = ?, updated_at = now()
WHERE c.id = ? AND c.telegram_chat_id = ? AND NOT EXISTS (
	SELECT 1 FROM contacts o WHERE o.tenant_id = c.tenant_id AND o.telegram_chat_id = ?)`,
			newChatID, contactID, oldChatID, newChatID).Exec(ctx)
		return err
	})
	if err != nil && !database.IsUniqueViolation(err) {
		return apperr.Classify(fmt.Errorf("migrate chat: %w", err))
	}
	return nil
}

// Get returns the tenant's contact id. Errors: ErrNotFound (also for another tenant's).
func (s *Service) Get(ctx context.Context, tenantID, id uuid.UUID) (Contact, error) {
	var c Contact
	err := s.db.NewSelect().Model(&c).Where("c.tenant_id = ?", tenantID).Where("c.id = ?", id).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Contact{}, ErrNotFound
		}
		return Contact{}, apperr.Classify(err)
	}
	return c, attachLinks(ctx, s.db, []*Contact{&c})
}

// GetByChat returns the contact of (botID, chatID), seen at botID (BotID, TelegramChatID,
// Blocked and OptedOut are that link's), with its Bots. Errors: ErrNotFound.
func (s *Service) GetByChat(ctx context.Context, botID uuid.UUID, chatID int64) (Contact, error) {
	var cs []Contact
	err := s.db.NewRaw(`SELECT `+contactAtBot+` FROM contact_bots l JOIN contacts p ON p.id = l.contact_id
WHERE l.bot_id = ? AND l.telegram_chat_id = ?`, botID, chatID).Scan(ctx, &cs)
	if err != nil && !database.IsNoRows(err) {
		return Contact{}, apperr.Classify(err)
	}
	if len(cs) == 0 {
		return Contact{}, ErrNotFound
	}
	return cs[0], attachLinks(ctx, s.db, []*Contact{&cs[0]})
}

// List returns one page of the tenant's contacts, newest first, and the cursor of the next
// page ("" on the last). Errors: page.ErrBadCursor, page.ErrBadLimit.
func (s *Service) List(ctx context.Context, tenantID uuid.UUID, f ListFilter) ([]Contact, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	var cs []Contact
	q := s.db.NewSelect().Model(&cs).Where("c.tenant_id = ?", tenantID)
	if f.BotID != nil {
		q = q.Where("EXISTS (SELECT 1 FROM contact_bots cb WHERE cb.contact_id = c.id AND cb.bot_id = ?)", *f.BotID)
	}
	if f.Tag != "" {
		q = q.Where("c.tags @> ARRAY[?]::text[]", f.Tag)
	}
	if f.Q != "" {
		prefix := likeEscaper.Replace(strings.ToLower(strings.TrimPrefix(f.Q, "@"))) + "%"
		q = q.WhereGroup(" AND ", func(q *bun.SelectQuery) *bun.SelectQuery {
			return q.Where("lower(c.telegram_username) LIKE ?", prefix).
				WhereOr("lower(c.first_name) LIKE ?", prefix).WhereOr("lower(c.last_name) LIKE ?", prefix)
		})
	}
	// blocked / opted_out: a link (to the filtered bot, if any) with that value.
	link, linkArgs := "EXISTS (SELECT 1 FROM contact_bots cb WHERE cb.contact_id = c.id AND ", []any{}
	if f.BotID != nil {
		link, linkArgs = link+"cb.bot_id = ? AND ", []any{*f.BotID}
	}
	if f.Blocked != nil {
		q = q.Where(link+"cb.blocked = ?)", append(linkArgs, *f.Blocked)...)
	}
	if f.OptedOut != nil {
		q = q.Where(link+"cb.opted_out = ?)", append(linkArgs, *f.OptedOut)...)
	}
	if f.ExternalID != "" {
		q = q.Where("c.external_id = ?", f.ExternalID)
	}
	if err := page.Newest(q, "c", after, limit).Scan(ctx); err != nil {
		return nil, "", apperr.Classify(err)
	}
	cs, next := page.Trim(cs, limit, func(c Contact) (time.Time, uuid.UUID) { return c.CreatedAt, c.ID })
	if err := AttachLinks(ctx, s.db, cs); err != nil {
		return nil, "", err
	}
	return cs, next, nil
}

// likeEscaper escapes LIKE's wildcards (PostgreSQL's default escape character is a backslash).
var likeEscaper = strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`)

// RecordInbound stores an inbound message (status "received") on idb.
func (s *Service) RecordInbound(ctx context.Context, idb bun.IDB, m *Message) error {
	m.Direction, m.Kind, m.Status = DirectionInbound, KindInbound, StatusReceived
	if _, err := idb.NewInsert().Model(m).Returning("*").Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("record inbound: %w", err))
	}
	return nil
}

// CreateOutbound stores an outbound message with status "queued" on idb; the caller enqueues
// its send. m.Kind defaults to KindMessage.
func (s *Service) CreateOutbound(ctx context.Context, idb bun.IDB, m *Message) error {
	m.Direction, m.Status = DirectionOutbound, StatusQueued
	if m.Kind == "" {
		m.Kind = KindMessage
	}
	if _, err := idb.NewInsert().Model(m).Returning("*").Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("create outbound: %w", err))
	}
	return nil
}

// GetMessage returns the tenant's message id. Errors: ErrMessageNotFound.
func (s *Service) GetMessage(ctx context.Context, tenantID, id uuid.UUID) (Message, error) {
	var m Message
	err := s.db.NewSelect().Model(&m).Where("m.tenant_id = ?", tenantID).Where("m.id = ?", id).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Message{}, ErrMessageNotFound
		}
		return Message{}, apperr.Classify(err)
	}
	return m, nil
}

// MessageByID returns message id whatever its tenant (worker use). Errors: ErrMessageNotFound.
func (s *Service) MessageByID(ctx context.Context, id uuid.UUID) (Message, error) {
	var m Message
	err := s.db.NewSelect().Model(&m).Where("m.id = ?", id).Scan(ctx)
	if err != nil {
		if database.IsNoRows(err) {
			return Message{}, ErrMessageNotFound
		}
		return Message{}, apperr.Classify(err)
	}
	return m, nil
}

// ClaimSend marks outbound message id "sending" and counts the attempt (attempts+1) before
// the worker calls Telegram, so that a message that may have reached Telegram always has a
// record saying so. It claims a queued message, or one left "sending" since before
// staleBefore (its worker died mid-send: its error then says the previous attempt may have
// been delivered). ok is false when the message is in any other state (sent, failed,
// inbound, or being sent by a live worker). Errors: ErrMessageNotFound, apperr kinds.
func (s *Service) ClaimSend(ctx context.Context, id uuid.UUID, staleBefore time.Time) (m Message, ok bool, err error) {
	err = s.db.NewRaw(`UPDATE messages SET
	status = ?, attempts = attempts + 1, updated_at = now(),
	error = CASE WHEN status = ? THEN ? ELSE error END
WHERE id = ? AND direction = ? AND (status = ? OR (status = ? AND updated_at < ?))
RETURNING *`, StatusSending, StatusSending, ErrTextInterrupted, id, DirectionOutbound,
		StatusQueued, StatusSending, staleBefore).Scan(ctx, &m)
	if err == nil {
		return m, true, nil
	}
	if !database.IsNoRows(err) {
		return Message{}, false, apperr.Classify(fmt.Errorf("claim send: %w", err))
	}
	if _, err := s.MessageByID(ctx, id); err != nil {
		return Message{}, false, err
	}
	return Message{}, false, nil
}

// ClaimSends is ClaimSend for the messages of ids at once: it claims those that are queued,
// or "sending" since before staleBefore, and returns them (in no particular order); the
// others are left alone. Errors: apperr kinds.
func (s *Service) ClaimSends(ctx context.Context, ids []uuid.UUID, staleBefore time.Time) ([]Message, error) {
	var ms []Message
	strs := make([]string, len(ids))
	for i, id := range ids {
		strs[i] = id.String()
	}
	err := s.db.NewRaw(`UPDATE messages SET
	status = ?, attempts = attempts + 1, updated_at = now(),
	error = CASE WHEN status = ? THEN ? ELSE error END
WHERE id = ANY(?::uuid[]) AND direction = ? AND (status = ? OR (status = ? AND updated_at < ?))
RETURNING *`, StatusSending, StatusSending, ErrTextInterrupted, pgdialect.Array(strs), DirectionOutbound,
		StatusQueued, StatusSending, staleBefore).Scan(ctx, &ms)
	if err != nil && !database.IsNoRows(err) {
		return nil, apperr.Classify(fmt.Errorf("claim sends: %w", err))
	}
	return ms, nil
}

// SendResult is the outcome of one claimed ("sending") message, written by FinishSends.
type SendResult struct {
	ID uuid.UUID `bun:"id,type:uuid"`
	// Status is StatusSent, StatusFailed or StatusQueued (to be sent again).
	Status   string `bun:"status"`
	Attempts int    `bun:"attempts"`
	// Error replaces the message's error unless KeepError (a sent message keeps
	// ErrTextInterrupted).
	Error             string `bun:"error"`
	KeepError         bool   `bun:"keep_error"`
	TelegramMessageID *int64 `bun:"telegram_message_id"`
}

// FinishSends writes the results of claimed messages in one statement; a message that is no
// longer "sending" is left alone. Errors: apperr kinds.
func (s *Service) FinishSends(ctx context.Context, rs []SendResult) error {
	return s.FinishSendsOn(ctx, s.db, rs)
}

// FinishSendsOn is FinishSends on idb (a transaction that also emits the sends' events).
func (s *Service) FinishSendsOn(ctx context.Context, idb bun.IDB, rs []SendResult) error {
	if len(rs) == 0 {
		return nil
	}
	_, err := idb.NewUpdate().With("_data", idb.NewValues(&rs)).
		Model((*Message)(nil)).TableExpr("_data").
		Set("status = _data.status").
		Set("attempts = _data.attempts").
		Set("error = CASE WHEN _data.keep_error OR (_data.status = ? AND m.error = ?) THEN m.error ELSE _data.error END", StatusSent, ErrTextInterrupted).
		Set("telegram_message_id = COALESCE(_data.telegram_message_id, m.telegram_message_id)").
		Set("sent_at = CASE WHEN _data.status = ? THEN now() ELSE m.sent_at END", StatusSent).
		Set("updated_at = now()").
		Where("m.id = _data.id").Where("m.status = ?", StatusSending).
		Exec(ctx)
	return apperr.Classify(err)
}

// ErrTextInterrupted is the error of a message whose previous send attempt was interrupted
// (the worker stopped while calling Telegram): it may have been delivered.
const ErrTextInterrupted = "a previous attempt was interrupted while calling Telegram; it may have been delivered"

// StaleOutbound returns up to limit outbound messages in status (StatusQueued or
// StatusSending) last updated before olderThan (the sweep re-enqueues their send task),
// ordered by id after afterID (uuid.Nil: from the start), so that a sweep pages through all
// of them however many there are.
func (s *Service) StaleOutbound(ctx context.Context, status string, olderThan time.Time, afterID uuid.UUID, limit int) ([]uuid.UUID, error) {
	var ids []uuid.UUID
	err := s.db.NewSelect().Model((*Message)(nil)).Column("id").
		Where("status = ?", status).Where("direction = ?", DirectionOutbound).
		Where("updated_at < ?", olderThan).Where("id > ?", afterID).
		OrderExpr("id").Limit(int64(limit)).Scan(ctx, &ids)
	return ids, apperr.Classify(err)
}

// MergeIdentity returns what UpsertFromTelegram stores when an update with identity next
// follows one with identity cur for the same chat: a sender (UserID ≠ 0) replaces the user
// id, username and last name; a non-empty first name or language code replaces the stored
// one; anything else is kept.
func MergeIdentity(cur, next Identity) Identity {
	if next.UserID != 0 {
		cur.UserID, cur.Username, cur.LastName = next.UserID, next.Username, next.LastName
	}
	if next.FirstName != "" {
		cur.FirstName = next.FirstName
	}
	if next.LanguageCode != "" {
		cur.LanguageCode = next.LanguageCode
	}
	cur.ChatID = next.ChatID
	return cur
}

// InsertMessages stores ms (inbound or outbound, as given: direction, kind, status, text...)
// in one INSERT on idb. A message whose ID is uuid.Nil gets a NewMessageID, written back
// into ms. created_at and updated_at are the transaction's now() plus i microseconds for
// ms[i], so that the messages of one transaction keep the slice's order in conversations;
// telegram_message_id and sent_at are NULL.
func (s *Service) InsertMessages(ctx context.Context, idb bun.IDB, ms []Message) error {
	if len(ms) == 0 {
		return nil
	}
	var q strings.Builder
	q.WriteString(`INSERT INTO messages (id, tenant_id, bot_id, contact_id, chat_id, direction, kind, text, parse_mode,
		status, error, attempts, update_id, inbox, media, created_at, updated_at) VALUES `)
	args := make([]any, 0, 17*len(ms))
	for i := range ms {
		m := &ms[i]
		if m.ID == uuid.Nil {
			m.ID = NewMessageID()
		}
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, now() + ? * interval '1 microsecond', now() + ? * interval '1 microsecond')")
		args = append(args, m.ID, m.TenantID, m.BotID, m.ContactID, m.ChatID, m.Direction, m.Kind, m.Text, m.ParseMode,
			m.Status, m.Error, m.Attempts, m.UpdateID, m.Inbox, jsonbOrNil(m.Media), i, i)
	}
	if _, err := idb.NewRaw(q.String(), args...).Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("insert messages: %w", err))
	}
	return nil
}

// NewMessageID returns a new message id: a UUIDv7 (RFC 9562), time-ordered, so that
// messages inserted together land at the right edge of the primary key's B-tree instead of
// on random pages; with a v4 (random) id every insert touches a random leaf page. It falls
// back to a random v4 id if the clock source fails.
func NewMessageID() uuid.UUID {
	if id, err := uuid.NewV7(); err == nil {
		return id
	}
	return uuid.New()
}
