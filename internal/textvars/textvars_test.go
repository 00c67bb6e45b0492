package textvars

import (
	"errors"
	"testing"
)

func TestParseRender(t *testing.T) {
	values := map[string]string{"first_name": "a_b<c>&\"", "attributes.city": "Köln", "username": ""}
	lookup := func(n string) (string, bool) { v, ok := values[n]; return v, ok }
	tests := []struct {
		text, mode, want string
	}{
		{"Hi {first_name|there}!", "", `Hi a_b<c>&"!`},
		{"Hi {first_name|there}!", "HTML", "Hi a_b&lt;c&gt;&amp;&quot;!"},
		{"Hi {first_name|there}\\!", "MarkdownV2", `Hi a\_b<c\>&"\!`},
		{"Hi {first_name}", "Markdown", `Hi a\_b<c>&"`},
		{"@{username|anon} in {attributes.city}", "HTML", "@anon in Köln"},
		{"{last_name}|{attributes.zip|none}", "", "|none"},
		{"{{first_name}} }} } {{", "", "{first_name} } } {"},
		{"{ first_name | x }", "", `a_b<c>&"`},
		{"no variables", "HTML", "no variables"},
	}
	for _, tt := range tests {
		tpl, err := Parse(tt.text)
		if err != nil {
			t.Fatalf("Parse(%q): %v", tt.text, err)
		}
		if got := tpl.Render(tt.mode, lookup); got != tt.want {
			t.Errorf("Render(%q, %s) = %q, want %q", tt.text, tt.mode, got, tt.want)
		}
	}
	tpl, _ := Parse("{{x}} {first_name|a} {username}")
	if !tpl.HasVariables() || len(tpl.Names()) != 2 {
		t.Errorf("names %v", tpl.Names())
	}
	if tpl, _ := Parse("plain {{"); tpl.HasVariables() {
		t.Error("plain text has variables")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		text     string
		variable string
		position int
	}{
		{"Hé {frist_name}", "frist_name", 3},
		{"ok {first_name} {plan|x}", "plan", 16},
		{"{attributes.}", "attributes.", 0},
		{"{attributes.a b}", "attributes.a b", 0},
		{"x {first_name", "", 2},
		{"x {}", "", 2},
		{"x {a{b}", "", 2},
	}
	for _, tt := range tests {
		_, err := Parse(tt.text)
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("Parse(%q) = %v, want *Error", tt.text, err)
		}
		if e.Variable != tt.variable || e.Position != tt.position {
			t.Errorf("Parse(%q): variable %q position %d, want %q %d (%v)", tt.text, e.Variable, e.Position, tt.variable, tt.position, e)
		}
	}
	if _, err := Parse("{plan}", "plan"); err != nil {
		t.Errorf("extra name refused: %v", err)
	}
}

func TestRenderMapped(t *testing.T) {
	tpl, _ := Parse("ab {{ {first_name|zz} cd")
	out, back := tpl.RenderMapped("", nil)
	if out != "ab { zz cd" {
		t.Fatalf("out %q", out)
	}
	// "ab { zz cd": offset 3 is '{' (template 3), 5 is inside the variable (template 6),
	// 8 is 'c' (template 22).
	for off, want := range map[int]int{0: 0, 3: 3, 4: 5, 5: 6, 6: 6, 8: 22} {
		if got := back(off); got != want {
			t.Errorf("back(%d) = %d, want %d", off, got, want)
		}
	}
}
