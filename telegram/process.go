package telegram

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
)

// Texts of the built-in command replies (see BotCommands).
const (
	// StopReplyText answers /stop.
	StopReplyText = "You will no longer receive messages from us. Send /start to subscribe again."
)

// StartReplyText returns the answer to /start: a greeting by the sender's first name
// ("there" when Telegram gave none) and the bot's name as the tenant registered it.
func StartReplyText(firstName, botName string) string {
	if strings.TrimSpace(firstName) == "" {
		firstName = "there"
	}
	return fmt.Sprintf("Hi %s! 👋 Welcome to %s. Send /help to see what I can do.", firstName, botName)
}

// HelpReplyText returns the answer to /help: one line per entry of BotCommands.
func HelpReplyText() string {
	var b strings.Builder
	b.WriteString("Here is what I can do:")
	for _, c := range BotCommands {
		fmt.Fprintf(&b, "\n/%s - %s", c.Command, c.Description)
	}
	return b.String()
}

// Process errors stored in webhook_events.process_error for events that were skipped or
// failed for good. An event handled normally has "".
const (
	processErrBotDeleted = "bot deleted"
)

// processResult is what must happen after the processing transaction commits.
type processResult struct {
	bot        Bot
	replies    []uuid.UUID // outbound messages to enqueue on telegram:send
	callbackID string      // callback query to answer
}

// HandleUpdate processes one stored webhook event (task TypeUpdate, payload UpdatePayload).
//
// In one transaction it locks the event (SELECT ... FOR UPDATE), returns at once if the event
// is processed already (asynq delivers at least once), and otherwise:
//   - message: upserts the contact of the chat (identity from `from`), records the inbound
//     message (text or caption) and answers the commands of BotCommands: /start greets by
//     first name and unblocks a contact that had opted out, /help lists the commands, /stop
//     blocks the contact (opted out of broadcasts) and confirms. Commands addressed to
//     another bot ("/start@other_bot") and plain text get no reply. Replies are queued
//     outbound messages (kind "reply"), sent by the telegram:send task after the commit:
//     Telegram is never called inside the transaction.
//   - edited_message: upserts the contact.
//   - callback_query: upserts the contact and, after the commit, answers the query
//     (core.telegram.org/bots/api#answercallbackquery; best effort).
//   - my_chat_member in a private chat: new status "kicked" blocks the contact (the user
//     blocked the bot), "member" unblocks it.
//   - anything else is marked processed with a "skipped: ..." process_error.
//
// The event is marked processed (processed_at, process_error) in the same transaction.
// Errors: a bad task payload is asynq.SkipRetry; PostgreSQL connectivity errors are returned
// as is so that asynq retries. Other errors are retried too, and on the task's last attempt
// (or outside asynq) they are recorded as the event's process_error and asynq.SkipRetry is
// returned, so that the sweep does not pick the event up again.
func (s *Service) HandleUpdate(ctx context.Context, t *asynq.Task) error {
	var p UpdatePayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil || p.EventID <= 0 {
		return fmt.Errorf("decode: %w", asynq.SkipRetry)
	}
	log := s.log.With("event_id", p.EventID)
	res, err := s.processEvent(ctx, p.EventID)
	if err != nil {
		if apperr.KindOf(err) == apperr.KindUnavailable || ctx.Err() != nil {
			return fmt.Errorf("process event %d: %w", p.EventID, err)
		}
		retried, ok1 := asynq.GetRetryCount(ctx)
		maxRetry, ok2 := asynq.GetMaxRetry(ctx)
		if ok1 && ok2 && retried < maxRetry {
			return fmt.Errorf("process event %d: %w", p.EventID, err)
		}
		log.Error("telegram: processing failed for good", "error", err)
		if merr := s.markFailed(ctx, p.EventID, err); merr != nil {
			return fmt.Errorf("process event %d: %w (and recording it failed: %v)", p.EventID, err, merr)
		}
		return fmt.Errorf("process event %d: %v: %w", p.EventID, err, asynq.SkipRetry)
	}
	if res == nil {
		return nil
	}
	log = log.With("bot_app_id", res.bot.ID.String())
	for _, id := range res.replies {
		if err := s.enqueueTask(ctx, mustSendTask(id)); err != nil {
			// The message stays queued in PostgreSQL; the sweep enqueues it again.
			log.Warn("telegram: enqueue reply failed; the sweep will retry", "message_id", id.String(), "error", err)
		}
	}
	if res.callbackID != "" {
		s.answerCallback(ctx, res.bot, res.callbackID, log)
	}
	return nil
}

func mustSendTask(id uuid.UUID) *asynq.Task {
	task, err := NewSendTask(id)
	if err != nil { // json.Marshal of a struct with a UUID cannot fail
		panic(err)
	}
	return task
}

// answerCallback answers callback query id so that the user's client stops its progress
// indicator. Best effort: a failure is logged only.
func (s *Service) answerCallback(ctx context.Context, bot Bot, id string, log *slog.Logger) {
	api, err := s.apiBotFor(bot)
	if err != nil {
		log.Error("telegram: open bot token", "error", err)
		return
	}
	if _, err := api.AnswerCallbackQueryWithContext(ctx, id, nil); err != nil {
		log.Warn("telegram: answerCallbackQuery failed", "error", safeTelegramError(err))
	}
}

// markFailed records cause as the process_error of event id and marks it processed.
func (s *Service) markFailed(ctx context.Context, id int64, cause error) error {
	msg := cause.Error()
	if len(msg) > 500 {
		msg = msg[:500]
	}
	_, err := s.db.NewUpdate().Model((*WebhookEvent)(nil)).
		Set("processed_at = now()").Set("process_error = ?", "failed: "+msg).
		Where("id = ?", id).Where("processed_at IS NULL").Exec(context.WithoutCancel(ctx))
	return apperr.Classify(err)
}

// processEvent handles event id in one transaction; see HandleUpdate. A nil result means
// there is nothing to do after the commit.
func (s *Service) processEvent(ctx context.Context, id int64) (*processResult, error) {
	var res *processResult
	err := s.db.RunInTx(ctx, nil, func(ctx context.Context, tx bun.Tx) error {
		res = nil
		var ev WebhookEvent
		err := tx.NewSelect().Model(&ev).Where("e.id = ?", id).For("UPDATE").Scan(ctx)
		if database.IsNoRows(err) {
			s.log.Warn("telegram: event to process does not exist", "event_id", id)
			return nil
		}
		if err != nil {
			return apperr.Classify(fmt.Errorf("lock event: %w", err))
		}
		if !ev.ProcessedAt.IsZero() {
			return nil // processed by an earlier delivery of the task
		}
		bot, err := botByID(ctx, tx, ev.BotID, true)
		if err != nil && !errors.Is(err, ErrBotNotFound) {
			return err
		}
		if errors.Is(err, ErrBotNotFound) || !bot.DeletedAt.IsZero() {
			return markProcessed(ctx, tx, ev.ID, processErrBotDeleted)
		}
		r := &processResult{bot: bot}
		procErr, err := s.dispatch(ctx, tx, ev, bot, r)
		if err != nil {
			return err
		}
		if err := markProcessed(ctx, tx, ev.ID, procErr); err != nil {
			return err
		}
		res = r
		return nil
	})
	if err != nil {
		return nil, apperr.Classify(err)
	}
	return res, nil
}

func markProcessed(ctx context.Context, tx bun.Tx, id int64, procErr string) error {
	_, err := tx.NewUpdate().Model((*WebhookEvent)(nil)).
		Set("processed_at = now()").Set("process_error = ?", procErr).Where("id = ?", id).Exec(ctx)
	if err != nil {
		return apperr.Classify(fmt.Errorf("mark event processed: %w", err))
	}
	return nil
}

// dispatch handles the update of ev inside tx. It returns the process_error to store ("" when
// the update was handled), or an error that aborts the transaction.
func (s *Service) dispatch(ctx context.Context, tx bun.Tx, ev WebhookEvent, bot Bot, r *processResult) (string, error) {
	var u gotgbot.Update
	if err := json.Unmarshal(ev.Payload, &u); err != nil {
		// Permanent: the same bytes will never decode. Keep the raw payload, move on.
		s.log.Warn("telegram: undecodable update", "bot_app_id", bot.ID.String(), "update_id", ev.UpdateID, "error", err)
		return "skipped: cannot decode update: " + err.Error(), nil
	}
	switch {
	case u.Message != nil:
		return "", s.onMessage(ctx, tx, ev, bot, u.Message, r)
	case u.EditedMessage != nil:
		_, err := s.upsertContact(ctx, tx, ev, u.EditedMessage.Chat, u.EditedMessage.From, u.EditedMessage.Date)
		return "", err
	case u.CallbackQuery != nil:
		cq := u.CallbackQuery
		chat := gotgbot.Chat{Id: cq.From.Id, Type: gotgbot.ChatTypePrivate}
		if cq.Message != nil {
			chat = cq.Message.GetChat()
		}
		if _, err := s.upsertContact(ctx, tx, ev, chat, &cq.From, 0); err != nil {
			return "", err
		}
		r.callbackID = cq.Id
		return "", nil
	case u.MyChatMember != nil:
		return s.onMyChatMember(ctx, tx, ev, bot, u.MyChatMember)
	}
	return "skipped: update type " + ev.UpdateType + " is not handled", nil
}

// upsertContact creates or refreshes the contact of chat for ev's bot, with the identity of
// from (may be nil) and last_seen_at = date (unix seconds; 0 = now).
func (s *Service) upsertContact(ctx context.Context, tx bun.Tx, ev WebhookEvent, chat gotgbot.Chat, from *gotgbot.User, date int64) (contacts.Contact, error) {
	id := contacts.Identity{ChatID: chat.Id}
	if from != nil {
		id.UserID, id.Username, id.FirstName, id.LastName, id.LanguageCode =
			from.Id, from.Username, from.FirstName, from.LastName, from.LanguageCode
	}
	seen := time.Now()
	if date > 0 {
		seen = time.Unix(date, 0)
	}
	return s.contacts.UpsertFromTelegram(ctx, tx, ev.TenantID, ev.BotID, id, seen)
}

// onMessage records an inbound message and answers the built-in commands.
func (s *Service) onMessage(ctx context.Context, tx bun.Tx, ev WebhookEvent, bot Bot, msg *gotgbot.Message, r *processResult) error {
	c, err := s.upsertContact(ctx, tx, ev, msg.Chat, msg.From, msg.Date)
	if err != nil {
		return err
	}
	text := msg.Text
	if text == "" {
		text = msg.Caption
	}
	updateID := ev.UpdateID
	in := contacts.Message{TenantID: ev.TenantID, BotID: ev.BotID, ContactID: &c.ID, ChatID: msg.Chat.Id, Text: text, UpdateID: &updateID}
	if err := s.contacts.RecordInbound(ctx, tx, &in); err != nil {
		return err
	}
	cmd, _, ok := parseCommand(msg, bot.Username)
	if !ok {
		return nil
	}
	log := s.log.With("bot_app_id", bot.ID.String(), "update_id", ev.UpdateID, "chat_id", msg.Chat.Id)
	var reply string
	switch cmd {
	case "start":
		if c.Blocked {
			if _, err := s.contacts.SetBlocked(ctx, tx, ev.BotID, msg.Chat.Id, false); err != nil {
				return err
			}
			log.Info("telegram: contact resubscribed with /start")
		}
		firstName := ""
		if msg.From != nil {
			firstName = msg.From.FirstName
		}
		reply = StartReplyText(firstName, bot.Name)
	case "help":
		reply = HelpReplyText()
	case "stop":
		if _, err := s.contacts.SetBlocked(ctx, tx, ev.BotID, msg.Chat.Id, true); err != nil {
			return err
		}
		log.Info("telegram: contact opted out with /stop")
		reply = StopReplyText
	default:
		return nil
	}
	out := contacts.Message{TenantID: ev.TenantID, BotID: ev.BotID, ContactID: &c.ID, ChatID: msg.Chat.Id, Kind: contacts.KindReply, Text: reply}
	if err := s.contacts.CreateOutbound(ctx, tx, &out); err != nil {
		return err
	}
	r.replies = append(r.replies, out.ID)
	return nil
}

// parseCommand returns the command of msg, lower-cased and without its "/" and "@botname"
// suffix, and the rest of the text (a /start deep-link payload, for example). ok is false
// when msg is not a command (no bot_command entity at offset 0) or names another bot
// (core.telegram.org/bots/features#commands).
func parseCommand(msg *gotgbot.Message, botUsername string) (cmd, args string, ok bool) {
	text := msg.Text
	if !strings.HasPrefix(text, "/") {
		return "", "", false
	}
	hasEntity := false
	for _, e := range msg.Entities {
		if e.Type == "bot_command" && e.Offset == 0 {
			hasEntity = true
			break
		}
	}
	if !hasEntity {
		return "", "", false
	}
	token, rest, _ := strings.Cut(text, " ")
	if i := strings.IndexAny(token, "\n\t"); i >= 0 {
		token, rest = token[:i], token[i+1:]+" "+rest
	}
	cmd = token[1:]
	if name, target, found := strings.Cut(cmd, "@"); found {
		if !strings.EqualFold(target, botUsername) {
			return "", "", false
		}
		cmd = name
	}
	if cmd == "" {
		return "", "", false
	}
	return strings.ToLower(cmd), strings.TrimSpace(rest), true
}

// onMyChatMember follows the bot's membership in a private chat: "kicked" means the user
// blocked the bot, "member" that they restarted it (core.telegram.org/bots/api#chatmemberupdated).
func (s *Service) onMyChatMember(ctx context.Context, tx bun.Tx, ev WebhookEvent, bot Bot, cm *gotgbot.ChatMemberUpdated) (string, error) {
	if cm.Chat.Type != gotgbot.ChatTypePrivate {
		return "skipped: my_chat_member in a " + cm.Chat.Type + " chat is not handled", nil
	}
	if cm.NewChatMember == nil {
		return "skipped: my_chat_member without new_chat_member", nil
	}
	var blocked bool
	switch status := cm.NewChatMember.GetStatus(); status {
	case "kicked":
		blocked = true
	case "member":
		blocked = false
	default:
		return "skipped: my_chat_member status " + status + " is not handled", nil
	}
	if _, err := s.upsertContact(ctx, tx, ev, cm.Chat, &cm.From, cm.Date); err != nil {
		return "", err
	}
	if _, err := s.contacts.SetBlocked(ctx, tx, ev.BotID, cm.Chat.Id, blocked); err != nil {
		return "", err
	}
	s.log.Info("telegram: contact membership changed", "bot_app_id", bot.ID.String(), "update_id", ev.UpdateID,
		"chat_id", cm.Chat.Id, "blocked", blocked)
	return "", nil
}
