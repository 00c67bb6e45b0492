// Package validate is botfleet's one validation vocabulary (CONVENTIONS.md §17): the rules
// for strings, names, free text, parse_mode, ids and enums that every handler and domain
// service applies, and the one field error they return.
//
// Every rule failure is a 422 *apperr.Error with code "invalid_field" and
// Details map[string]any{"field": <JSON field name>}, so that the same mistake gets the same
// answer on every route. Errors of another kind keep their own code (a page cursor:
// internal/page's invalid_cursor; contacts that do not exist: unknown_recipients).
//
// Why the rules exist: PostgreSQL text cannot hold NUL, and bun writes a NUL it is given
// into the SQL text as an error marker, which PostgreSQL reports as a syntax error
// (TECH-NOTES.md pitfall 12); other control characters (ESC, DEL, C1) are never part of a
// name or a message and break terminals and logs that show them. Lengths are counted in
// characters (Unicode code points), as Telegram counts them.
package validate

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/telegram/format"
)

// CodeInvalidField is the error code of every rule failure of this package.
const CodeInvalidField = "invalid_field"

// ErrInvalidField is the sentinel of every field error: errors.Is(err, ErrInvalidField)
// holds for all of them, whatever their field and message.
var ErrInvalidField = apperr.Invalid(CodeInvalidField, "a field is invalid")

// Field returns a 422 invalid_field error for the JSON field field, with the message
// format(args...) and Details {"field": field}.
func Field(field, format string, args ...any) *apperr.Error {
	return apperr.Invalid(CodeInvalidField, fmt.Sprintf(format, args...)).WithDetails(map[string]any{"field": field})
}

// FieldOf returns the details.field of an error made by Field ("" for any other error).
func FieldOf(err error) string {
	var e *apperr.Error
	if !errors.As(err, &e) {
		return ""
	}
	switch d := e.Details.(type) {
	case map[string]any:
		f, _ := d["field"].(string)
		return f
	case map[string]string:
		return d["field"]
	}
	return ""
}

// Limits shared by several resources, in characters.
const (
	// MaxNameLen is the longest name (tenants, bots, broadcasts).
	MaxNameLen = 200
	// MaxTextLen is the longest message text: Telegram's sendMessage accepts 1-4096
	// characters (core.telegram.org/bots/api#sendmessage). The raw text is counted, so a
	// text with markup is checked conservatively.
	MaxTextLen = 4096
)

// controlRune reports whether r is a control character (Unicode category Cc: U+0000-U+001F,
// U+007F-U+009F). allowWhitespace lets tab, line feed and carriage return through.
func controlRune(r rune, allowWhitespace bool) bool {
	if r == '\t' || r == '\n' || r == '\r' {
		return !allowWhitespace
	}
	return r < 0x20 || r >= 0x7f && r <= 0x9f
}

// checkString checks what every string must be: valid UTF-8 and free of control
// characters (tab, LF and CR allowed when multiline). It describes the first problem.
func checkString(s string, multiline bool) (string, bool) {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8", false
	}
	for _, r := range s {
		if r == 0 {
			return "must not contain NUL (U+0000)", false
		}
		if controlRune(r, multiline) {
			if multiline {
				return fmt.Sprintf("must not contain control characters other than tab and newline (found U+%04X)", r), false
			}
			return fmt.Sprintf("must not contain control characters, tabs or newlines (found U+%04X)", r), false
		}
	}
	return "", true
}

// Name checks a required single-line name (tenant, bot, broadcast): leading and trailing
// white space is trimmed, then it must be 1-max characters of valid UTF-8 without control
// characters (no NUL, tab or newline). It returns the trimmed name.
func Name(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", Field(field, "%s is required (1-%d characters)", field, max)
	}
	if msg, ok := checkString(s, false); !ok {
		return "", Field(field, "%s %s", field, msg)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return "", Field(field, "%s must be at most %d characters, not %d", field, max, n)
	}
	return s, nil
}

// Text checks required free text (a message): 1-max characters of valid UTF-8, not blank,
// without control characters other than tab, line feed and carriage return. It is not
// trimmed: the text is sent as written.
func Text(field, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return Field(field, "%s is required and must not be blank (1-%d characters)", field, max)
	}
	if msg, ok := checkString(s, true); !ok {
		return Field(field, "%s %s", field, msg)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return Field(field, "%s must be at most %d characters, not %d", field, max, n)
	}
	return nil
}

// Token checks a required single-line secret or identifier given by the client (a bot
// token): after trimming, 1-max characters without control characters. The message never
// quotes the value.
func Token(field, s string, max int) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", Field(field, "%s is required", field)
	}
	if msg, ok := checkString(s, false); !ok {
		return "", Field(field, "%s %s", field, msg)
	}
	if utf8.RuneCountInString(s) > max {
		return "", Field(field, "%s must be at most %d characters", field, max)
	}
	return s, nil
}

// Enum returns the member of allowed that s equals, ignoring case and surrounding white
// space, in allowed's spelling. An empty allowed value makes the field optional.
func Enum(field, s string, allowed ...string) (string, error) {
	t := strings.TrimSpace(s)
	for _, a := range allowed {
		if strings.EqualFold(t, a) {
			return a, nil
		}
	}
	quoted := make([]string, len(allowed))
	for i, a := range allowed {
		quoted[i] = fmt.Sprintf("%q", a)
	}
	return "", Field(field, "%s must be one of %s", field, strings.Join(quoted, ", "))
}

// Parse modes of Telegram's formatting options (core.telegram.org/bots/api#formatting-options).
const (
	ParseModeNone       = ""
	ParseModeHTML       = "HTML"
	ParseModeMarkdownV2 = "MarkdownV2"
	ParseModeMarkdown   = "Markdown" // legacy, still accepted by Telegram
)

// ParseMode is the one parse_mode rule of messages and broadcasts: "" (plain text), "HTML",
// "MarkdownV2" or "Markdown", case-insensitive (as Telegram accepts them); it returns
// Telegram's spelling.
func ParseMode(field, s string) (string, error) {
	return Enum(field, s, ParseModeNone, ParseModeHTML, ParseModeMarkdownV2, ParseModeMarkdown)
}

// FormattedText checks text written in parseMode (Telegram's spelling, as ParseMode
// returns it; "" is plain text and always passes) against Telegram's formatting rules
// (core.telegram.org/bots/api#formatting-options, package telegram/format), so that a text
// Telegram would refuse with "can't parse entities" is refused when it is created. The
// error is a 422 invalid_field with Details {"field": field, "position": N}, N being the
// 0-based offset in characters (Unicode code points) of the offending character or of the
// start of the entity or tag left unclosed, and a message naming it in Telegram's words,
// e.g. "message_text can't be parsed as MarkdownV2 at character 9: Character '.' is
// reserved and must be escaped with the preceding '\'".
func FormattedText(field, text, parseMode string) error {
	_, err := format.Validate(text, parseMode)
	var fe *format.Error
	if !errors.As(err, &fe) {
		return nil
	}
	return apperr.Invalid(CodeInvalidField, fmt.Sprintf("%s can't be parsed as %s at character %d: %s", field, parseMode, fe.Position, fe.Reason)).
		WithDetails(map[string]any{"field": field, "position": fe.Position})
}

// UUID parses a required id in the canonical form xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx
// (hex, either case). uuid.Parse also takes braces, "urn:uuid:" and no hyphens; ids are
// only ever written one way, so the other forms are refused too.
func UUID(field, s string) (uuid.UUID, error) {
	if s == "" {
		return uuid.Nil, Field(field, "%s is required", field)
	}
	id, ok := ParseUUID(s)
	if !ok {
		return uuid.Nil, Field(field, "%s must be a UUID (xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", field)
	}
	return id, nil
}

// OptionalUUID is UUID for an optional field: "" gives nil.
func OptionalUUID(field, s string) (*uuid.UUID, error) {
	if s == "" {
		return nil, nil
	}
	id, err := UUID(field, s)
	if err != nil {
		return nil, err
	}
	return &id, nil
}

// ParseUUID parses s when it is a UUID in canonical form (36 characters with hyphens).
func ParseUUID(s string) (uuid.UUID, bool) {
	if len(s) != 36 {
		return uuid.Nil, false
	}
	id, err := uuid.Parse(s)
	return id, err == nil
}

// IntRange checks min <= n <= max.
func IntRange(field string, n, min, max int64) error {
	if n < min || n > max {
		return Field(field, "%s must be between %d and %d", field, min, max)
	}
	return nil
}
