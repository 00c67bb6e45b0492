package telegram

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
)

// Types of the chats a bot belongs to (core.telegram.org/bots/api#chat); private chats are
// contacts, not bot chats.
const (
	ChatTypeGroup      = gotgbot.ChatTypeGroup
	ChatTypeSupergroup = gotgbot.ChatTypeSupergroup
	ChatTypeChannel    = gotgbot.ChatTypeChannel
)

// The bot's statuses in a chat (core.telegram.org/bots/api#chatmember). "creator" is listed
// for completeness: a bot cannot create a chat.
const (
	ChatStatusCreator       = "creator"
	ChatStatusAdministrator = "administrator"
	ChatStatusMember        = "member"
	ChatStatusRestricted    = "restricted"
	ChatStatusLeft          = "left"
	ChatStatusKicked        = "kicked"
)

// BotChatTypes and BotChatStatuses are the values the ?type= and ?status= filters of
// ListBotChats accept.
var (
	BotChatTypes    = []string{ChatTypeGroup, ChatTypeSupergroup, ChatTypeChannel}
	BotChatStatuses = []string{ChatStatusCreator, ChatStatusAdministrator, ChatStatusMember, ChatStatusRestricted, ChatStatusLeft, ChatStatusKicked}
)

// ErrBotChatNotFound is CreateMessage's 404 for a chat_id that is not a group, supergroup or
// channel the bot has been added to (no my_chat_member update recorded it).
var ErrBotChatNotFound = apperr.NotFound("chat_not_found", "chat_id is not a group, supergroup or channel of this bot")

// ErrChatNotAvailable is CreateMessage's 422 for a chat the bot cannot post to: it left or
// was removed (status left or kicked), it is restricted without can_send_messages, or the
// chat is a channel where the bot is not an administrator with can_post_messages.
var ErrChatNotAvailable = apperr.Invalid("chat_not_available", "the bot cannot post to this chat: it left it, was removed or lacks the right to post").
	WithDetails(map[string]any{"field": "chat_id"})

// BotChat is a group, supergroup or channel a bot belongs to (or belonged to), as the last
// my_chat_member update about it said (core.telegram.org/bots/api#chatmemberupdated). A
// bot that left or was kicked keeps its row with that status.
type BotChat struct {
	bun.BaseModel `bun:"table:bot_chats,alias:bc"`

	ID       uuid.UUID `bun:",pk,type:uuid,default:gen_random_uuid()"`
	TenantID uuid.UUID `bun:",type:uuid,notnull"`
	BotID    uuid.UUID `bun:",type:uuid,notnull"`
	// ChatID is Telegram's chat id (negative for groups, -100... for supergroups and channels).
	ChatID int64 `bun:",notnull"`
	// Type is group, supergroup or channel.
	Type     string `bun:",notnull"`
	Title    string `bun:",notnull"`
	Username string `bun:",notnull"`
	// IsForum is true for a supergroup with topics (messages may name a message_thread_id).
	IsForum bool `bun:",notnull"`
	// Status is the bot's status: administrator, member, restricted, left or kicked.
	Status string `bun:",notnull"`
	// Rights are the fields of the bot's ChatMemberAdministrator (can_post_messages,
	// can_delete_messages, can_manage_topics, ...) or ChatMemberRestricted
	// (can_send_messages, ..., until_date) object, without user and status; {} otherwise.
	Rights json.RawMessage `bun:",type:jsonb,notnull"`
	// ChangedAt is the date of the my_chat_member update that set the row.
	ChangedAt time.Time `bun:",notnull"`
	CreatedAt time.Time `bun:",nullzero,notnull,default:now()"`
	UpdatedAt time.Time `bun:",nullzero,notnull,default:now()"`
}

// canPost reports whether the bot may send to the chat: a member, administrator or creator,
// or restricted with can_send_messages; in a channel only an administrator with
// can_post_messages (or the creator).
func (c BotChat) canPost() bool {
	var r map[string]any
	_ = json.Unmarshal(c.Rights, &r)
	if c.Type == ChatTypeChannel {
		return c.Status == ChatStatusCreator || (c.Status == ChatStatusAdministrator && r["can_post_messages"] == true)
	}
	switch c.Status {
	case ChatStatusCreator, ChatStatusAdministrator, ChatStatusMember:
		return true
	case ChatStatusRestricted:
		return r["can_send_messages"] == true
	}
	return false
}

// botChatOf is the row a my_chat_member update in a group, supergroup or channel makes, or
// the process_error of the skipped event (another chat type, no new_chat_member, an unknown
// status).
func botChatOf(tenantID, botID uuid.UUID, cm *gotgbot.ChatMemberUpdated) (BotChat, string) {
	if !slices.Contains(BotChatTypes, cm.Chat.Type) {
		return BotChat{}, "skipped: my_chat_member in a " + cm.Chat.Type + " chat is not handled"
	}
	if cm.NewChatMember == nil {
		return BotChat{}, "skipped: my_chat_member without new_chat_member"
	}
	status := cm.NewChatMember.GetStatus()
	if !slices.Contains(BotChatStatuses, status) {
		return BotChat{}, "skipped: my_chat_member status " + status + " is not handled"
	}
	rights := json.RawMessage(`{}`)
	if status == ChatStatusAdministrator || status == ChatStatusRestricted {
		var m map[string]any
		if b, err := json.Marshal(cm.NewChatMember); err == nil && json.Unmarshal(b, &m) == nil {
			delete(m, "user")
			delete(m, "status")
			if b, err := json.Marshal(m); err == nil {
				rights = b
			}
		}
	}
	changed := time.Now()
	if cm.Date > 0 && cm.Date <= maxUpdateDate {
		changed = time.Unix(cm.Date, 0)
	}
	return BotChat{
		TenantID: tenantID, BotID: botID, ChatID: cm.Chat.Id, Type: cm.Chat.Type, Title: cm.Chat.Title,
		Username: cm.Chat.Username, IsForum: cm.Chat.IsForum, Status: status, Rights: rights, ChangedAt: changed.UTC(),
	}, ""
}

// saveBotChats writes the bot chats of a processed batch inside its transaction: one
// multi-row INSERT ... ON CONFLICT (bot_id, chat_id) DO UPDATE for the my_chat_member
// updates in groups, supergroups and channels (several updates of a chat in the batch are
// merged, the latest by update order winning; an update older than the stored one, by its
// date, does not overwrite it), then, for each message announcing a group's migration to a
// supergroup (migrate_to_chat_id, core.telegram.org/bots/api#message), the group's row moves
// to the supergroup's chat id (type supergroup) unless the supergroup has its own row, in
// which case the group's row is removed. plans are sorted by bot and update_id.
func saveBotChats(ctx context.Context, tx bun.Tx, plans []*eventPlan) error {
	type key struct {
		bot  uuid.UUID
		chat int64
	}
	var rows []BotChat
	at := map[key]int{}
	type migration struct {
		tenant, bot uuid.UUID
		from, to    int64
	}
	var migs []migration
	for _, p := range plans {
		if p.botChat != nil {
			k := key{p.botChat.BotID, p.botChat.ChatID}
			if i, ok := at[k]; ok {
				rows[i] = *p.botChat
			} else {
				at[k] = len(rows)
				rows = append(rows, *p.botChat)
			}
		}
		if p.kind == planMessage && p.msg != nil && p.msg.MigrateToChatId != 0 {
			migs = append(migs, migration{p.ev.TenantID, p.ev.BotID, p.msg.Chat.Id, p.msg.MigrateToChatId})
		}
	}
	if len(rows) > 0 {
		var q strings.Builder
		q.WriteString(`INSERT INTO bot_chats AS bc (tenant_id, bot_id, chat_id, type, title, username, is_forum, status, rights, changed_at) VALUES `)
		args := make([]any, 0, 10*len(rows))
		for i, r := range rows {
			if i > 0 {
				q.WriteByte(',')
			}
			q.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?::jsonb, ?)")
			args = append(args, r.TenantID, r.BotID, r.ChatID, r.Type, r.Title, r.Username, r.IsForum, r.Status, string(r.Rights), r.ChangedAt)
		}
		q.WriteString(` ON CONFLICT (bot_id, chat_id) DO UPDATE SET type = EXCLUDED.type, title = EXCLUDED.title,
	username = EXCLUDED.username, is_forum = EXCLUDED.is_forum, status = EXCLUDED.status, rights = EXCLUDED.rights,
	changed_at = EXCLUDED.changed_at, updated_at = now()
WHERE EXCLUDED.changed_at >= bc.changed_at`)
		if _, err := tx.NewRaw(q.String(), args...).Exec(ctx); err != nil {
			return apperr.Classify(fmt.Errorf("save bot chats: %w", err))
		}
	}
	for _, m := range migs {
		if _, err := tx.NewRaw(`DELETE FROM bot_chats WHERE bot_id = ? AND chat_id = ?
	AND EXISTS (SELECT 1 FROM bot_chats WHERE bot_id = ? AND chat_id = ?)`, m.bot, m.from, m.bot, m.to).Exec(ctx); err != nil {
			return apperr.Classify(fmt.Errorf("migrate bot chat: %w", err))
		}
		if _, err := tx.NewRaw(`UPDATE bot_chats SET chat_id = ?, type = ?, updated_at = now() WHERE bot_id = ? AND chat_id = ?`,
			m.to, ChatTypeSupergroup, m.bot, m.from).Exec(ctx); err != nil {
			return apperr.Classify(fmt.Errorf("migrate bot chat: %w", err))
		}
	}
	return nil
}

// BotChatFilter selects a page of a bot's chats: Status and Type ("" = any) are one of
// BotChatStatuses and BotChatTypes; Cursor is a next_cursor ("" = first page); Limit is
// 1-200 (0 = page.DefaultLimit).
type BotChatFilter struct {
	Status string
	Type   string
	Cursor string
	Limit  int
}

// ListBotChats returns one page of the groups, supergroups and channels the tenant's bot
// botID belongs to or belonged to (status left or kicked stay listed), newest first
// (created_at, id), and the cursor of the next page ("" on the last). Errors:
// ErrBotNotFound (404, also another tenant's bot); invalid_field (422) for status and type;
// page.ErrBadCursor, page.ErrBadLimit (422); apperr.ErrUnavailable (503).
func (s *Service) ListBotChats(ctx context.Context, tenantID, botID uuid.UUID, f BotChatFilter) ([]BotChat, string, error) {
	if f.Status != "" && !slices.Contains(BotChatStatuses, f.Status) {
		return nil, "", validate.Field("status", "status must be one of %s", strings.Join(BotChatStatuses, ", "))
	}
	if f.Type != "" && !slices.Contains(BotChatTypes, f.Type) {
		return nil, "", validate.Field("type", "type must be one of %s", strings.Join(BotChatTypes, ", "))
	}
	after, limit, err := page.Parse(f.Cursor, f.Limit)
	if err != nil {
		return nil, "", err
	}
	if _, err := s.GetBot(ctx, tenantID, botID); err != nil {
		return nil, "", err
	}
	chats := []BotChat{}
	q := s.db.NewSelect().Model(&chats).Where("bc.tenant_id = ?", tenantID).Where("bc.bot_id = ?", botID)
	if f.Status != "" {
		q = q.Where("bc.status = ?", f.Status)
	}
	if f.Type != "" {
		q = q.Where("bc.type = ?", f.Type)
	}
	if err := page.Newest(q, "bc", after, limit).Scan(ctx); err != nil {
		return nil, "", apperr.Classify(fmt.Errorf("list bot chats: %w", err))
	}
	chats, next := page.Trim(chats, limit, func(c BotChat) (time.Time, uuid.UUID) { return c.CreatedAt, c.ID })
	return chats, next, nil
}

// botChatForSend returns bot botID's chat chatID if the bot may post to it. Errors:
// ErrBotChatNotFound (404), ErrChatNotAvailable (422), apperr.ErrUnavailable (503).
func (s *Service) botChatForSend(ctx context.Context, botID uuid.UUID, chatID int64) (BotChat, error) {
	var c BotChat
	err := s.db.NewSelect().Model(&c).Where("bc.bot_id = ?", botID).Where("bc.chat_id = ?", chatID).Scan(ctx)
	if database.IsNoRows(err) {
		return BotChat{}, ErrBotChatNotFound
	}
	if err != nil {
		return BotChat{}, apperr.Classify(fmt.Errorf("get bot chat: %w", err))
	}
	if !c.canPost() {
		return BotChat{}, ErrChatNotAvailable
	}
	return c, nil
}

// storedContent is messages.content with the forum topic of a message to a group
// (message_thread_id); Content's fields are inlined.
type storedContent struct {
	Content
	MessageThreadID int64 `json:"message_thread_id,omitempty"`
}

// contentJSON is c with forum topic thread as stored in messages.content (nil for a plain
// text message without a topic).
func contentJSON(c Content, thread int64) json.RawMessage {
	if thread == 0 {
		return c.json()
	}
	b, err := json.Marshal(storedContent{Content: c, MessageThreadID: thread})
	if err != nil {
		return nil
	}
	return b
}

// MessageThreadOf returns the message_thread_id stored in a messages.content (0 for none).
func MessageThreadOf(raw json.RawMessage) int64 {
	if len(raw) == 0 {
		return 0
	}
	var sc storedContent
	_ = json.Unmarshal(raw, &sc)
	return sc.MessageThreadID
}
