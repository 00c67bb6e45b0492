package validate

import "unicode/utf8"

// OptionalText checks free text that may be empty or blank (a contact attribute's value):
// at most max characters of valid UTF-8 without control characters other than tab, line
// feed and carriage return. It is not trimmed.
func OptionalText(field, s string, max int) error {
	if msg, ok := checkString(s, true); !ok {
		return Field(field, "%s %s", field, msg)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return Field(field, "%s must be at most %d characters, not %d", field, max, n)
	}
	return nil
}
