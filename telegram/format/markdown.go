package format

import (
	"net/url"
	"strings"
)

// mdEntity is an open MarkdownV2 entity.
type mdEntity struct {
	kind string // Telegram's name in error messages: Bold, Italic, Underline, ...
	off  int    // byte offset of its opening marker
}

// markdownV2 checks MarkdownV2 style (core.telegram.org/bots/api#markdownv2-style):
//   - '\' followed by a character with code 1-126 is that character, never markup;
//   - *bold*, _italic_, __underline__, ~strikethrough~, ||spoiler||, [text](url),
//     ![emoji](tg://emoji?id=N), `code`, ```language pre```, '>' and '**>' at the start
//     of a line (block quotation; '||' at the end of its last line makes it expandable);
//     an entity opened must be closed, inside a block quotation before it ends;
//   - inside code and pre only '`' and '\' must be escaped; inside the (...) of a link
//     or custom emoji only ')' and '\';
//   - elsewhere _ * [ ] ( ) ~ ` > # + - = | { } . ! must be escaped.
//
// A marker closes the innermost open entity when it is that entity's closing marker
// ("__" is read greedily as underline) and opens a new entity otherwise, as Telegram
// reads it.
func (p *parser) markdownV2() error {
	t := p.text
	var open []mdEntity
	quote := -1 // index in open of the block quotation, -1 when none
	inCode := func() bool {
		if len(open) == 0 {
			return false
		}
		k := open[len(open)-1].kind
		return k == "Code" || k == "Pre" || k == "PreCode"
	}
	// closeQuote ends the open block quotation: every entity opened inside it must be closed.
	closeQuote := func() error {
		if quote < 0 {
			return nil
		}
		if top := open[len(open)-1]; top.kind != "BlockQuote" {
			return p.fail(top.off, "Can't find end of %s entity at byte offset %d", top.kind, top.off)
		}
		open = open[:len(open)-1]
		quote = -1
		return nil
	}
	lineStart := true
	for i := 0; i < len(t); {
		if lineStart && !inCode() {
			lineStart = false
			switch {
			case strings.HasPrefix(t[i:], "**>"):
				if err := closeQuote(); err != nil {
					return err
				}
				open = append(open, mdEntity{kind: "BlockQuote", off: i})
				quote = len(open) - 1
				i += 3
				continue
			case t[i] == '>':
				if quote < 0 {
					open = append(open, mdEntity{kind: "BlockQuote", off: i})
					quote = len(open) - 1
				}
				i++
				continue
			default:
				if err := closeQuote(); err != nil {
					return err
				}
			}
		}
		c := t[i]
		if c == '\n' || c == '\r' {
			lineStart = true
			p.visible++
			i++
			continue
		}
		if c == '\\' && i+1 < len(t) && t[i+1] > 0 && t[i+1] <= 126 {
			p.visible++
			i += 2
			continue
		}
		if inCode() && c != '`' {
			i += p.emit(i)
			continue
		}
		if !strings.ContainsRune("_*~|[]`!()>#+-={}.", rune(c)) {
			i += p.emit(i)
			continue
		}
		// The closing marker of the innermost entity?
		if n := len(open); n > 0 {
			top := open[n-1]
			end, size := false, 1
			switch top.kind {
			case "Bold":
				end = c == '*'
			case "Italic":
				end = c == '_' && !strings.HasPrefix(t[i+1:], "_")
			case "Underline":
				end, size = strings.HasPrefix(t[i:], "__"), 2
			case "Strikethrough":
				end = c == '~'
			case "Spoiler":
				end, size = strings.HasPrefix(t[i:], "||"), 2
			case "Code":
				end = c == '`'
			case "Pre", "PreCode":
				end, size = strings.HasPrefix(t[i:], "```"), 3
			case "TextUrl", "CustomEmoji":
				end = c == ']'
			}
			if end {
				open = open[:n-1]
				i += size
				if top.kind == "TextUrl" || top.kind == "CustomEmoji" {
					next, err := p.markdownV2URL(top, i)
					if err != nil {
						return err
					}
					i = next
				}
				continue
			}
		}
		// The expandability mark: '||' at the end of a block quotation's line.
		if quote >= 0 && strings.HasPrefix(t[i:], "||") && (i+2 == len(t) || t[i+2] == '\n' || t[i+2] == '\r') {
			i += 2
			continue
		}
		// The opening marker of a new entity.
		begin := i
		var kind string
		switch {
		case c == '*':
			kind = "Bold"
		case c == '~':
			kind = "Strikethrough"
		case strings.HasPrefix(t[i:], "__"):
			kind, i = "Underline", i+1
		case c == '_':
			kind = "Italic"
		case strings.HasPrefix(t[i:], "||"):
			kind, i = "Spoiler", i+1
		case c == '[':
			kind = "TextUrl"
		case strings.HasPrefix(t[i:], "!["):
			kind, i = "CustomEmoji", i+1
		case strings.HasPrefix(t[i:], "```"):
			i += 3
			kind = "Pre"
			lang := i
			for lang < len(t) && !isSpace(t[lang]) && t[lang] != '`' {
				lang++
			}
			if lang != i && lang < len(t) && t[lang] != '`' {
				kind, i = "PreCode", lang
			}
			// One line break after ``` or the language is not part of the text.
			if i < len(t) && (t[i] == '\n' || t[i] == '\r') {
				if i+1 < len(t) && (t[i+1] == '\n' || t[i+1] == '\r') && t[i] != t[i+1] {
					i++
				}
				i++
			}
			open = append(open, mdEntity{kind: kind, off: begin})
			continue
		case c == '`':
			kind = "Code"
		default:
			return p.fail(i, "Character '%c' is reserved and must be escaped with the preceding '\\'", c)
		}
		open = append(open, mdEntity{kind: kind, off: begin})
		i++
	}
	if err := closeQuote(); err != nil {
		return err
	}
	if n := len(open); n > 0 {
		top := open[n-1]
		return p.fail(top.off, "Can't find end of %s entity at byte offset %d", top.kind, top.off)
	}
	return nil
}

// markdownV2URL reads the optional (url) after the ']' of an inline link or custom emoji
// (which starts at byte i) and returns the offset after it. Inside it only ')' and '\'
// must be escaped. A custom emoji needs a tg://emoji?id=N URL.
func (p *parser) markdownV2URL(e mdEntity, i int) (int, error) {
	t := p.text
	if i >= len(t) || t[i] != '(' {
		if e.kind == "CustomEmoji" {
			return 0, p.fail(e.off, "Custom emoji entity must contain a tg://emoji URL")
		}
		return i, nil
	}
	i++
	begin := i
	var u strings.Builder
	for i < len(t) && t[i] != ')' {
		if t[i] == '\\' && i+1 < len(t) && t[i+1] > 0 && t[i+1] <= 126 {
			i++
		}
		u.WriteByte(t[i])
		i++
	}
	if i >= len(t) {
		if e.kind == "CustomEmoji" {
			return 0, p.fail(begin, "Can't find end of a custom emoji URL at byte offset %d", begin)
		}
		return 0, p.fail(begin, "Can't find end of a URL at byte offset %d", begin)
	}
	if e.kind == "CustomEmoji" {
		if reason := checkEmojiURL(u.String()); reason != "" {
			return 0, p.fail(e.off, "%s", reason)
		}
	}
	return i + 1, nil
}

// checkEmojiURL returns why raw is not a custom emoji URL (tg://emoji?id=N), or "".
func checkEmojiURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || !strings.EqualFold(u.Scheme, "tg") {
		return "Custom emoji URL must have scheme tg"
	}
	if host := u.Host; !strings.EqualFold(host, "emoji") {
		return "Custom emoji URL must have host \"emoji\""
	}
	id := u.Query().Get("id")
	if id == "" {
		return "Custom emoji URL must have an emoji identifier"
	}
	if !isEmojiID(id) {
		return "Invalid custom emoji identifier specified"
	}
	return ""
}

// markdown checks the legacy Markdown style (core.telegram.org/bots/api#markdown-style):
// *bold*, _italic_, `code`, ```language pre```, [text](url); '\' escapes _ * ` [ only;
// an entity opened must be closed and entities cannot be nested. Other characters need
// no escaping.
func (p *parser) markdown() error {
	t := p.text
	for i := 0; i < len(t); {
		c := t[i]
		if c == '\\' && i+1 < len(t) && strings.IndexByte("_*`[", t[i+1]) >= 0 {
			p.visible++
			i += 2
			continue
		}
		if strings.IndexByte("_*`[", c) < 0 {
			i += p.emit(i)
			continue
		}
		begin := i
		end := c
		if c == '[' {
			end = ']'
		}
		i++
		pre := false
		if c == '`' && strings.HasPrefix(t[i:], "``") {
			i += 2
			pre = true
			lang := i
			for lang < len(t) && !isSpace(t[lang]) && t[lang] != '`' {
				lang++
			}
			if lang != i && lang < len(t) && t[lang] != '`' {
				i = lang
			}
		}
		for i < len(t) && (t[i] != end || pre && !strings.HasPrefix(t[i:], "```")) {
			i += p.emit(i)
		}
		if i >= len(t) {
			return p.fail(begin, "Can't find end of the entity starting at byte offset %d", begin)
		}
		i++
		if pre {
			i += 2
		}
		if c == '[' && i < len(t) && t[i] == '(' {
			j := strings.IndexByte(t[i:], ')')
			if j < 0 {
				return p.fail(i+1, "Can't find end of a URL at byte offset %d", i+1)
			}
			i += j + 1
		}
	}
	return nil
}
