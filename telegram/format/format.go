// Package format checks message text written in one of Telegram's parse modes (HTML,
// MarkdownV2 and the legacy Markdown) against Telegram's formatting rules
// (core.telegram.org/bots/api#formatting-options), so that a text Telegram would refuse
// with "Bad Request: can't parse entities: ..." is refused when it is created, not once
// per recipient when it is sent.
//
// The rules follow the Bot API documentation and, where the documentation is silent, the
// behaviour of Telegram's own parser (tdlib's parse_html, parse_markdown_v2 and
// parse_markdown, whose error messages Reason reproduces). Two deliberate differences:
//   - HTML: a bare '&' that does not start one of the supported entities (&lt; &gt; &amp;
//     &quot; &#NNN; &#xHHH;) is refused, as the documentation requires ("All <, > and &
//     symbols that are not a part of a tag or an HTML entity must be replaced with the
//     corresponding HTML entities"), although Telegram's parser keeps it as text. A bare
//     '>' is accepted, as Telegram's parser accepts it.
//   - Only the syntax is checked: an inline link's URL, a pre block's language and the
//     nesting restrictions between entities ("pre and code can't contain other
//     entities") are not, because Telegram fixes or drops such entities instead of
//     refusing the text.
//
// The package has no dependencies on the rest of botfleet.
package format

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Parse modes, in Telegram's spelling (core.telegram.org/bots/api#formatting-options).
const (
	ModeHTML       = "HTML"
	ModeMarkdownV2 = "MarkdownV2"
	ModeMarkdown   = "Markdown"
)

// Error is a text that Telegram would refuse to parse.
type Error struct {
	// Reason is Telegram's description of the problem, e.g. "Character '.' is reserved
	// and must be escaped with the preceding '\'" or "Can't find end of Bold entity at
	// byte offset 3".
	Reason string
	// Offset is the 0-based byte offset in the UTF-8 text where the problem starts: the
	// offending character, or the start of the entity or tag that is not closed. It is
	// the offset Telegram's messages name ("at byte offset N").
	Offset int
	// Position is Offset counted in characters (Unicode code points), 0-based.
	Position int
}

// Error returns "can't parse entities: <Reason> (character <Position>)".
func (e *Error) Error() string {
	return fmt.Sprintf("can't parse entities: %s (character %d)", e.Reason, e.Position)
}

// Validate checks text written in parseMode ("HTML", "MarkdownV2" or "Markdown", in
// Telegram's spelling; "" or any other value means plain text, which is always valid).
// On success it returns the length of the text Telegram would send after parsing (markup
// removed, entities decoded), in characters (Unicode code points): Telegram's 4,096
// character limit of sendMessage applies to that text. Otherwise it returns an *Error.
// text must be valid UTF-8 (validate.Text checks that first); invalid bytes count as one
// character each.
func Validate(text, parseMode string) (int, error) {
	var p parser
	p.text = text
	var err error
	switch parseMode {
	case ModeHTML:
		err = p.html()
	case ModeMarkdownV2:
		err = p.markdownV2()
	case ModeMarkdown:
		err = p.markdown()
	default:
		return utf8.RuneCountInString(text), nil
	}
	if err != nil {
		return 0, err
	}
	return p.visible, nil
}

// parser holds the text being checked and counts the visible characters.
type parser struct {
	text    string
	visible int
}

// fail returns the *Error for reason at byte offset off.
func (p *parser) fail(off int, format string, args ...any) error {
	if off > len(p.text) {
		off = len(p.text)
	}
	return &Error{Reason: fmt.Sprintf(format, args...), Offset: off, Position: utf8.RuneCountInString(p.text[:off])}
}

// emit counts the visible character starting at byte i and returns its size in bytes.
func (p *parser) emit(i int) int {
	_, n := utf8.DecodeRuneInString(p.text[i:])
	p.visible++
	return n
}

// isSpace reports the white space that ends a pre block's language (tdlib's is_space).
func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == 0 || c == '\v'
}

// ---- HTML ----

// htmlTag is an open tag of the HTML parser.
type htmlTag struct {
	name string
	off  int
}

// supportedTags are the tags of core.telegram.org/bots/api#html-style.
var supportedTags = map[string]bool{
	"a": true, "b": true, "strong": true, "i": true, "em": true, "u": true, "ins": true,
	"s": true, "strike": true, "del": true, "span": true, "tg-spoiler": true,
	"tg-emoji": true, "code": true, "pre": true, "blockquote": true,
}

// isTagNameByte reports the bytes of a tag or attribute name: ASCII letters, digits and '-'.
func isTagNameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-'
}

// html checks HTML style: supported tags only, each closed in order; the entities &lt;
// &gt; &amp; &quot; and numeric ones; no '<' or '&' outside a tag or entity.
func (p *parser) html() error {
	t := p.text
	var open []htmlTag
	for i := 0; i < len(t); {
		switch t[i] {
		case '&':
			n, ok := htmlEntity(t[i:])
			if !ok {
				return p.fail(i, "Character '&' must be written as &amp; when it does not start an HTML entity (&lt; &gt; &amp; &quot; &#NNN;)")
			}
			p.visible++
			i += n
			continue
		case '<':
		default:
			i += p.emit(i)
			continue
		}
		begin := i
		i++
		if i < len(t) && t[i] == '/' {
			i++
			start := i
			for i < len(t) && isTagNameByte(t[i]) {
				i++
			}
			name := strings.ToLower(t[start:i])
			if len(open) == 0 {
				return p.fail(begin, "Unexpected end tag at byte offset %d", begin)
			}
			for i < len(t) && isSpace(t[i]) {
				i++
			}
			if i >= len(t) || t[i] != '>' {
				return p.fail(begin, "Unclosed end tag at byte offset %d", begin)
			}
			i++
			top := open[len(open)-1]
			if name != top.name {
				return p.fail(begin, "Unmatched end tag at byte offset %d, expected \"</%s>\", found \"</%s>\"", begin, top.name, name)
			}
			open = open[:len(open)-1]
			continue
		}
		start := i
		for i < len(t) && isTagNameByte(t[i]) {
			i++
		}
		name := strings.ToLower(t[start:i])
		if !supportedTags[name] {
			return p.fail(begin, "Unsupported start tag \"%s\" at byte offset %d", name, begin)
		}
		attrs, next, err := p.htmlAttributes(name, begin, i)
		if err != nil {
			return err
		}
		i = next
		switch name {
		case "span":
			if attrs["class"] != "tg-spoiler" {
				return p.fail(begin, "Tag \"span\" must have class \"tg-spoiler\" at byte offset %d", begin)
			}
		case "tg-emoji":
			if !isEmojiID(attrs["emoji-id"]) {
				return p.fail(begin, "Custom emoji entity must contain a valid custom emoji identifier (emoji-id) at byte offset %d", begin)
			}
		}
		open = append(open, htmlTag{name: name, off: begin})
	}
	if len(open) > 0 {
		top := open[len(open)-1]
		return p.fail(top.off, "Can't find end tag corresponding to start tag \"%s\"", top.name)
	}
	return nil
}

// htmlAttributes parses the attributes of the start tag name (which began at byte begin)
// from byte i to its '>', and returns them by lower-case name (values decoded) and the
// offset after the '>'.
func (p *parser) htmlAttributes(name string, begin, i int) (map[string]string, int, error) {
	t := p.text
	attrs := map[string]string{}
	for {
		for i < len(t) && isSpace(t[i]) {
			i++
		}
		if i >= len(t) {
			return nil, 0, p.fail(begin, "Unclosed start tag at byte offset %d", begin)
		}
		if t[i] == '>' {
			return attrs, i + 1, nil
		}
		if t[i] == '/' && i+1 < len(t) && t[i+1] == '>' {
			return attrs, i + 2, nil
		}
		start := i
		for i < len(t) && isTagNameByte(t[i]) {
			i++
		}
		attr := strings.ToLower(t[start:i])
		if attr == "" {
			return nil, 0, p.fail(i, "Empty attribute name in the tag \"%s\" at byte offset %d", name, begin)
		}
		for i < len(t) && isSpace(t[i]) {
			i++
		}
		if i >= len(t) || t[i] != '=' {
			attrs[attr] = "" // an attribute without a value, e.g. <blockquote expandable>
			continue
		}
		i++
		for i < len(t) && isSpace(t[i]) {
			i++
		}
		if i >= len(t) {
			return nil, 0, p.fail(begin, "Unclosed start tag at byte offset %d", begin)
		}
		var raw string
		if q := t[i]; q == '"' || q == '\'' {
			end := strings.IndexByte(t[i+1:], q)
			if end < 0 {
				return nil, 0, p.fail(i, "Unclosed start tag at byte offset %d", begin)
			}
			raw = t[i+1 : i+1+end]
			i += end + 2
		} else {
			start := i
			for i < len(t) && !isSpace(t[i]) && t[i] != '>' && t[i] != '"' && t[i] != '\'' {
				i++
			}
			raw = t[start:i]
		}
		attrs[attr] = decodeEntities(raw)
	}
}

// htmlEntity reports whether s starts with a supported HTML entity and its length.
func htmlEntity(s string) (int, bool) {
	for _, e := range []string{"&lt;", "&gt;", "&amp;", "&quot;"} {
		if strings.HasPrefix(s, e) {
			return len(e), true
		}
	}
	if len(s) < 4 || s[1] != '#' {
		return 0, false
	}
	i, base := 2, 10
	if s[2] == 'x' || s[2] == 'X' {
		i, base = 3, 16
	}
	start := i
	v := 0
	for ; i < len(s) && i-start < 8; i++ {
		d := digitValue(s[i], base)
		if d < 0 {
			break
		}
		v = v*base + d
	}
	if i == start || i >= len(s) || s[i] != ';' || v == 0 || v > utf8.MaxRune || v >= 0xD800 && v <= 0xDFFF {
		return 0, false
	}
	return i + 1, true
}

// digitValue returns the value of the digit c in base (10 or 16), or -1.
func digitValue(c byte, base int) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case base == 16 && c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case base == 16 && c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// decodeEntities decodes the named entities of an attribute value (enough to compare a
// class or an emoji-id).
func decodeEntities(s string) string {
	if !strings.Contains(s, "&") {
		return s
	}
	return strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&amp;", "&").Replace(s)
}

// isEmojiID reports a custom emoji identifier: a positive decimal number without a
// leading zero that fits in an int64.
func isEmojiID(s string) bool {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return len(s) < 19 || s <= "9223372036854775807"
}
