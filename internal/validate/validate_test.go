package validate

import (
	"errors"
	"strings"
	"testing"

	"github.com/botfleet/botfleet/internal/apperr"
)

// wantField checks that err is a 422 invalid_field naming field ("" = no error wanted).
func wantField(t *testing.T, err error, field string) {
	t.Helper()
	if field == "" {
		if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
		return
	}
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Kind != apperr.KindInvalid || ae.Code != CodeInvalidField || FieldOf(err) != field || !errors.Is(err, ErrInvalidField) {
		t.Fatalf("error %v (field %q), want invalid_field on %q", err, FieldOf(err), field)
	}
}

func TestName(t *testing.T) {
	for _, tc := range []struct {
		in, want, field string
	}{
		{"  Acme  ", "Acme", ""},
		{"👩‍💻 team", "👩‍💻 team", ""},
		{strings.Repeat("é", 200), strings.Repeat("é", 200), ""},
		{strings.Repeat("é", 201), "", "name"},
		{"", "", "name"},
		{" \t\n ", "", "name"},
		{"a\x00b", "", "name"},
		{"a\tb", "", "name"},
		{"a\nb", "", "name"},
		{"a\x1bb", "", "name"},
		{"a\x7fb", "", "name"},
		{"a\u0085b", "", "name"},
		{"a\xffb", "", "name"},
	} {
		got, err := Name("name", tc.in, MaxNameLen)
		wantField(t, err, tc.field)
		if got != tc.want {
			t.Fatalf("Name(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestText(t *testing.T) {
	for _, tc := range []struct {
		in, field string
	}{
		{"hello", ""},
		{"a\tb\nc\r\nd", ""},
		{"  padded  ", ""},
		{strings.Repeat("ж", MaxTextLen), ""},
		{strings.Repeat("ж", MaxTextLen+1), "text"},
		{"", "text"},
		{" \n\t", "text"},
		{"hi\x00", "text"},
		{"hi\x1b[31m", "text"},
		{"hi\x7f", "text"},
		{"hi\xc0\x80", "text"},
	} {
		wantField(t, Text("text", tc.in, MaxTextLen), tc.field)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]string{
		"": "", "HTML": "HTML", "html": "HTML", " Html ": "HTML", "markdownv2": "MarkdownV2", "MARKDOWN": "Markdown",
	} {
		got, err := ParseMode("parse_mode", in)
		if err != nil || got != want {
			t.Fatalf("ParseMode(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"html5", "BBCode", "markdown v2", "HTML\x00"} {
		_, err := ParseMode("parse_mode", in)
		wantField(t, err, "parse_mode")
	}
}

func TestUUID(t *testing.T) {
	const id = "3f1c2a4e-9b7d-4c1e-8f00-0123456789ab"
	if got, err := UUID("contact_id", id); err != nil || got.String() != id {
		t.Fatalf("UUID(%q) = %v, %v", id, got, err)
	}
	if got, err := UUID("contact_id", strings.ToUpper(id)); err != nil || got.String() != id {
		t.Fatalf("upper case: %v, %v", got, err)
	}
	for _, in := range []string{"", "x", "{" + id + "}", "urn:uuid:" + id, strings.ReplaceAll(id, "-", ""), id + "\x00"} {
		_, err := UUID("contact_id", in)
		wantField(t, err, "contact_id")
	}
	if got, err := OptionalUUID("bot_app_id", ""); got != nil || err != nil {
		t.Fatalf("OptionalUUID(\"\") = %v, %v", got, err)
	}
}

func TestIntRange(t *testing.T) {
	wantField(t, IntRange("daily_limit", 0, 0, 10), "")
	wantField(t, IntRange("daily_limit", 10, 0, 10), "")
	wantField(t, IntRange("daily_limit", -1, 0, 10), "daily_limit")
	wantField(t, IntRange("daily_limit", 11, 0, 10), "daily_limit")
}

func TestFormattedText(t *testing.T) {
	for _, tc := range []struct{ text, mode string }{
		{"Version 1.0", ParseModeNone},
		{"Version 1\\.0", ParseModeMarkdownV2},
		{"<b>1 &lt; 2</b>", ParseModeHTML},
		{"*bold*", ParseModeMarkdown},
	} {
		if err := FormattedText("text", tc.text, tc.mode); err != nil {
			t.Errorf("FormattedText(%q, %q) = %v; want nil", tc.text, tc.mode, err)
		}
	}
	err := FormattedText("message_text", "Sale: 50% off. Hurry", ParseModeMarkdownV2)
	wantField(t, err, "message_text")
	var e *apperr.Error
	if !errors.As(err, &e) || e.Code != CodeInvalidField || e.Details.(map[string]any)["position"] != 13 {
		t.Fatalf("FormattedText: %#v; want invalid_field with position 13", err)
	}
	if !strings.Contains(e.Message, "Character '.' is reserved") {
		t.Errorf("message %q does not name the character", e.Message)
	}
	wantField(t, FormattedText("text", "<b>x", ParseModeHTML), "text")
}
