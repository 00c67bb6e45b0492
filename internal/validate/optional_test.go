package validate

import (
	"strings"
	"testing"
)

func TestOptionalText(t *testing.T) {
	for _, ok := range []string{"", " ", "a\tb\nc", strings.Repeat("é", 8)} {
		if err := OptionalText("v", ok, 8); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"a\x00", "\x1b[31m", "\xff", strings.Repeat("x", 9)} {
		if err := OptionalText("v", bad, 8); FieldOf(err) != "v" {
			t.Errorf("%q: %v", bad, err)
		}
	}
}
