package telegram

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"unicode/utf8"

	"github.com/PaulSonOfLars/gotgbot/v2"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/textvars"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram/format"
)

// Content limits (core.telegram.org/bots/api#sendphoto, #senddocument,
// #inlinekeyboardmarkup, #inlinekeyboardbutton).
const (
	// MaxCaptionLength is the longest caption of a photo or document, in characters after
	// entity parsing (0-1024).
	MaxCaptionLength = 1024
	// MaxKeyboardButtons is the most buttons of one inline keyboard.
	MaxKeyboardButtons = 100
	// MaxButtonsPerRow is the most buttons of one row of an inline keyboard.
	MaxButtonsPerRow = 8
	// MaxCallbackDataBytes is the longest callback_data, in bytes (1-64).
	MaxCallbackDataBytes = 64
	// MaxButtonTextLength is the longest button text accepted here, in characters (Telegram
	// documents no limit; longer texts are cut by the clients anyway).
	MaxButtonTextLength = 256
	// MaxFileRefLength is the longest photo or document reference (a URL or a file_id).
	MaxFileRefLength = 2048
)

// InlineKeyboardButton is one button of an inline keyboard
// (core.telegram.org/bots/api#inlinekeyboardbutton): Text and exactly one of URL (opened
// when pressed; http(s):// or tg://) and CallbackData (sent back in a callback query,
// 1-64 bytes).
type InlineKeyboardButton struct {
	Text         string `json:"text"`
	URL          string `json:"url,omitempty"`
	CallbackData string `json:"callback_data,omitempty"`
}

// InlineKeyboardMarkup is an inline keyboard (core.telegram.org/bots/api#inlinekeyboardmarkup):
// rows of buttons, at most MaxButtonsPerRow per row and MaxKeyboardButtons in all.
type InlineKeyboardMarkup struct {
	InlineKeyboard [][]InlineKeyboardButton `json:"inline_keyboard"`
}

// Content is what a message carries besides its text and parse mode, in Telegram's names.
// The zero value is a plain text message. It is stored as JSON (broadcasts.content,
// messages.content).
type Content struct {
	// Photo is an http(s) URL Telegram downloads, or the file_id of a photo already on
	// Telegram's servers (core.telegram.org/bots/api#sendphoto). The text is then its caption.
	Photo string `json:"photo,omitempty"`
	// Document is the same for a general file (core.telegram.org/bots/api#senddocument). At
	// most one of Photo and Document.
	Document string `json:"document,omitempty"`
	// ReplyMarkup is an inline keyboard shown under the message; nil for none.
	ReplyMarkup *InlineKeyboardMarkup `json:"reply_markup,omitempty"`
	// DisableNotification sends the message silently.
	DisableNotification bool `json:"disable_notification,omitempty"`
	// ProtectContent protects the message from forwarding and saving.
	ProtectContent bool `json:"protect_content,omitempty"`
	// DisableLinkPreview turns the link preview of a text message off (sent as
	// link_preview_options {"is_disabled": true}); ignored with a photo or document.
	DisableLinkPreview bool `json:"disable_link_preview,omitempty"`
}

// HasMedia reports whether the message is a photo or a document (its text is a caption).
func (c Content) HasMedia() bool { return c.Photo != "" || c.Document != "" }

// Plain reports whether c is a plain text message without options.
func (c Content) Plain() bool {
	return c.Photo == "" && c.Document == "" && c.ReplyMarkup == nil && !c.DisableNotification && !c.ProtectContent && !c.DisableLinkPreview
}

// MaxTextLength returns the limit of the message's text: MaxCaptionLength with a photo or
// document, MaxTextLength otherwise.
func (c Content) MaxTextLength() int {
	if c.HasMedia() {
		return MaxCaptionLength
	}
	return MaxTextLength
}

// fileIDRe is the shape of a Telegram file_id: URL-safe base64 (core.telegram.org/bots/api#file).
var fileIDRe = regexp.MustCompile(`^[A-Za-z0-9_-]{16,512}$`)

// MessageTemplate is a message whose text passed CheckMessage: its parse mode in Telegram's
// spelling, its validated content, and its text parsed as a template (textvars).
type MessageTemplate struct {
	Text      string
	ParseMode string
	Content   Content
	// Template is Text parsed (textvars.Parse); HasVariables tells whether it needs a
	// contact's values to render.
	Template *textvars.Template
}

// CheckMessage is the one content rule set of broadcasts and single messages. textField is
// the JSON name of the text ("message_text", "text"); text is a template (textvars); extra
// names further allowed variables. It checks:
//
//   - parse_mode: "", HTML, MarkdownV2 or Markdown, case-insensitive (validate.ParseMode);
//   - the text: valid UTF-8 without control characters; without photo or document 1-4096
//     characters, not blank; with one it is the caption, 0-1024 characters;
//   - variables: known names only (an unknown one is named with its character position);
//   - formatting: the text rendered with sample values, and with the defaults, must parse in
//     parse_mode (telegram/format; details.position is the template's position) and fit the
//     limit after entity parsing;
//   - photo, document: at most one; an http(s) URL with a host or a file_id
//     ([A-Za-z0-9_-]{16,512}), at most 2048 characters;
//   - reply_markup.inline_keyboard: 1-100 buttons, rows of 1-8, each with a non-empty text
//     and exactly one of url (http://, https:// or tg://) and callback_data (1-64 bytes).
//
// Every failure is a 422 invalid_field with details.field naming the field, e.g.
// "reply_markup.inline_keyboard[1][0].callback_data".
func CheckMessage(textField, text, parseMode string, c Content, extra ...string) (MessageTemplate, error) {
	mode, err := validate.ParseMode("parse_mode", parseMode)
	if err != nil {
		return MessageTemplate{}, err
	}
	if err := checkMedia(c); err != nil {
		return MessageTemplate{}, err
	}
	if err := checkKeyboard(c.ReplyMarkup); err != nil {
		return MessageTemplate{}, err
	}
	limit := c.MaxTextLength()
	if c.HasMedia() {
		if err := validate.OptionalText(textField, text, limit); err != nil {
			return MessageTemplate{}, err
		}
	} else if err := validate.Text(textField, text, limit); err != nil {
		return MessageTemplate{}, err
	}
	tpl, err := textvars.Parse(text, extra...)
	if err != nil {
		var te *textvars.Error
		if errors.As(err, &te) {
			d := map[string]any{"field": textField, "position": te.Position}
			if te.Variable != "" {
				d["variable"] = te.Variable
			}
			return MessageTemplate{}, apperr.Invalid(validate.CodeInvalidField, fmt.Sprintf("%s: %s", textField, te.Error())).WithDetails(d)
		}
		return MessageTemplate{}, validate.Field(textField, "%s: %v", textField, err)
	}
	// The text as sent: with sample values (escaped like real ones) and with the defaults.
	samples := []textvars.Lookup{func(string) (string, bool) { return "Sample", true }}
	if tpl.HasVariables() {
		samples = append(samples, nil)
	}
	for _, lookup := range samples {
		rendered, back := tpl.RenderMapped(mode, lookup)
		n, ferr := format.Validate(rendered, mode)
		var fe *format.Error
		if errors.As(ferr, &fe) {
			pos := utf8.RuneCountInString(text[:min(back(fe.Offset), len(text))])
			return MessageTemplate{}, apperr.Invalid(validate.CodeInvalidField,
				fmt.Sprintf("%s can't be parsed as %s at character %d: %s", textField, mode, pos, fe.Reason)).
				WithDetails(map[string]any{"field": textField, "position": pos})
		}
		if n > limit {
			return MessageTemplate{}, validate.Field(textField, "%s must be at most %d characters after formatting and variables, not %d", textField, limit, n)
		}
	}
	return MessageTemplate{Text: text, ParseMode: mode, Content: c, Template: tpl}, nil
}

// checkMedia checks photo and document.
func checkMedia(c Content) error {
	if c.Photo != "" && c.Document != "" {
		return validate.Field("document", "give at most one of photo and document")
	}
	for _, f := range []struct{ name, v string }{{"photo", c.Photo}, {"document", c.Document}} {
		if f.v == "" {
			continue
		}
		if len(f.v) > MaxFileRefLength {
			return validate.Field(f.name, "%s must be at most %d characters", f.name, MaxFileRefLength)
		}
		if strings.Contains(f.v, "://") {
			u, err := url.Parse(f.v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				return validate.Field(f.name, "%s must be an http(s) URL or a Telegram file_id", f.name)
			}
			continue
		}
		if !fileIDRe.MatchString(f.v) {
			return validate.Field(f.name, "%s must be an http(s) URL or a Telegram file_id (16-512 characters of A-Z, a-z, 0-9, _ and -)", f.name)
		}
	}
	return nil
}

// checkKeyboard checks an inline keyboard (nil passes).
func checkKeyboard(k *InlineKeyboardMarkup) error {
	if k == nil {
		return nil
	}
	const base = "reply_markup.inline_keyboard"
	if len(k.InlineKeyboard) == 0 {
		return validate.Field(base, "%s must have at least one row of buttons", base)
	}
	total := 0
	for i, row := range k.InlineKeyboard {
		rowField := fmt.Sprintf("%s[%d]", base, i)
		if len(row) == 0 {
			return validate.Field(rowField, "%s must have at least one button", rowField)
		}
		if len(row) > MaxButtonsPerRow {
			return validate.Field(rowField, "%s has %d buttons; a row holds at most %d", rowField, len(row), MaxButtonsPerRow)
		}
		total += len(row)
		if total > MaxKeyboardButtons {
			return validate.Field(base, "%s has more than %d buttons", base, MaxKeyboardButtons)
		}
		for j, b := range row {
			f := fmt.Sprintf("%s[%d]", rowField, j)
			if _, err := validate.Name(f+".text", b.Text, MaxButtonTextLength); err != nil {
				return err
			}
			switch {
			case b.URL != "" && b.CallbackData != "":
				return validate.Field(f, "%s must have exactly one of url and callback_data", f)
			case b.URL != "":
				if err := checkButtonURL(f+".url", b.URL); err != nil {
					return err
				}
			case b.CallbackData != "":
				if len(b.CallbackData) > MaxCallbackDataBytes {
					return validate.Field(f+".callback_data", "%s.callback_data must be 1-%d bytes, not %d", f, MaxCallbackDataBytes, len(b.CallbackData))
				}
				if _, err := validate.Token(f+".callback_data", b.CallbackData, MaxCallbackDataBytes); err != nil {
					return err
				}
			default:
				return validate.Field(f, "%s must have exactly one of url and callback_data", f)
			}
		}
	}
	return nil
}

// checkButtonURL checks a button's url: http(s) with a host, or tg://.
func checkButtonURL(field, raw string) error {
	if len(raw) > MaxFileRefLength {
		return validate.Field(field, "%s must be at most %d characters", field, MaxFileRefLength)
	}
	u, err := url.Parse(raw)
	if err == nil {
		switch {
		case (u.Scheme == "http" || u.Scheme == "https") && u.Host != "":
			return nil
		case u.Scheme == "tg" && len(raw) > len("tg://"):
			return nil
		}
	}
	return validate.Field(field, "%s must be an http://, https:// or tg:// URL", field)
}

// RenderFor returns the Outgoing for one recipient: the template rendered with lookup
// (values escaped for the parse mode) and the content. ok is false, with a reason, when the
// rendered text does not fit (over 4096 characters, 1024 for a caption, after entity
// parsing), is empty without a photo or document, or no longer parses: that recipient must
// fail without a call to Telegram.
func (m MessageTemplate) RenderFor(lookup textvars.Lookup) (Outgoing, string) {
	text := m.Template.Render(m.ParseMode, lookup)
	out := Outgoing{Text: text, ParseMode: m.ParseMode, Content: m.Content}
	if !m.Template.HasVariables() {
		return out, ""
	}
	if !m.Content.HasMedia() && strings.TrimSpace(text) == "" {
		return out, "message text is empty after variables"
	}
	n, err := format.Validate(text, m.ParseMode)
	if err != nil {
		return out, "message text can't be parsed after variables: " + err.Error()
	}
	if limit := m.Content.MaxTextLength(); n > limit {
		what := "message text"
		if m.Content.HasMedia() {
			what = "caption"
		}
		return out, fmt.Sprintf("%s is %d characters after variables; at most %d are allowed", what, n, limit)
	}
	return out, ""
}

// ContactLookup returns the textvars.Lookup of a contact's values: first_name, last_name,
// username and attributes.KEY (a string value as it is, a number or bool as its JSON text).
func ContactLookup(firstName, lastName, username string, attributes map[string]json.RawMessage) textvars.Lookup {
	return func(name string) (string, bool) {
		switch name {
		case textvars.VarFirstName:
			return firstName, firstName != ""
		case textvars.VarLastName:
			return lastName, lastName != ""
		case textvars.VarUsername:
			return username, username != ""
		}
		key, ok := strings.CutPrefix(name, textvars.AttributesPrefix)
		if !ok {
			return "", false
		}
		raw, ok := attributes[key]
		if !ok || len(raw) == 0 || string(raw) == "null" {
			return "", false
		}
		if raw[0] == '"' {
			var s string
			if json.Unmarshal(raw, &s) != nil {
				return "", false
			}
			return s, s != ""
		}
		return string(raw), true
	}
}

// wireKeyboard is k in gotgbot's type (nil for nil).
func wireKeyboard(k *InlineKeyboardMarkup) gotgbot.ReplyMarkup {
	if k == nil {
		return nil
	}
	rows := make([][]gotgbot.InlineKeyboardButton, len(k.InlineKeyboard))
	for i, row := range k.InlineKeyboard {
		rows[i] = make([]gotgbot.InlineKeyboardButton, len(row))
		for j, b := range row {
			rows[i][j] = gotgbot.InlineKeyboardButton{Text: b.Text, Url: b.URL, CallbackData: b.CallbackData}
		}
	}
	return &gotgbot.InlineKeyboardMarkup{InlineKeyboard: rows}
}

// disabledLinkPreview is the link_preview_options of Content.DisableLinkPreview.
var disabledLinkPreview = &gotgbot.LinkPreviewOptions{IsDisabled: true}

// json is c as stored in messages.content (nil for a plain text message).
func (c Content) json() json.RawMessage {
	if c.Plain() {
		return nil
	}
	b, err := json.Marshal(c)
	if err != nil {
		return nil
	}
	return b
}

// ContentOf decodes a stored messages.content (nil or invalid: a plain text message).
func ContentOf(raw json.RawMessage) Content {
	var c Content
	if len(raw) > 0 {
		_ = json.Unmarshal(raw, &c)
	}
	return c
}

// outgoingOf is the Outgoing of a stored outbound message.
func outgoingOf(m contacts.Message) Outgoing {
	var sc storedContent // Content and the forum topic (chats.go)
	if len(m.Content) > 0 {
		_ = json.Unmarshal(m.Content, &sc)
	}
	return Outgoing{Text: m.Text, ParseMode: m.ParseMode, Content: sc.Content, MessageThreadID: sc.MessageThreadID}
}
