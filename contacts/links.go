package contacts

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/internal/apperr"
)

// Link is a contact's Telegram identity at one bot (table contact_bots): the chat where the
// bot reaches the person, and the person's state at that bot. A contact (a person of the
// tenant) has one link per bot it wrote to; the link is unique on (bot, chat).
type Link struct {
	bun.BaseModel `bun:"table:contact_bots,alias:cb"`

	ContactID uuid.UUID `bun:",pk,type:uuid"`
	TenantID  uuid.UUID `bun:",type:uuid,notnull"`
	BotID     uuid.UUID `bun:",pk,type:uuid"`
	// TelegramChatID is Telegram's chat_id of the chat between the person and the bot (for
	// a private chat, the user's id).
	TelegramChatID int64 `bun:",notnull"`
	// StartedAt is the first update of the chat at this bot; LastInboundAt the latest
	// inbound message (zero: none yet).
	StartedAt     time.Time `bun:",nullzero,notnull,default:now()"`
	LastInboundAt time.Time `bun:",nullzero"`
	// Blocked: the user blocked the bot (Telegram 403 "bot was blocked by the user", or
	// my_chat_member "kicked"); BlockedAt when (zero while not blocked).
	Blocked   bool      `bun:",notnull"`
	BlockedAt time.Time `bun:",nullzero"`
	// OptedOut: the user sent /stop to the bot (/start clears it); OptedOutAt when.
	OptedOut   bool      `bun:",notnull"`
	OptedOutAt time.Time `bun:",nullzero"`
	CreatedAt  time.Time `bun:",nullzero,notnull,default:now()"`
	UpdatedAt  time.Time `bun:",nullzero,notnull,default:now()"`
}

// attachLinks loads the links of cs in one query on idb: each contact's Bots (oldest first)
// and its top-level Blocked/OptedOut flags, those of its link to c.BotID.
func attachLinks(ctx context.Context, idb bun.IDB, cs []*Contact) error {
	if len(cs) == 0 {
		return nil
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID.String()
	}
	var ls []Link
	err := idb.NewSelect().Model(&ls).Where("cb.contact_id = ANY(?::uuid[])", pgdialect.Array(ids)).
		OrderExpr("cb.contact_id, cb.started_at, cb.created_at, cb.bot_id").Scan(ctx)
	if err != nil {
		return apperr.Classify(fmt.Errorf("contact links: %w", err))
	}
	by := make(map[uuid.UUID][]Link, len(cs))
	for _, l := range ls {
		by[l.ContactID] = append(by[l.ContactID], l)
	}
	for _, c := range cs {
		c.Bots = by[c.ID]
		if c.Bots == nil {
			c.Bots = []Link{}
		}
		if l, ok := c.Link(c.BotID); ok {
			c.Blocked, c.BlockedAt, c.OptedOut, c.OptedOutAt = l.Blocked, l.BlockedAt, l.OptedOut, l.OptedOutAt
		}
	}
	return nil
}

// AttachLinks fills the Bots (and the top-level Blocked and OptedOut, those of the link to
// BotID) of cs, read elsewhere, in one query on idb. Errors: apperr kinds.
func AttachLinks(ctx context.Context, idb bun.IDB, cs []Contact) error {
	ps := make([]*Contact, len(cs))
	for i := range cs {
		ps[i] = &cs[i]
	}
	return attachLinks(ctx, idb, ps)
}

// Link returns c's link to botID from c.Bots (filled by Get, GetByChat, List, Update,
// AttachLinks); ok is false when the person never wrote to that bot.
func (c Contact) Link(botID uuid.UUID) (Link, bool) {
	for _, l := range c.Bots {
		if l.BotID == botID {
			return l, true
		}
	}
	return Link{}, false
}

// LatestLink returns the link of c.Bots with the latest inbound message (the oldest link
// when none has one): the bot the person last wrote to. ok is false when c.Bots is empty.
func (c Contact) LatestLink() (Link, bool) {
	if len(c.Bots) == 0 {
		return Link{}, false
	}
	best := c.Bots[0]
	for _, l := range c.Bots[1:] {
		if l.LastInboundAt.After(best.LastInboundAt) {
			best = l
		}
	}
	return best, true
}

// contactAtBot is the column list of a contact seen at one of its bots: the person's
// columns (p.*) with bot_id, telegram_chat_id and the blocked and opted_out flags of its
// link l. It scans into Contact.
const contactAtBot = `p.id, p.tenant_id, l.bot_id, l.telegram_chat_id, p.telegram_user_id, p.telegram_username,
	p.first_name, p.last_name, p.language_code, l.blocked, l.blocked_at, p.last_seen_at, p.created_at, p.updated_at,
	p.tags, p.attributes, l.opted_out, l.opted_out_at, p.external_id, p.email, p.phone`

// TelegramUpsert is one contact refresh of UpsertManyFromTelegram: the contact of
// (BotID, Identity.ChatID) under TenantID, seen at SeenAt. Inbound marks a message from the
// person (it moves the link's last_inbound_at).
type TelegramUpsert struct {
	TenantID uuid.UUID
	BotID    uuid.UUID
	Identity Identity
	SeenAt   time.Time
	Inbound  bool
}

// UpsertManyFromTelegram creates or refreshes, in one statement, the contacts (persons) of
// rows and their links to the rows' bots, and returns each (bot, chat) of rows once as the
// contact seen at that bot: BotID, TelegramChatID, Blocked and OptedOut are the link's.
//
// The person of a row is the tenant's contact with telegram_chat_id = Identity.ChatID (for
// a private chat, the Telegram user: one person across the tenant's bots); a new person's
// bot_id is the row's bot. Identity rules (MergeIdentity): a sender (UserID ≠ 0) replaces the
// user id, username and last name; a non-empty first name or language code replaces the
// stored one; last_seen_at only moves forward. Rows of the same person (and of the same
// link) are merged first in slice order, since one statement cannot update a row twice.
// Persons are written, and so locked, in (tenant, chat) order and links in (bot, chat)
// order, so that concurrent callers cannot deadlock on each other. The result is in (bot,
// chat) order. It runs on idb (a *bun.DB or a bun.Tx). Errors: apperr kinds.
func (s *Service) UpsertManyFromTelegram(ctx context.Context, idb bun.IDB, rows []TelegramUpsert) ([]Contact, error) {
	if len(rows) == 0 {
		return nil, nil
	}
	type personKey struct {
		tenant uuid.UUID
		chat   int64
	}
	type linkKey struct {
		bot  uuid.UUID
		chat int64
	}
	persons := make([]TelegramUpsert, 0, len(rows))
	links := make([]TelegramUpsert, 0, len(rows))
	pAt := make(map[personKey]int, len(rows))
	lAt := make(map[linkKey]int, len(rows))
	for _, r := range rows {
		pk := personKey{r.TenantID, r.Identity.ChatID}
		if i, ok := pAt[pk]; ok {
			m := &persons[i]
			m.Identity = MergeIdentity(m.Identity, r.Identity)
			m.SeenAt = later(m.SeenAt, r.SeenAt)
		} else {
			pAt[pk] = len(persons)
			persons = append(persons, r)
		}
		lk := linkKey{r.BotID, r.Identity.ChatID}
		if i, ok := lAt[lk]; ok {
			m := &links[i]
			m.SeenAt = later(m.SeenAt, r.SeenAt)
			m.Inbound = m.Inbound || r.Inbound
		} else {
			lAt[lk] = len(links)
			links = append(links, r)
		}
	}
	slices.SortFunc(persons, func(a, b TelegramUpsert) int {
		if c := bytes.Compare(a.TenantID[:], b.TenantID[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Identity.ChatID, b.Identity.ChatID)
	})
	slices.SortFunc(links, func(a, b TelegramUpsert) int {
		if c := bytes.Compare(a.BotID[:], b.BotID[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.Identity.ChatID, b.Identity.ChatID)
	})

	var q strings.Builder
	args := make([]any, 0, 9*len(persons)+5*len(links))
	q.WriteString(`WITH p AS (INSERT INTO contacts AS c (tenant_id, bot_id, telegram_chat_id, telegram_user_id,
		telegram_username, first_name, last_name, language_code, last_seen_at) VALUES `)
	for i, r := range persons {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?)")
		id := r.Identity
		args = append(args, r.TenantID, r.BotID, id.ChatID, id.UserID, id.Username, id.FirstName, id.LastName, id.LanguageCode, r.SeenAt)
	}
	q.WriteString(` ON CONFLICT (tenant_id, telegram_chat_id) DO UPDATE SET
		telegram_user_id = CASE WHEN EXCLUDED.telegram_user_id <> 0 THEN EXCLUDED.telegram_user_id ELSE c.telegram_user_id END,
		telegram_username = CASE WHEN EXCLUDED.telegram_user_id <> 0 THEN EXCLUDED.telegram_username ELSE c.telegram_username END,
		first_name = COALESCE(NULLIF(EXCLUDED.first_name, ''), c.first_name),
		last_name = CASE WHEN EXCLUDED.telegram_user_id <> 0 THEN EXCLUDED.last_name ELSE c.last_name END,
		language_code = COALESCE(NULLIF(EXCLUDED.language_code, ''), c.language_code),
		last_seen_at = GREATEST(c.last_seen_at, EXCLUDED.last_seen_at),
		updated_at = now()
		RETURNING c.*),
	v (tenant_id, bot_id, chat_id, seen, inbound) AS (VALUES `)
	for i, r := range links {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?::uuid, ?::uuid, ?::bigint, ?::timestamptz, ?::boolean)")
		args = append(args, r.TenantID, r.BotID, r.Identity.ChatID, r.SeenAt, r.Inbound)
	}
	q.WriteString(`),
	l AS (INSERT INTO contact_bots AS cb (contact_id, tenant_id, bot_id, telegram_chat_id, started_at, last_inbound_at)
		SELECT p.id, v.tenant_id, v.bot_id, v.chat_id, v.seen, CASE WHEN v.inbound THEN v.seen END
		FROM v JOIN p ON p.tenant_id = v.tenant_id AND p.telegram_chat_id = v.chat_id
		ORDER BY v.bot_id, v.chat_id
		ON CONFLICT (bot_id, telegram_chat_id) DO UPDATE SET
		last_inbound_at = GREATEST(cb.last_inbound_at, EXCLUDED.last_inbound_at),
		updated_at = now()
		RETURNING cb.*)
	SELECT ` + contactAtBot + ` FROM l JOIN p ON p.id = l.contact_id`)
	cs := make([]Contact, 0, len(links))
	if err := idb.NewRaw(q.String(), args...).Scan(ctx, &cs); err != nil {
		return nil, apperr.Classify(fmt.Errorf("upsert contacts: %w", err))
	}
	slices.SortFunc(cs, func(a, b Contact) int {
		if c := bytes.Compare(a.BotID[:], b.BotID[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.TelegramChatID, b.TelegramChatID)
	})
	return cs, nil
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// BlockedChange is one change of SetBlockedMany: the new blocked and opted_out flags of the
// contact's link to BotID.
type BlockedChange struct {
	ContactID uuid.UUID
	BotID     uuid.UUID
	Blocked   bool
	OptedOut  bool
}

// SetBlockedMany sets blocked and opted_out of each listed link in one UPDATE, with
// blocked_at (opted_out_at) = now() when the flag becomes set, NULL when it is clear, and
// unchanged when the flag does not change (the caller lists only links whose state
// changed). It returns the number of links updated.
func (s *Service) SetBlockedMany(ctx context.Context, idb bun.IDB, changes []BlockedChange) (int, error) {
	if len(changes) == 0 {
		return 0, nil
	}
	var q strings.Builder
	q.WriteString(`UPDATE contact_bots AS cb SET blocked = v.blocked,
		blocked_at = CASE WHEN NOT v.blocked THEN NULL WHEN cb.blocked THEN cb.blocked_at ELSE now() END,
		opted_out = v.opted_out,
		opted_out_at = CASE WHEN NOT v.opted_out THEN NULL WHEN cb.opted_out THEN cb.opted_out_at ELSE now() END,
		updated_at = now() FROM (VALUES `)
	args := make([]any, 0, 4*len(changes))
	for i, ch := range changes {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?::uuid, ?::uuid, ?::boolean, ?::boolean)")
		args = append(args, ch.ContactID, ch.BotID, ch.Blocked, ch.OptedOut)
	}
	q.WriteString(") AS v (contact_id, bot_id, blocked, opted_out) WHERE cb.contact_id = v.contact_id AND cb.bot_id = v.bot_id")
	res, err := idb.NewRaw(q.String(), args...).Exec(ctx)
	if err != nil {
		return 0, apperr.Classify(fmt.Errorf("set blocked: %w", err))
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}
