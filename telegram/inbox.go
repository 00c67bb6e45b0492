package telegram

import (
	"fmt"
	"slices"
	"strings"

	"github.com/uptrace/bun"
	"github.com/uptrace/bun/dialect/pgdialect"

	"github.com/botfleet/botfleet/internal/validate"
)

// Inbox mode per bot (issue 8, after Alibaba's Chat App Message Service "message
// workbench"): the event processor flags each inbound message it stores for the inbox
// (messages.inbox, shown as "inbox" by GET /messages/{id}/) according to the bot's mode:
//   - InboxAll: every inbound message (the default);
//   - InboxKeywords: only a message whose text or caption contains one of the bot's
//     keywords, case-insensitively, as a substring (not only as a whole word: "refund"
//     matches "refunds" and "Refund?", and languages written without spaces match too).
//     Case is folded with Unicode lowercasing (strings.ToLower), so "ÄRGER" matches the
//     keyword "ärger". A message without text or caption (a sticker, a photo without
//     caption) is not flagged. An empty keyword list flags nothing (allowed, so that the
//     mode and the list can be set in either order);
//   - InboxOff: nothing.
//
// The mode is read from the cached Bot (botcache.go): no query per update. A change of
// mode applies to messages processed after it, not to those already stored.
const (
	InboxAll      = "all"
	InboxKeywords = "keywords"
	InboxOff      = "off"
)

// Limits of inbox_keywords.
const (
	// MaxInboxKeywords is the most keywords of a bot.
	MaxInboxKeywords = 100
	// MaxInboxKeywordLen is the longest keyword, in characters (after trimming).
	MaxInboxKeywordLen = 64
)

// validateInboxMode checks an inbox mode (field "inbox_mode"): all, keywords or off,
// case-insensitive; it returns the canonical spelling.
func validateInboxMode(s string) (string, error) {
	return validate.Enum("inbox_mode", s, InboxAll, InboxKeywords, InboxOff)
}

// ValidateInboxKeywords checks a bot's keyword list (field "inbox_keywords"; an error
// names "inbox_keywords[i]" for a bad entry): at most MaxInboxKeywords, each trimmed to
// 1-MaxInboxKeywordLen characters of valid UTF-8 without control characters. It returns
// the keywords lowercased (strings.ToLower), deduplicated, in their first order.
func ValidateInboxKeywords(kws []string) ([]string, error) {
	if len(kws) > MaxInboxKeywords {
		return nil, validate.Field("inbox_keywords", "inbox_keywords has at most %d entries, not %d", MaxInboxKeywords, len(kws))
	}
	out := make([]string, 0, len(kws))
	for i, k := range kws {
		kw, err := validate.Name(fmt.Sprintf("inbox_keywords[%d]", i), k, MaxInboxKeywordLen)
		if err != nil {
			return nil, err
		}
		kw = strings.ToLower(kw)
		if !slices.Contains(out, kw) {
			out = append(out, kw)
		}
	}
	return out, nil
}

// InboxFlag reports whether an inbound message of bot with text (its text, or its caption
// when it has no text) is flagged for the inbox under the bot's inbox mode (see the notes
// above). Keywords are stored lowercased, so only text is lowercased here.
func InboxFlag(bot *Bot, text string) bool {
	if bot == nil {
		return true
	}
	switch bot.InboxMode {
	case InboxOff:
		return false
	case InboxKeywords:
		if text == "" || len(bot.InboxKeywords) == 0 {
			return false
		}
		lower := strings.ToLower(text)
		for _, kw := range bot.InboxKeywords {
			if strings.Contains(lower, kw) {
				return true
			}
		}
		return false
	default: // InboxAll, "" (a Bot built by hand)
		return true
	}
}

// validateInbox checks u's inbox fields and replaces them with their canonical values.
func (u *UpdateBot) validateInbox() error {
	if u.InboxMode != nil {
		mode, err := validateInboxMode(*u.InboxMode)
		if err != nil {
			return err
		}
		u.InboxMode = &mode
	}
	if u.InboxKeywords != nil {
		kws, err := ValidateInboxKeywords(*u.InboxKeywords)
		if err != nil {
			return err
		}
		u.InboxKeywords = &kws
	}
	return nil
}

// applyInbox adds u's inbox fields (validated) and the editor (updated_by) to the UPDATE
// of a bot q.
func (u *UpdateBot) applyInbox(q *bun.UpdateQuery) *bun.UpdateQuery {
	if u.InboxMode != nil {
		q = q.Set("inbox_mode = ?", *u.InboxMode)
	}
	if u.InboxKeywords != nil {
		q = q.Set("inbox_keywords = ?", pgdialect.Array(*u.InboxKeywords))
	}
	if u.Editor != "" {
		q = q.Set("updated_by = ?", u.Editor)
	}
	return q
}
