package telegram

import (
	"context"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/validate"
)

// createChatMessage is CreateMessage to a group, supergroup or channel (nm.ChatID) of the
// tenant's bot nm.BotID: the chat must be in bot_chats with a status that lets the bot post
// (BotChat.canPost); nm.MessageThreadID (a forum topic) needs a forum supergroup. The
// message has no contact; variables render with their defaults (there is no contact's
// values); the topic is stored in messages.content (storedContent) and sent as
// message_thread_id by the one send path (HandleSend, HandleSendMany).
func (s *Service) createChatMessage(ctx context.Context, tenantID uuid.UUID, nm NewMessage, tpl MessageTemplate) (contacts.Message, error) {
	if nm.BotID == uuid.Nil {
		return contacts.Message{}, validate.Field("bot_app_id", "bot_app_id is required with chat_id: a group belongs to one bot")
	}
	if nm.MessageThreadID < 0 {
		return contacts.Message{}, validate.Field("message_thread_id", "message_thread_id must be a positive forum topic id")
	}
	bot, err := s.GetBot(ctx, tenantID, nm.BotID)
	if err != nil {
		return contacts.Message{}, err
	}
	chat, err := s.botChatForSend(ctx, bot.ID, nm.ChatID)
	if err != nil {
		return contacts.Message{}, err
	}
	if nm.MessageThreadID != 0 && !chat.IsForum {
		return contacts.Message{}, validate.Field("message_thread_id", "message_thread_id is only allowed for a forum supergroup (is_forum)")
	}
	out, reason := tpl.RenderFor(ContactLookup("", "", "", nil))
	if reason != "" {
		return contacts.Message{}, validate.Field("text", "text: %s", reason)
	}
	m := contacts.Message{
		TenantID: tenantID, BotID: bot.ID, ChatID: chat.ChatID,
		Kind: contacts.KindMessage, Text: out.Text, ParseMode: tpl.ParseMode, Content: contentJSON(nm.Content, nm.MessageThreadID),
		SentBy: nm.SentBy,
	}
	if err := s.contacts.CreateOutbound(ctx, s.db, &m); err != nil {
		return contacts.Message{}, err
	}
	s.enqueueSend(ctx, m.ID)
	return m, nil
}
