package telegram

import (
	"context"

	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
)

// Event emission of the inbound and send paths (issue 9, "Event callbacks to the tenant").
// Both paths are benchmarked: a tenant with no endpoint subscribed to an event type costs
// a cached map lookup per event (callbacks.Service.Wants), no query and no allocation of
// the event's data.

// Callbacks returns the event callbacks service (Deps.Callbacks or the default one).
func (s *Service) Callbacks() *callbacks.Service { return s.cb }

// MessageReceivedData is the data of message.received.
type MessageReceivedData struct {
	MessageID uuid.UUID `json:"message_id"`
	BotAppID  uuid.UUID `json:"bot_app_id"`
	ContactID uuid.UUID `json:"contact_id"`
	ChatID    int64     `json:"chat_id"`
	UpdateID  int64     `json:"update_id"`
	Text      string    `json:"text"`
}

// ContactEventData is the data of contact.created, contact.blocked and contact.opted_out.
type ContactEventData struct {
	ContactID        uuid.UUID `json:"contact_id"`
	BotAppID         uuid.UUID `json:"bot_app_id"`
	ChatID           int64     `json:"chat_id"`
	TelegramUserID   int64     `json:"telegram_user_id"`
	TelegramUsername string    `json:"telegram_username"`
	FirstName        string    `json:"first_name"`
	LastName         string    `json:"last_name"`
}

// MessageOutcomeData is the data of message.sent and message.failed.
type MessageOutcomeData struct {
	MessageID uuid.UUID  `json:"message_id"`
	BotAppID  uuid.UUID  `json:"bot_app_id"`
	ContactID *uuid.UUID `json:"contact_id"`
	ChatID    int64      `json:"chat_id"`
	// Kind is "message" (POST /messages/) or "reply" (a command reply).
	Kind              string `json:"kind"`
	Status            string `json:"status"`
	TelegramMessageID *int64 `json:"telegram_message_id,omitempty"`
	Error             string `json:"error,omitempty"`
	Attempts          int    `json:"attempts"`
}

// wantsCache memoises callbacks.Service.Wants for one batch.
type wantsCache struct {
	cb  *callbacks.Service
	m   map[wantsKey]bool
	err error
}

type wantsKey struct {
	tenant uuid.UUID
	typ    string
}

func (w *wantsCache) wants(ctx context.Context, tenantID uuid.UUID, typ string) bool {
	if w.err != nil {
		return false
	}
	k := wantsKey{tenantID, typ}
	if v, ok := w.m[k]; ok {
		return v
	}
	v, err := w.cb.Wants(ctx, tenantID, typ)
	if err != nil {
		w.err = err
		return false
	}
	if w.m == nil {
		w.m = map[wantsKey]bool{}
	}
	w.m[k] = v
	return v
}

// isNewContact reports whether c was inserted (not updated) by the upsert that returned it:
// an INSERT sets created_at and updated_at to the same now(), an ON CONFLICT update sets
// updated_at to now() after an earlier created_at. (Reads contacts columns only.)
func isNewContact(c contacts.Contact) bool { return c.CreatedAt.Equal(c.UpdatedAt) }

// emitBatchEvents emits, inside processBatch's transaction, message.received for the
// inbound messages of msgs (stored, so with ids), contact.created for contacts the batch
// inserted, and contact.blocked / contact.opted_out for contacts whose flag the batch set.
// One INSERT for the whole batch, none when no tenant of the batch subscribed.
func (s *Service) emitBatchEvents(ctx context.Context, tx bun.Tx, msgs []contacts.Message, cs []contacts.Contact, states map[chatKey]*contactState) error {
	w := wantsCache{cb: s.cb}
	var evs []callbacks.Event
	for _, c := range cs {
		st := states[chatKey{c.BotID, c.TelegramChatID}]
		created := isNewContact(c)
		blocked := st != nil && st.blocked && !c.Blocked
		optedOut := st != nil && st.optedOut && !c.OptedOut
		if !created && !blocked && !optedOut {
			continue
		}
		data := func() ContactEventData {
			return ContactEventData{ContactID: c.ID, BotAppID: c.BotID, ChatID: c.TelegramChatID, TelegramUserID: c.TelegramUserID,
				TelegramUsername: c.TelegramUsername, FirstName: c.FirstName, LastName: c.LastName}
		}
		if created && w.wants(ctx, c.TenantID, callbacks.EventContactCreated) {
			evs = append(evs, callbacks.Event{TenantID: c.TenantID, Type: callbacks.EventContactCreated, Data: data()})
		}
		if blocked && w.wants(ctx, c.TenantID, callbacks.EventContactBlocked) {
			evs = append(evs, callbacks.Event{TenantID: c.TenantID, Type: callbacks.EventContactBlocked, Data: data()})
		}
		if optedOut && w.wants(ctx, c.TenantID, callbacks.EventContactOptedOut) {
			evs = append(evs, callbacks.Event{TenantID: c.TenantID, Type: callbacks.EventContactOptedOut, Data: data()})
		}
	}
	for i := range msgs {
		m := &msgs[i]
		if m.Direction != contacts.DirectionInbound || !w.wants(ctx, m.TenantID, callbacks.EventMessageReceived) {
			continue
		}
		d := MessageReceivedData{MessageID: m.ID, BotAppID: m.BotID, ChatID: m.ChatID, Text: m.Text}
		if m.ContactID != nil {
			d.ContactID = *m.ContactID
		}
		if m.UpdateID != nil {
			d.UpdateID = *m.UpdateID
		}
		evs = append(evs, callbacks.Event{TenantID: m.TenantID, Type: callbacks.EventMessageReceived, Data: d})
	}
	if w.err != nil {
		return w.err
	}
	return s.cb.EmitMany(ctx, tx, evs)
}

// finishSends records the results rs of the claimed messages ms (contacts.FinishSends) and
// emits message.sent / message.failed for those that ended sent or failed, in the same
// transaction. When no tenant of ms subscribed to either, it is FinishSends alone.
func (s *Service) finishSends(ctx context.Context, ms []contacts.Message, rs []contacts.SendResult) error {
	if len(rs) == 0 {
		return nil
	}
	w := wantsCache{cb: s.cb}
	var last uuid.UUID
	wanted := false
	for i := range ms {
		if t := ms[i].TenantID; t != last || i == 0 {
			last = t
			if w.wants(ctx, t, callbacks.EventMessageSent) || w.wants(ctx, t, callbacks.EventMessageFailed) {
				wanted = true
				break
			}
		}
	}
	if w.err != nil {
		return w.err
	}
	if !wanted {
		return s.contacts.FinishSends(ctx, rs)
	}
	byID := make(map[uuid.UUID]*contacts.Message, len(ms))
	for i := range ms {
		byID[ms[i].ID] = &ms[i]
	}
	var evs []callbacks.Event
	for _, r := range rs {
		m := byID[r.ID]
		if m == nil {
			continue
		}
		typ := ""
		switch r.Status {
		case contacts.StatusSent:
			typ = callbacks.EventMessageSent
		case contacts.StatusFailed:
			typ = callbacks.EventMessageFailed
		default:
			continue
		}
		if !w.wants(ctx, m.TenantID, typ) {
			continue
		}
		evs = append(evs, callbacks.Event{TenantID: m.TenantID, Type: typ, Data: MessageOutcomeData{
			MessageID: m.ID, BotAppID: m.BotID, ContactID: m.ContactID, ChatID: m.ChatID, Kind: m.Kind,
			Status: r.Status, TelegramMessageID: r.TelegramMessageID, Error: r.Error, Attempts: r.Attempts,
		}})
	}
	if w.err != nil {
		return w.err
	}
	return apperr.Classify(s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		if err := s.contacts.FinishSendsOn(ctx, tx, rs); err != nil {
			return err
		}
		return s.cb.EmitMany(ctx, tx, evs)
	}))
}

// markBlocked marks the contact of (bot, chatID) blocked after Telegram's 403 ("bot was
// blocked by the user") and, when the tenant subscribed, emits contact.blocked in the same
// transaction if the contact was not blocked yet. It reports whether it changed a contact.
func (s *Service) markBlocked(ctx context.Context, bot Bot, chatID int64) (bool, error) {
	wants, err := s.cb.Wants(ctx, bot.TenantID, callbacks.EventContactBlocked)
	if err != nil || !wants {
		return s.contacts.SetBlocked(ctx, s.db, bot.ID, chatID, true)
	}
	changed := false
	err = s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		var err error
		if changed, err = s.contacts.SetBlocked(ctx, tx, bot.ID, chatID, true); err != nil || !changed {
			return err
		}
		c, err := s.contacts.GetByChat(ctx, bot.ID, chatID) // its id and identity (unchanged by the update)
		if err != nil {
			return err
		}
		return s.cb.Emit(ctx, tx, bot.TenantID, callbacks.EventContactBlocked, ContactEventData{
			ContactID: c.ID, BotAppID: bot.ID, ChatID: chatID, TelegramUserID: c.TelegramUserID,
			TelegramUsername: c.TelegramUsername, FirstName: c.FirstName, LastName: c.LastName,
		})
	})
	return changed, apperr.Classify(err)
}
