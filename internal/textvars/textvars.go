// Package textvars parses and renders message templates with personalisation variables:
// `{first_name}`, `{last_name}`, `{username}` and `{attributes.KEY}` (KEY: a contact
// attribute key, [A-Za-z0-9_]{1,64}), each optionally with a default written after a bar,
// `{first_name|there}`, used when the value is missing or empty. `{{` writes a literal `{`
// and `}}` a literal `}`; a `}` that closes nothing is kept as it is. Callers may allow
// extra variable names (Parse's extra).
//
// A default is template text: it is inserted as written (in the template's parse mode), while
// a contact's value is escaped for the parse mode (Escape) so that a first_name such as "<b>"
// or "a_b" never breaks the message's formatting.
//
// The package has no dependencies on the rest of botfleet: broadcasts use it now and reply
// templates can later.
package textvars

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// Built-in variable names. A variable "attributes.KEY" names the contact attribute KEY.
const (
	VarFirstName = "first_name"
	VarLastName  = "last_name"
	VarUsername  = "username"
	// AttributesPrefix starts a variable naming a contact attribute.
	AttributesPrefix = "attributes."
)

// builtin are the variables every template may use (besides attributes.KEY).
var builtin = []string{VarFirstName, VarLastName, VarUsername}

// attrKeyRe is a contact attribute key (contacts.validKey: [A-Za-z0-9_]{1,64}).
var attrKeyRe = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)

// Error is a template that cannot be parsed.
type Error struct {
	// Variable is the variable's name as written ("" when the problem is not a name, e.g.
	// an unclosed brace).
	Variable string
	// Reason describes the problem, e.g. `unknown variable "frist_name"`.
	Reason string
	// Offset is the 0-based byte offset of the '{' that opens the variable.
	Offset int
	// Position is Offset counted in characters (Unicode code points), 0-based.
	Position int
}

// Error returns "<Reason> at character <Position>".
func (e *Error) Error() string { return fmt.Sprintf("%s at character %d", e.Reason, e.Position) }

// part is a piece of a Template: literal text, or a variable.
type part struct {
	lit    string // literal text (isVar false)
	name   string // variable name (isVar true)
	def    string // default (template text)
	isVar  bool
	tplOff int // byte offset in the template where the part starts
	tplLen int // bytes of the template the part spans
}

// Template is a parsed template. The zero value renders "".
type Template struct {
	parts []part
	names []string // distinct variable names, in order of first use
}

// Parse parses text. Allowed names are the built-in ones, attributes.KEY, and extra.
// Errors are *Error: an unknown variable (named, with its position), an empty name, a '{'
// inside a variable, or a '{' never closed.
func Parse(text string, extra ...string) (*Template, error) {
	t := &Template{}
	var lit strings.Builder
	litStart := 0
	flush := func(end int) {
		if lit.Len() > 0 {
			t.parts = append(t.parts, part{lit: lit.String(), tplOff: litStart, tplLen: end - litStart})
			lit.Reset()
		}
	}
	i := 0
	for i < len(text) {
		c := text[i]
		switch {
		case c == '{' && i+1 < len(text) && text[i+1] == '{':
			// An escaped brace is its own part so that offsets map back exactly.
			flush(i)
			t.parts = append(t.parts, part{lit: "{", tplOff: i, tplLen: 2})
			i += 2
			litStart = i
		case c == '}' && i+1 < len(text) && text[i+1] == '}':
			flush(i)
			t.parts = append(t.parts, part{lit: "}", tplOff: i, tplLen: 2})
			i += 2
			litStart = i
		case c == '{':
			end := strings.IndexByte(text[i+1:], '}')
			if end < 0 {
				return nil, fail(text, i, "", "'{' is not closed: write {{ for a literal '{'")
			}
			body := text[i+1 : i+1+end]
			if strings.IndexByte(body, '{') >= 0 {
				return nil, fail(text, i, "", "'{' is not closed: write {{ for a literal '{'")
			}
			name, def, _ := strings.Cut(body, "|")
			name = strings.TrimSpace(name)
			if name == "" {
				return nil, fail(text, i, "", "empty variable name: write {{ for a literal '{'")
			}
			if !allowed(name, extra) {
				return nil, fail(text, i, name, fmt.Sprintf("unknown variable %q (known: first_name, last_name, username, attributes.KEY%s)", name, extraList(extra)))
			}
			flush(i)
			t.parts = append(t.parts, part{name: name, def: def, isVar: true, tplOff: i, tplLen: end + 2})
			if !slices.Contains(t.names, name) {
				t.names = append(t.names, name)
			}
			i += end + 2
			litStart = i
		default:
			lit.WriteByte(c)
			i++
		}
	}
	flush(len(text))
	return t, nil
}

// fail returns the *Error at byte offset off of text.
func fail(text string, off int, name, reason string) *Error {
	return &Error{Variable: name, Reason: reason, Offset: off, Position: utf8.RuneCountInString(text[:off])}
}

// allowed reports whether name is a built-in variable, attributes.KEY or one of extra.
func allowed(name string, extra []string) bool {
	if slices.Contains(builtin, name) || slices.Contains(extra, name) {
		return true
	}
	if key, ok := strings.CutPrefix(name, AttributesPrefix); ok {
		return attrKeyRe.MatchString(key)
	}
	return false
}

func extraList(extra []string) string {
	if len(extra) == 0 {
		return ""
	}
	return ", " + strings.Join(extra, ", ")
}

// HasVariables reports whether the template uses at least one variable.
func (t *Template) HasVariables() bool { return t != nil && len(t.names) > 0 }

// Names returns the distinct variable names used, in order of first use.
func (t *Template) Names() []string {
	if t == nil {
		return nil
	}
	return slices.Clone(t.names)
}

// Lookup returns the value of a variable and whether it is set; an empty value counts as
// missing (the default is used).
type Lookup func(name string) (string, bool)

// Render returns the text with each variable replaced: by its value from lookup escaped for
// parseMode (Escape), or, when lookup has no (or an empty) value, by its default as written
// ("" without a default). A nil lookup renders every variable with its default.
func (t *Template) Render(parseMode string, lookup Lookup) string {
	out, _ := t.render(parseMode, lookup, false)
	return out
}

// RenderMapped is Render that also returns a function mapping a byte offset of the rendered
// text back to the byte offset in the template where that text came from (the opening '{'
// of a variable for text inside a substituted value), so that an error found in a rendered
// sample can name the template's position.
func (t *Template) RenderMapped(parseMode string, lookup Lookup) (string, func(int) int) {
	return t.render(parseMode, lookup, true)
}

func (t *Template) render(parseMode string, lookup Lookup, mapped bool) (string, func(int) int) {
	if t == nil {
		return "", func(int) int { return 0 }
	}
	if len(t.parts) == 1 && !t.parts[0].isVar && !mapped {
		return t.parts[0].lit, nil
	}
	var b strings.Builder
	type span struct {
		outOff, tplOff int
		isVar          bool
	}
	var spans []span
	for _, p := range t.parts {
		if mapped {
			spans = append(spans, span{outOff: b.Len(), tplOff: p.tplOff, isVar: p.isVar || p.tplLen != len(p.lit)})
		}
		if !p.isVar {
			b.WriteString(p.lit)
			continue
		}
		v, ok := "", false
		if lookup != nil {
			v, ok = lookup(p.name)
		}
		if ok && v != "" {
			b.WriteString(Escape(v, parseMode))
		} else {
			b.WriteString(p.def)
		}
	}
	out := b.String()
	if !mapped {
		return out, nil
	}
	return out, func(off int) int {
		for k := len(spans) - 1; k >= 0; k-- {
			if off >= spans[k].outOff {
				if spans[k].isVar {
					return spans[k].tplOff
				}
				return spans[k].tplOff + off - spans[k].outOff
			}
		}
		return 0
	}
}

// markdownV2Reserved are the characters MarkdownV2 requires to be escaped with '\'
// (core.telegram.org/bots/api#markdownv2-style), plus '\' itself.
const markdownV2Reserved = "_*[]()~`>#+-=|{}.!\\"

// markdownReserved are the characters the legacy Markdown mode lets be escaped with '\'
// outside entities (core.telegram.org/bots/api#markdown-style).
const markdownReserved = "_*`["

// Escape returns value escaped for parseMode (Telegram's spelling): HTML replaces &, <, >
// and " with entities; MarkdownV2 prefixes every reserved character (and '\') with '\';
// Markdown prefixes _ * ` [ with '\'; any other mode returns value unchanged.
func Escape(value, parseMode string) string {
	var set string
	switch parseMode {
	case "HTML":
		if !strings.ContainsAny(value, `&<>"`) {
			return value
		}
		return htmlEscaper.Replace(value)
	case "MarkdownV2":
		set = markdownV2Reserved
	case "Markdown":
		set = markdownReserved
	default:
		return value
	}
	if !strings.ContainsAny(value, set) {
		return value
	}
	var b strings.Builder
	b.Grow(len(value) + 8)
	for _, r := range value {
		if r < 0x80 && strings.ContainsRune(set, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;")
