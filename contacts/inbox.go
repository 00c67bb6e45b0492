package contacts

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
)

// Team inbox (issue 9 "Inbox"): a contact's message history (ListThread), and the
// conversations table (one row per contact with inbox activity: ListConversations, read,
// assign, close).
//
// What enters the inbox: inbound messages flagged by their bot's inbox mode (messages.inbox,
// telegram/inbox.go) and agent replies (POST /contacts/{id}/messages/). They move the
// conversation's last_message_at (the order of GET /conversations/); an inbox-flagged
// inbound message also reopens a closed conversation. Broadcasts, automatic replies and
// POST /messages/ sends do not move it (they are not conversation activity). The
// conversation's latest message is the contact's newest inbox-flagged inbound or outbound
// row of messages (automatic replies and POST /messages/ sends included); broadcast sends
// (broadcast_recipients) appear in the thread only.

// Errors of the inbox.
var (
	// ErrConversationNotFound (404): the contact has no conversation yet (no inbox-flagged
	// inbound message nor agent reply), or is unknown or another tenant's.
	ErrConversationNotFound = apperr.NotFound("conversation_not_found", "conversation not found")
	// ErrAPIKeyNameUnknown (422 invalid_field api_key_name): no live API key of the tenant has
	// this name.
	ErrAPIKeyNameUnknown = apperr.Invalid("invalid_field", "api_key_name is not the name of a live API key of this tenant").
				WithDetails(map[string]any{"field": "api_key_name"})
)

// Kind of a thread entry that is a broadcast send (broadcast_recipients), besides the
// message kinds (KindInbound, KindMessage, KindReply).
const KindBroadcast = "broadcast"

// ThreadItem is one entry of a contact's thread: a message, or a broadcast send of the
// contact (BroadcastID set; ID is then the broadcast's id, unique within one contact's
// thread since a broadcast has at most one recipient row per contact).
type ThreadItem struct {
	ID                uuid.UUID
	BroadcastID       *uuid.UUID
	BotID             uuid.UUID
	Direction         string
	Kind              string
	Status            string
	Text              string
	ParseMode         string
	Error             string
	Content           json.RawMessage
	Media             json.RawMessage
	TelegramMessageID *int64
	SentBy            string
	// CreatedAt is the message's created_at; for a broadcast send, the time its final
	// status (sent or failed) was written.
	CreatedAt time.Time
}

// ThreadFilter selects a page of a thread: BotID optional; either a cursor page (Cursor,
// Limit) or, when Page > 0, the 1-based page Page of Limit items (OrbVPN-style paging).
type ThreadFilter struct {
	BotID  *uuid.UUID
	Cursor string
	Limit  int
	Page   int
}

// MaxThreadPage bounds Page (OFFSET paging reads all the rows before the page).
const MaxThreadPage = 10000

// ListThread returns the messages of contact id of the tenant (inbound and outbound) and
// its broadcast sends that are sent or failed, newest first ((created_at, id) DESC), and the
// next cursor ("" on the last page, and always "" with Page paging). Both parts of the
// UNION walk an index from the newest (messages_contact_idx, broadcast_recipients_contact_idx)
// and stop after the page. Errors: ErrNotFound (unknown or another tenant's contact),
// page.ErrBadCursor, page.ErrBadLimit.
func (s *Service) ListThread(ctx context.Context, tenantID, contactID uuid.UUID, f ThreadFilter) ([]ThreadItem, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	if _, err := s.Get(ctx, tenantID, contactID); err != nil {
		return nil, "", err
	}
	offset := 0
	if f.Page > 0 {
		offset, after = (f.Page-1)*limit, nil
	}
	inner := offset + limit + 1
	var mw, bw strings.Builder
	var margs, bargs []any
	if f.BotID != nil {
		mw.WriteString(" AND m.bot_id = ?")
		margs = append(margs, *f.BotID)
		bw.WriteString(" AND b.bot_id = ?")
		bargs = append(bargs, *f.BotID)
	}
	if after != nil {
		mw.WriteString(" AND (m.created_at, m.id) < (?, ?)")
		margs = append(margs, after.At, after.ID)
		bw.WriteString(" AND (r.updated_at, b.id) < (?, ?)")
		bargs = append(bargs, after.At, after.ID)
	}
	q := `SELECT * FROM (
	(SELECT m.id, NULL::uuid AS broadcast_id, m.bot_id, m.direction, m.kind, m.status, m.text, m.parse_mode, m.error,
		m.content, m.media, m.telegram_message_id, m.sent_by, m.created_at
	 FROM messages m WHERE m.contact_id = ? AND m.tenant_id = ?` + mw.String() + `
	 ORDER BY m.created_at DESC, m.id DESC LIMIT ?)
	UNION ALL
	(SELECT b.id, b.id AS broadcast_id, b.bot_id, 'outbound', 'broadcast', r.status, b.message_text, b.parse_mode, r.error,
		b.content, NULL::jsonb, r.telegram_message_id, '', r.updated_at
	 FROM broadcast_recipients r JOIN broadcasts b ON b.id = r.broadcast_id
	 WHERE r.contact_id = ? AND r.status IN ('sent', 'failed') AND b.tenant_id = ?` + bw.String() + `
	 ORDER BY r.updated_at DESC LIMIT ?)
) AS t ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?`
	args := append([]any{contactID, tenantID}, margs...)
	args = append(args, inner, contactID, tenantID)
	args = append(args, bargs...)
	args = append(args, inner, limit+1, offset)
	rows, err := s.db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, "", apperr.Classify(fmt.Errorf("list thread: %w", err))
	}
	defer rows.Close()
	var items []ThreadItem
	for rows.Next() {
		var it ThreadItem
		var content, media []byte
		if err := rows.Scan(&it.ID, &it.BroadcastID, &it.BotID, &it.Direction, &it.Kind, &it.Status, &it.Text, &it.ParseMode,
			&it.Error, &content, &media, &it.TelegramMessageID, &it.SentBy, &it.CreatedAt); err != nil {
			return nil, "", apperr.Classify(fmt.Errorf("scan thread: %w", err))
		}
		it.Content, it.Media = content, media
		items = append(items, it)
	}
	if err := rows.Err(); err != nil {
		return nil, "", apperr.Classify(fmt.Errorf("list thread: %w", err))
	}
	if f.Page > 0 {
		if len(items) > limit {
			items = items[:limit]
		}
		return items, "", nil
	}
	items, next := page.Trim(items, limit, func(it ThreadItem) (time.Time, uuid.UUID) { return it.CreatedAt, it.ID })
	return items, next, nil
}

// Conversation is a contact's inbox state with its latest message and unread count.
type Conversation struct {
	ContactID     uuid.UUID
	BotID         uuid.UUID
	LastMessageAt time.Time
	LastReadAt    time.Time // zero: never read
	AssignedTo    string    // "" unassigned
	ClosedAt      time.Time // zero: open
	// Unread counts the contact's inbox-flagged inbound messages after LastReadAt.
	Unread int
	// Contact names (from the contact).
	FirstName, LastName, TelegramUsername string
	// Latest is the contact's newest inbox-flagged inbound or outbound message; nil if none.
	Latest *Message
}

// Conversation statuses (filter status).
const (
	ConversationOpen   = "open"
	ConversationClosed = "closed"
)

// Status is "closed" while ClosedAt is set, else "open".
func (c Conversation) Status() string {
	if c.ClosedAt.IsZero() {
		return ConversationOpen
	}
	return ConversationClosed
}

// ConversationFilter selects conversations: bot (of the latest activity), assigned API key
// name, status (ConversationOpen, ConversationClosed or ""), a cursor and a limit.
type ConversationFilter struct {
	BotID      *uuid.UUID
	AssignedTo *string
	Status     string
	Cursor     string
	Limit      int
}

// conversationRow scans a conversations row with its contact's names and unread count.
type conversationRow struct {
	ContactID        uuid.UUID `bun:"contact_id"`
	BotID            uuid.UUID `bun:"bot_id"`
	LastMessageAt    time.Time `bun:"last_message_at"`
	LastReadAt       time.Time `bun:"last_read_at,nullzero"`
	AssignedTo       *string   `bun:"assigned_to"`
	ClosedAt         time.Time `bun:"closed_at,nullzero"`
	Unread           int       `bun:"unread"`
	FirstName        string    `bun:"first_name"`
	LastName         string    `bun:"last_name"`
	TelegramUsername string    `bun:"telegram_username"`
}

const conversationSelect = `SELECT cv.contact_id, cv.bot_id, cv.last_message_at, cv.last_read_at, cv.assigned_to, cv.closed_at,
	c.first_name, c.last_name, c.telegram_username,
	(SELECT count(*) FROM messages m WHERE m.contact_id = cv.contact_id AND m.direction = 'inbound' AND m.inbox
	   AND m.created_at > coalesce(cv.last_read_at, '-infinity')) AS unread
FROM conversations cv JOIN contacts c ON c.id = cv.contact_id
WHERE cv.tenant_id = ?`

// ListConversations returns the tenant's conversations by last activity, newest first
// ((last_message_at, contact_id) DESC, conversations_tenant_activity_idx), with unread
// counts (messages_contact_idx: the range after last_read_at) and latest messages (messages_contact_idx, one
// index probe per conversation of the page), and the next cursor.
// Errors: page.ErrBadCursor, page.ErrBadLimit.
func (s *Service) ListConversations(ctx context.Context, tenantID uuid.UUID, f ConversationFilter) ([]Conversation, string, error) {
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	q := conversationSelect
	args := []any{tenantID}
	if f.BotID != nil {
		q += " AND cv.bot_id = ?"
		args = append(args, *f.BotID)
	}
	if f.AssignedTo != nil {
		q += " AND cv.assigned_to = ?"
		args = append(args, *f.AssignedTo)
	}
	switch f.Status {
	case ConversationOpen:
		q += " AND cv.closed_at IS NULL"
	case ConversationClosed:
		q += " AND cv.closed_at IS NOT NULL"
	}
	if after != nil {
		q += " AND (cv.last_message_at, cv.contact_id) < (?, ?)"
		args = append(args, after.At, after.ID)
	}
	q += " ORDER BY cv.last_message_at DESC, cv.contact_id DESC LIMIT ?"
	args = append(args, limit+1)
	var rows []conversationRow
	if err := s.db.NewRaw(q, args...).Scan(ctx, &rows); err != nil && !database.IsNoRows(err) {
		return nil, "", apperr.Classify(fmt.Errorf("list conversations: %w", err))
	}
	rows, next := page.Trim(rows, limit, func(r conversationRow) (time.Time, uuid.UUID) { return r.LastMessageAt, r.ContactID })
	out := make([]Conversation, len(rows))
	ids := make([]uuid.UUID, len(rows))
	for i, r := range rows {
		out[i] = r.conversation()
		ids[i] = r.ContactID
	}
	if len(ids) == 0 {
		return out, next, nil
	}
	var latest []Message
	err = s.db.NewRaw(`SELECT l.* FROM unnest(?::uuid[]) AS cid(id) CROSS JOIN LATERAL (
		SELECT * FROM messages m WHERE m.contact_id = cid.id AND (m.inbox OR m.direction = 'outbound')
		ORDER BY m.created_at DESC LIMIT 1) AS l`, pgdialect.Array(ids)).Scan(ctx, &latest)
	if err != nil && !database.IsNoRows(err) {
		return nil, "", apperr.Classify(fmt.Errorf("latest messages: %w", err))
	}
	byContact := make(map[uuid.UUID]*Message, len(latest))
	for i := range latest {
		if latest[i].ContactID != nil {
			byContact[*latest[i].ContactID] = &latest[i]
		}
	}
	for i := range out {
		out[i].Latest = byContact[out[i].ContactID]
	}
	return out, next, nil
}

func (r conversationRow) conversation() Conversation {
	c := Conversation{ContactID: r.ContactID, BotID: r.BotID, LastMessageAt: r.LastMessageAt, LastReadAt: r.LastReadAt,
		ClosedAt: r.ClosedAt, Unread: r.Unread, FirstName: r.FirstName, LastName: r.LastName, TelegramUsername: r.TelegramUsername}
	if r.AssignedTo != nil {
		c.AssignedTo = *r.AssignedTo
	}
	return c
}

// GetConversation returns the conversation of contact id of the tenant (Latest not set).
// Errors: ErrConversationNotFound.
func (s *Service) GetConversation(ctx context.Context, tenantID, contactID uuid.UUID) (Conversation, error) {
	var rows []conversationRow
	err := s.db.NewRaw(conversationSelect+" AND cv.contact_id = ?", tenantID, contactID).Scan(ctx, &rows)
	if err != nil && !database.IsNoRows(err) {
		return Conversation{}, apperr.Classify(fmt.Errorf("get conversation: %w", err))
	}
	if len(rows) == 0 {
		return Conversation{}, ErrConversationNotFound
	}
	return rows[0].conversation(), nil
}

// updateConversation runs UPDATE conversations SET <set> for the tenant's contact and
// returns the conversation. Errors: ErrConversationNotFound.
func (s *Service) updateConversation(ctx context.Context, tenantID, contactID uuid.UUID, set string, args ...any) (Conversation, error) {
	args = append(args, tenantID, contactID)
	res, err := s.db.NewRaw("UPDATE conversations SET "+set+", updated_at = now() WHERE tenant_id = ? AND contact_id = ?", args...).Exec(ctx)
	if err != nil {
		return Conversation{}, apperr.Classify(fmt.Errorf("update conversation: %w", err))
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return Conversation{}, ErrConversationNotFound
	}
	return s.GetConversation(ctx, tenantID, contactID)
}

// MarkConversationRead marks the conversation read up to now (unread becomes 0).
// Errors: ErrConversationNotFound.
func (s *Service) MarkConversationRead(ctx context.Context, tenantID, contactID uuid.UUID) (Conversation, error) {
	return s.updateConversation(ctx, tenantID, contactID, "last_read_at = now()")
}

// CloseConversation closes the conversation (closed_at = now(), kept when already closed);
// the contact's next inbox-flagged inbound message reopens it. Errors: ErrConversationNotFound.
func (s *Service) CloseConversation(ctx context.Context, tenantID, contactID uuid.UUID) (Conversation, error) {
	return s.updateConversation(ctx, tenantID, contactID, "closed_at = coalesce(closed_at, now())")
}

// AssignConversation assigns the conversation to the tenant's live API key named name, or
// unassigns it when name is nil. Errors: ErrAPIKeyNameUnknown (422), ErrConversationNotFound.
func (s *Service) AssignConversation(ctx context.Context, tenantID, contactID uuid.UUID, name *string) (Conversation, error) {
	if name != nil {
		ok, err := s.db.NewSelect().Table("api_keys").Where("tenant_id = ?", tenantID).Where("name = ?", *name).
			Where("revoked_at IS NULL").Exists(ctx)
		if err != nil {
			return Conversation{}, apperr.Classify(fmt.Errorf("check api key name: %w", err))
		}
		if !ok {
			return Conversation{}, ErrAPIKeyNameUnknown
		}
	}
	return s.updateConversation(ctx, tenantID, contactID, "assigned_to = ?", name)
}

// TouchConversations records the inbox activity of ms (messages just inserted on idb in
// this transaction) in conversations with ONE multi-row INSERT ... ON CONFLICT DO UPDATE:
// for each contact with an inbox-flagged inbound message, last_message_at and
// last_inbound_at become now() (the transaction's time) and a closed conversation is
// reopened. Messages without contact or not flagged cost nothing; no statement at all when
// none is flagged. It is the only inbox work of the inbound hot path (processBatch).
func (s *Service) TouchConversations(ctx context.Context, idb bun.IDB, ms []Message) error {
	type key = uuid.UUID
	seen := map[key]int{}
	var rows []*Message
	for i := range ms {
		m := &ms[i]
		if !m.Inbox || m.ContactID == nil || m.Direction != DirectionInbound {
			continue
		}
		if j, ok := seen[*m.ContactID]; ok {
			rows[j] = m // the latest message of the contact in the batch decides the bot
			continue
		}
		seen[*m.ContactID] = len(rows)
		rows = append(rows, m)
	}
	if len(rows) == 0 {
		return nil
	}
	// One lock order for every batch: two processors touching the same contacts never deadlock.
	slices.SortFunc(rows, func(a, b *Message) int { return bytes.Compare(a.ContactID[:], b.ContactID[:]) })
	var q strings.Builder
	q.WriteString("INSERT INTO conversations (contact_id, tenant_id, bot_id, last_message_at, last_inbound_at) VALUES ")
	args := make([]any, 0, 3*len(rows))
	for i, m := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?, ?, ?, now(), now())")
		args = append(args, *m.ContactID, m.TenantID, m.BotID)
	}
	q.WriteString(` ON CONFLICT (contact_id) DO UPDATE SET bot_id = EXCLUDED.bot_id,
		last_message_at = greatest(conversations.last_message_at, EXCLUDED.last_message_at),
		last_inbound_at = EXCLUDED.last_inbound_at, closed_at = NULL, updated_at = now()`)
	if _, err := idb.NewRaw(q.String(), args...).Exec(ctx); err != nil {
		return apperr.Classify(fmt.Errorf("touch conversations: %w", err))
	}
	return nil
}

// TouchConversationReply records an agent reply to contact id through bot: the
// conversation's last_message_at becomes now() (created if the contact had none) and it is
// marked read up to now (the agent answered what it read). A closed conversation stays
// closed (closing is the agent's decision; only the contact's next message reopens it).
func (s *Service) TouchConversationReply(ctx context.Context, idb bun.IDB, tenantID, contactID, botID uuid.UUID) error {
	_, err := idb.NewRaw(`INSERT INTO conversations (contact_id, tenant_id, bot_id, last_message_at, last_read_at)
		VALUES (?, ?, ?, now(), now())
		ON CONFLICT (contact_id) DO UPDATE SET bot_id = EXCLUDED.bot_id, last_message_at = now(), last_read_at = now(),
		updated_at = now()`, contactID, tenantID, botID).Exec(ctx)
	if err != nil {
		return apperr.Classify(fmt.Errorf("touch conversation: %w", err))
	}
	return nil
}

// jsonbOrNil is b as a jsonb value for a raw INSERT: nil (SQL NULL) when empty, else its
// text (a []byte would be sent as bytea).
func jsonbOrNil(b json.RawMessage) any {
	if len(b) == 0 {
		return nil
	}
	return string(b)
}
