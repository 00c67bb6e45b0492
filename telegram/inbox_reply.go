package telegram

import (
	"context"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
)

// Reply sends an agent reply to contact contactID (POST /contacts/{id}/messages/): the
// same path as POST /messages/ (CreateMessage: validation, a queued outbound message of kind
// "message" with sent_by = nm.SentBy, the telegram:send task), then records the reply in
// the contact's conversation (contacts.TouchConversationReply: last activity now, and the
// conversation read up to now: the agent answered what it read). nm.ContactID is set to
// contactID. A failure to record the conversation is logged only: the message is queued.
// Errors: those of CreateMessage.
func (s *Service) Reply(ctx context.Context, tenantID, contactID uuid.UUID, nm NewMessage) (contacts.Message, error) {
	nm.ContactID, nm.ChatID, nm.MessageThreadID = contactID, 0, 0
	m, err := s.CreateMessage(ctx, tenantID, nm)
	if err != nil {
		return contacts.Message{}, err
	}
	if err := s.contacts.TouchConversationReply(ctx, s.db, tenantID, contactID, m.BotID); err != nil {
		s.log.WarnContext(ctx, "telegram: record agent reply in conversation failed", "message_id", m.ID.String(), "error", err)
	}
	return m, nil
}
