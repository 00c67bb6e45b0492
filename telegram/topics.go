package telegram

// Notification preferences in Telegram (issue 9): /settings answers with an inline keyboard,
// one button per topic of the tenant showing whether the contact is subscribed; pressing a
// button (a callback_query with data "topic:<topic id>") switches that subscription inside
// the batch's transaction, and after the commit the bot answers the query and updates the
// keyboard (editMessageReplyMarkup). Topics and opt-outs are contacts/topics.go.
//
// Cost: nothing for ordinary updates; one query per /settings message and two per topic
// button press, both rare.

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
)

// Texts of /settings and of its buttons.
const (
	// SettingsCommand is the command that shows the notification settings keyboard.
	SettingsCommand = "settings"
	// SettingsReplyText heads the /settings keyboard.
	SettingsReplyText = "Your notifications: tap a topic to switch it on (✅) or off (❌)."
	// SettingsNoTopicsText answers /settings when the tenant has no topics.
	SettingsNoTopicsText = "There are no notification settings to change."
	// TopicCallbackPrefix starts the callback_data of a /settings button: "topic:<topic id>"
	// (42 bytes; Telegram allows 64).
	TopicCallbackPrefix = "topic:"

	topicGoneText = "This topic no longer exists."
)

// markupEdit is an editMessageReplyMarkup to make after the commit.
type markupEdit struct {
	chatID, messageID int64
	keyboard          InlineKeyboardMarkup
}

// topicKeyboard is the /settings keyboard of prefs: one button per topic and row, "✅ name"
// when subscribed, "❌ name" when not.
func topicKeyboard(prefs []contacts.TopicPreference) InlineKeyboardMarkup {
	k := InlineKeyboardMarkup{InlineKeyboard: make([][]InlineKeyboardButton, 0, len(prefs))}
	for _, p := range prefs {
		mark := "❌ "
		if p.Subscribed {
			mark = "✅ "
		}
		k.InlineKeyboard = append(k.InlineKeyboard, []InlineKeyboardButton{{
			Text: mark + p.Topic.Name, CallbackData: TopicCallbackPrefix + p.Topic.ID.String(),
		}})
	}
	return k
}

// settingsReply turns reply out (to a /settings message) into the settings keyboard of its
// contact: text and reply_markup, read on tx. The content is stored by saveReplyContent.
func (s *Service) settingsReply(ctx context.Context, tx bun.Tx, out *contacts.Message) error {
	prefs, err := s.contacts.TopicPreferences(ctx, tx, out.TenantID, *out.ContactID)
	if err != nil {
		return err
	}
	out.ParseMode = ""
	if len(prefs) == 0 {
		out.Text = SettingsNoTopicsText
		return nil
	}
	k := topicKeyboard(prefs)
	out.Text = SettingsReplyText
	out.Content = Content{ReplyMarkup: &k}.json()
	return nil
}

// saveReplyContent stores the content (keyboards) of replies inserted by InsertMessages,
// which writes no content column; one UPDATE per reply, only for /settings replies.
func saveReplyContent(ctx context.Context, tx bun.Tx, ms []contacts.Message) error {
	for _, m := range ms {
		if len(m.Content) == 0 {
			continue
		}
		if _, err := tx.NewRaw("UPDATE messages SET content = ?::jsonb WHERE id = ?", string(m.Content), m.ID).Exec(ctx); err != nil {
			return apperr.Classify(fmt.Errorf("store settings keyboard: %w", err))
		}
	}
	return nil
}

// isTopicCallback reports whether callback_data is a /settings button's.
func isTopicCallback(data string) bool { return strings.HasPrefix(data, TopicCallbackPrefix) }

// onTopicCallback applies a /settings button press of plan p (contact st) in tx: the
// subscription is switched, and cb gets the answer's text and the keyboard to show now.
func (s *Service) onTopicCallback(ctx context.Context, tx bun.Tx, p *eventPlan, st *contactState, cb *callbackRef) error {
	tenantID, contactID := p.ev.TenantID, st.contact.ID
	topicID, err := uuid.Parse(strings.TrimPrefix(p.cbData, TopicCallbackPrefix))
	cb.text = topicGoneText
	if err == nil {
		name, subscribed, found, err := s.contacts.ToggleTopic(ctx, tx, tenantID, contactID, topicID)
		if err != nil {
			return err
		}
		if found {
			cb.text = "❌ Unsubscribed from " + name
			if subscribed {
				cb.text = "✅ Subscribed to " + name
			}
			s.log.InfoContext(ctx, "telegram: topic subscription changed", "bot_app_id", p.ev.BotID.String(),
				"update_id", p.ev.UpdateID, "chat_id", p.key.chatID, "topic", name, "subscribed", subscribed)
		}
	}
	if p.cbMsgID == 0 {
		return nil
	}
	prefs, err := s.contacts.TopicPreferences(ctx, tx, tenantID, contactID)
	if err != nil {
		return err
	}
	cb.edit = &markupEdit{chatID: p.key.chatID, messageID: p.cbMsgID, keyboard: topicKeyboard(prefs)}
	return nil
}

// finishCallback answers callback query cb after the commit (with cb.text, if any) and
// updates the keyboard of its message (cb.edit). Best effort: failures are logged only.
func (s *Service) finishCallback(ctx context.Context, cb callbackRef, log *slog.Logger) {
	if cb.text == "" && cb.edit == nil {
		s.answerCallback(ctx, cb.bot, cb.id, log)
		return
	}
	api, err := s.apiBotFor(cb.bot)
	if err != nil {
		log.ErrorContext(ctx, "telegram: open bot token", "error", err)
		return
	}
	if _, err := api.AnswerCallbackQueryWithContext(ctx, cb.id, &gotgbot.AnswerCallbackQueryOpts{Text: cb.text}); err != nil {
		log.WarnContext(ctx, "telegram: answerCallbackQuery failed", "error", safeTelegramError(err))
	}
	if cb.edit == nil {
		return
	}
	kb := InlineKeyboardMarkup{InlineKeyboard: cb.edit.keyboard.InlineKeyboard}
	markup := gotgbot.InlineKeyboardMarkup{InlineKeyboard: [][]gotgbot.InlineKeyboardButton{}}
	if w, ok := wireKeyboard(&kb).(*gotgbot.InlineKeyboardMarkup); ok && len(w.InlineKeyboard) > 0 {
		markup = *w
	}
	_, _, err = api.EditMessageReplyMarkupWithContext(ctx, &gotgbot.EditMessageReplyMarkupOpts{
		ChatId: cb.edit.chatID, MessageId: cb.edit.messageID, ReplyMarkup: markup,
	})
	if err != nil && !strings.Contains(err.Error(), "message is not modified") {
		log.WarnContext(ctx, "telegram: editMessageReplyMarkup failed", "error", safeTelegramError(err))
	}
}
