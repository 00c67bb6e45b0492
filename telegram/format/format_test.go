package format

import (
	"errors"
	"strings"
	"testing"
)

// The documented examples of core.telegram.org/bots/api#formatting-options, each of
// which Telegram accepts.
const (
	docMarkdownV2 = "*bold \\*text*\n" +
		"_italic \\*text_\n" +
		"__underline__\n" +
		"~strikethrough~\n" +
		"||spoiler||\n" +
		"*bold _italic bold ~italic bold strikethrough ||italic bold strikethrough spoiler||~ __underline italic bold___ bold*\n" +
		"[inline URL](http://www.example.com/)\n" +
		"[inline mention of a user](tg://user?id=123456789)\n" +
		"![👍](tg://emoji?id=5368324170671202286)\n" +
		"`inline fixed-width code`\n" +
		"```\npre-formatted fixed-width code block\n```\n" +
		"```python\npre-formatted fixed-width code block written in the Python programming language\n```\n" +
		">Block quotation started\n" +
		">Block quotation continued\n" +
		">Block quotation continued\n" +
		">Block quotation continued\n" +
		">The last line of the block quotation\n" +
		"**>The expandable block quotation started right after the previous block quotation\n" +
		">It is separated from the previous block quotation by an empty bold entity\n" +
		">Expandable block quotation continued\n" +
		">Hidden by default part of the expandable block quotation started\n" +
		">Expandable block quotation continued\n" +
		">The last line of the expandable block quotation with the expandability mark||"

	docHTML = `<b>bold</b>, <strong>bold</strong>
<i>italic</i>, <em>italic</em>
<u>underline</u>, <ins>underline</ins>
<s>strikethrough</s>, <strike>strikethrough</strike>, <del>strikethrough</del>
<span class="tg-spoiler">spoiler</span>, <tg-spoiler>spoiler</tg-spoiler>
<b>bold <i>italic bold <s>italic bold strikethrough <span class="tg-spoiler">italic bold strikethrough spoiler</span></s> <u>underline italic bold</u></i> bold</b>
<a href="http://www.example.com/">inline URL</a>
<a href="tg://user?id=123456789">inline mention of a user</a>
<tg-emoji emoji-id="5368324170671202286">👍</tg-emoji>
<code>inline fixed-width code</code>
<pre>pre-formatted fixed-width code block</pre>
<pre><code class="language-python">pre-formatted fixed-width code block written in the Python programming language</code></pre>
<blockquote>Block quotation started\nBlock quotation continued\nThe last line of the block quotation</blockquote>
<blockquote expandable>Expandable block quotation started\nExpandable block quotation continued\nExpandable block quotation continued\nHidden by default part of the block quotation started\nExpandable block quotation continued\nThe last line of the block quotation</blockquote>`

	docMarkdown = "*bold text*\n" +
		"_italic text_\n" +
		"[inline URL](http://www.example.com/)\n" +
		"[inline mention of a user](tg://user?id=123456789)\n" +
		"`inline fixed-width code`\n" +
		"```\npre-formatted fixed-width code block\n```\n" +
		"```python\npre-formatted fixed-width code block written in the Python programming language\n```"
)

func TestValidate_valid(t *testing.T) {
	tests := []struct {
		name, mode, text string
		visible          int // -1: not checked
	}{
		{"markdownv2 documented example", ModeMarkdownV2, docMarkdownV2, -1},
		{"html documented example", ModeHTML, docHTML, -1},
		{"markdown documented example", ModeMarkdown, docMarkdown, -1},
		{"plain text is never parsed", "", "1. *unclosed <b> & _", 20},
		// MarkdownV2, after tdlib's tests (td/test/message_entities.cpp).
		{"v2 empty", ModeMarkdownV2, "", 0},
		{"v2 escaped backslash", ModeMarkdownV2, `\\`, 1},
		{"v2 escaped reserved", ModeMarkdownV2, `Version 1\.0\!`, 12},
		{"v2 backslash before non-ASCII is text", ModeMarkdownV2, `\➡️\`, 4},
		{"v2 italic with escaped star", ModeMarkdownV2, "🏟 🏟_abac \\* asd _", 14},
		{"v2 italic containing underline", ModeMarkdownV2, "🏟 🏟_🏟 __🏟___", 6},
		{"v2 underline containing italic", ModeMarkdownV2, "🏟 🏟__🏟 _🏟_ __", 7},
		{"v2 code ended by triple backtick", ModeMarkdownV2, "🏟 🏟`🏟 🏟```", 6},
		{"v2 pre with language", ModeMarkdownV2, "```🏟\n🏟```", 1},
		{"v2 pre with escapes", ModeMarkdownV2, "```\n\\`a\\\\ . * _ ( ) ! #```", 17},
		{"v2 code keeps reserved characters", ModeMarkdownV2, "`a.b(c)! #x`", 10},
		{"v2 empty entities", ModeMarkdownV2, "**____``````||||", 0},
		{"v2 link url with escaped paren", ModeMarkdownV2, `[telegram\.org](https://telegram.dog?\\\()`, 12},
		{"v2 link url keeps reserved characters", ModeMarkdownV2, `[a](http://x.org/a.b-c_d?e=f#g)`, 1},
		{"v2 link without url", ModeMarkdownV2, `[telegram\.org]`, 12},
		{"v2 bold inside link", ModeMarkdownV2, `[*bold* link](http://x.org/)`, 9},
		{"v2 custom emoji", ModeMarkdownV2, "![👍](TG://EMoJI/?test=1231&id=25#id=32)a", 2},
		{"v2 blockquote", ModeMarkdownV2, "abc\n>def\n>def\n\r>ghi2\njkl", -1},
		{"v2 bold across blockquote", ModeMarkdownV2, "*a\n>b\n>ld \n>bo\n>ld\nasd*\ndef", -1},
		{"v2 blockquote code across lines", ModeMarkdownV2, ">`b\n>ld \n>bo\nld`\n>asd\ndef", -1},
		{"v2 expandable mark", ModeMarkdownV2, ">asd\n>q||e||w||\nasdad", -1},
		{"v2 spoiler at end of quoted line", ModeMarkdownV2, ">asd\n>q||ew||\nasdad", -1},
		{"v2 quote then expandable quote", ModeMarkdownV2, ">\n**>2", -1},
		{"v2 gt alone", ModeMarkdownV2, ">", 0},
		// HTML.
		{"html entities", ModeHTML, "a &lt;b&gt; &amp; &quot;c&quot; &#128077; &#x1F44D;", 15},
		{"html bare gt", ModeHTML, "1 > 0", 5},
		{"html case-insensitive tags", ModeHTML, "<B>x</b>", 1},
		{"html single-quoted attribute", ModeHTML, "<a href='http://x.org/?a=1&amp;b=2'>x</a>", 1},
		{"html unquoted attribute", ModeHTML, "<a href=http://x.org/>x</a>", 1},
		{"html unknown attribute ignored", ModeHTML, `<b id="1">x</b>`, 1},
		{"html spoiler span", ModeHTML, `<span class="tg-spoiler">s</span>`, 1},
		// Legacy Markdown.
		{"markdown reserved need no escape", ModeMarkdown, "1. a-b (c) !", 12},
		{"markdown escapes", ModeMarkdown, `\_\*\[\` + "`", 4},
		{"markdown italic keeps stars", ModeMarkdown, "_a*b_", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Validate(tt.text, tt.mode)
			if err != nil {
				t.Fatalf("Validate(%q, %q) = %v; want valid", tt.text, tt.mode, err)
			}
			if tt.visible >= 0 && n != tt.visible {
				t.Errorf("Validate(%q, %q) visible length = %d; want %d", tt.text, tt.mode, n, tt.visible)
			}
		})
	}
}

func TestValidate_invalid(t *testing.T) {
	tests := []struct {
		name, mode, text string
		reason           string // prefix of Error.Reason
		offset, position int
	}{
		// MarkdownV2, after tdlib's tests (td/test/message_entities.cpp).
		{"v2 unescaped dot", ModeMarkdownV2, "Version 1.0", "Character '.' is reserved and must be escaped with the preceding '\\'", 9, 9},
		{"v2 unescaped dot after emoji", ModeMarkdownV2, "👍 ok.", "Character '.' is reserved", 7, 4},
		{"v2 unescaped bang", ModeMarkdownV2, "🏟 🏟!", "Character '!' is reserved", 9, 3},
		{"v2 gt inside line", ModeMarkdownV2, "🏟 🏟>", "Character '>' is reserved", 9, 3},
		{"v2 gt after entity", ModeMarkdownV2, ">\n*a*>2", "Character '>' is reserved", 5, 5},
		{"v2 single pipe", ModeMarkdownV2, "a|b", "Character '|' is reserved", 1, 1},
		{"v2 paren outside link", ModeMarkdownV2, "call (me)", "Character '(' is reserved", 5, 5},
		{"v2 each reserved", ModeMarkdownV2, "]", "Character ']' is reserved", 0, 0},
		{"v2 hash", ModeMarkdownV2, "#tag", "Character '#' is reserved", 0, 0},
		{"v2 unclosed italic", ModeMarkdownV2, "🏟 🏟_abacaba", "Can't find end of Italic entity at byte offset 9", 9, 3},
		{"v2 unclosed bold inside italic", ModeMarkdownV2, "🏟 🏟_abac * asd ", "Can't find end of Bold entity at byte offset 15", 15, 9},
		{"v2 italic reopened inside bold", ModeMarkdownV2, "🏟 🏟_abac * asd _", "Can't find end of Italic entity at byte offset 21", 21, 15},
		{"v2 unclosed code", ModeMarkdownV2, "🏟 🏟`", "Can't find end of Code entity at byte offset 9", 9, 3},
		{"v2 unclosed pre", ModeMarkdownV2, "🏟 🏟```", "Can't find end of Pre entity at byte offset 9", 9, 3},
		{"v2 unclosed pre with language", ModeMarkdownV2, "🏟 🏟```a ", "Can't find end of PreCode entity at byte offset 9", 9, 3},
		{"v2 backtick in pre", ModeMarkdownV2, "🏟 🏟```🏟 🏟`", "Can't find end of Code entity at byte offset 21", 21, 9},
		{"v2 double underscore is underline", ModeMarkdownV2, "🏟 🏟__🏟 🏟_", "Can't find end of Italic entity at byte offset 20", 20, 8},
		{"v2 unclosed underline", ModeMarkdownV2, "🏟 🏟_🏟 🏟__", "Can't find end of Underline entity at byte offset 19", 19, 7},
		{"v2 unclosed url", ModeMarkdownV2, `[telegram\.org](asd\)`, "Can't find end of a URL at byte offset 16", 16, 16},
		{"v2 unclosed link text", ModeMarkdownV2, "[text", "Can't find end of TextUrl entity at byte offset 0", 0, 0},
		{"v2 unclosed spoiler", ModeMarkdownV2, "🏟 🏟||test\\|", "Can't find end of Spoiler entity at byte offset 9", 9, 3},
		{"v2 unclosed strikethrough", ModeMarkdownV2, "a ~b", "Can't find end of Strikethrough entity at byte offset 2", 2, 2},
		{"v2 unclosed custom emoji", ModeMarkdownV2, "🏟 🏟![👍", "Can't find end of CustomEmoji entity at byte offset 9", 9, 3},
		{"v2 custom emoji without url", ModeMarkdownV2, "🏟 🏟![👍]", "Custom emoji entity must contain a tg://emoji URL", 9, 3},
		{"v2 custom emoji unclosed url", ModeMarkdownV2, "🏟 🏟![👍](tg://emoji?id=1234", "Can't find end of a custom emoji URL at byte offset 17", 17, 8},
		{"v2 custom emoji scheme", ModeMarkdownV2, "![👍](t://emoji?id=1234)", "Custom emoji URL must have scheme tg", 0, 0},
		{"v2 custom emoji id", ModeMarkdownV2, "![👍](tg://emoji?test=1231&id=025)", "Invalid custom emoji identifier specified", 0, 0},
		{"v2 bold not closed inside quote", ModeMarkdownV2, ">*b\n>ld \n>bo\nld*\nasd\ndef", "Can't find end of Bold entity at byte offset 1", 1, 1},
		{"v2 spoiler not closed inside quote", ModeMarkdownV2, ">asd\n>q||ew\n||asdad", "Can't find end of Spoiler entity at byte offset 7", 7, 7},
		{"v2 spoiler after mark position", ModeMarkdownV2, ">asd\n>q||e||w||a\n||asdad", "Can't find end of Spoiler entity at byte offset 13", 13, 13},
		// HTML.
		{"html unclosed tag", ModeHTML, "<b>bold", "Can't find end tag corresponding to start tag \"b\"", 0, 0},
		{"html unclosed inner tag", ModeHTML, "x <b>a <i>b</b>", "Unmatched end tag at byte offset 11, expected \"</i>\", found \"</b>\"", 11, 11},
		{"html unsupported tag", ModeHTML, "é <div>x</div>", "Unsupported start tag \"div\" at byte offset 3", 3, 2},
		{"html bare lt", ModeHTML, "1 < 2", "Unsupported start tag \"\" at byte offset 2", 2, 2},
		{"html bare amp", ModeHTML, "Tom & Jerry", "Character '&' must be written as &amp;", 4, 4},
		{"html unknown named entity", ModeHTML, "&nbsp;", "Character '&' must be written", 0, 0},
		{"html entity without semicolon", ModeHTML, "&lt", "Character '&' must be written", 0, 0},
		{"html numeric entity out of range", ModeHTML, "&#1114112;", "Character '&' must be written", 0, 0},
		{"html unexpected end tag", ModeHTML, "a</b>", "Unexpected end tag at byte offset 1", 1, 1},
		{"html unclosed start tag", ModeHTML, "<a href=\"x", "Unclosed start tag at byte offset 0", 8, 8},
		{"html unclosed end tag", ModeHTML, "<b>x</b", "Unclosed end tag at byte offset 4", 4, 4},
		{"html span without spoiler class", ModeHTML, `<span class="x">s</span>`, "Tag \"span\" must have class \"tg-spoiler\"", 0, 0},
		{"html tg-emoji without id", ModeHTML, `<tg-emoji>👍</tg-emoji>`, "Custom emoji entity must contain a valid custom emoji identifier", 0, 0},
		{"html empty attribute name", ModeHTML, `<a ="x">`, "Empty attribute name in the tag \"a\" at byte offset 0", 3, 3},
		// Legacy Markdown.
		{"markdown unclosed bold", ModeMarkdown, "a *b", "Can't find end of the entity starting at byte offset 2", 2, 2},
		{"markdown unclosed pre", ModeMarkdown, "```go\nx", "Can't find end of the entity starting at byte offset 0", 0, 0},
		{"markdown unclosed link", ModeMarkdown, "é [a", "Can't find end of the entity starting at byte offset 3", 3, 2},
		{"markdown unclosed url", ModeMarkdown, "[a](http://x", "Can't find end of a URL at byte offset 4", 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Validate(tt.text, tt.mode)
			var fe *Error
			if !errors.As(err, &fe) {
				t.Fatalf("Validate(%q, %q) = %v; want *Error %q", tt.text, tt.mode, err, tt.reason)
			}
			if !strings.HasPrefix(fe.Reason, tt.reason) || fe.Offset != tt.offset || fe.Position != tt.position {
				t.Errorf("Validate(%q, %q) = {%q, offset %d, position %d}; want {%q..., offset %d, position %d}",
					tt.text, tt.mode, fe.Reason, fe.Offset, fe.Position, tt.reason, tt.offset, tt.position)
			}
			if !strings.HasPrefix(fe.Error(), "can't parse entities: ") {
				t.Errorf("Error() = %q", fe.Error())
			}
		})
	}
}

// TestValidate_reservedCharacters is tdlib's loop over every ASCII character: in MarkdownV2
// the reserved ones are refused alone and accepted escaped; the others are text.
func TestValidate_reservedCharacters(t *testing.T) {
	const reserved = "]()>#+-=|{}.!"
	const begins = "_*[~`"
	for c := byte(1); c < 126; c++ {
		s := string([]byte{c})
		if strings.Contains(begins, s) || c == '\\' {
			continue
		}
		_, err := Validate(s, ModeMarkdownV2)
		// '>' alone is an empty block quotation at the start of the text; mid-line it is reserved.
		if c == '>' {
			_, err = Validate("a"+s, ModeMarkdownV2)
		}
		if strings.Contains(reserved, s) {
			if err == nil {
				t.Errorf("%q: valid; want reserved", s)
			}
			if _, err := Validate(`\`+s, ModeMarkdownV2); err != nil {
				t.Errorf("escaped %q: %v", s, err)
			}
		} else if err != nil {
			t.Errorf("%q: %v; want valid", s, err)
		}
	}
}

// FuzzValidate checks that no text panics any parser and that an error's offsets lie
// inside the text.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{docMarkdownV2, docHTML, docMarkdown, "Version 1.0", "<b>x", "![👍](tg://emoji?id=1", ">a\n>b||", "```go\n`x`", "&#x1F44D;"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, mode := range []string{ModeHTML, ModeMarkdownV2, ModeMarkdown} {
			n, err := Validate(s, mode)
			var fe *Error
			if errors.As(err, &fe) {
				if fe.Offset < 0 || fe.Offset > len(s) || fe.Position > len(s) {
					t.Fatalf("%s %q: offset %d position %d out of range", mode, s, fe.Offset, fe.Position)
				}
			} else if err != nil || n < 0 || n > len(s) {
				t.Fatalf("%s %q: %d, %v", mode, s, n, err)
			}
		}
	})
}
