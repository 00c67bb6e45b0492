package config

import (
	"fmt"
	"log/slog"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// Setting is one environment variable of Config, derived from the struct's tags (env,
// envDefault): the single source of the variable names, their defaults, Load, LogValue,
// `botfleet config` and the README's settings table (TestREADMESettingsTable).
type Setting struct {
	// Name is the environment variable, e.g. TELEGRAM_RATE_LIMIT.
	Name string
	// Default is the envDefault tag ("" when none).
	Default string
	// Secret marks a Secret field (or a slice of them): its Value is redacted.
	Secret bool
	// Value is the effective value as text, redacted (Config.Settings only): a Secret is
	// "[REDACTED]" ("" when empty), or, for a *_URL variable (a DSN), the URL with its
	// password masked by RedactURL.
	Value string
}

var (
	secretType      = reflect.TypeFor[Secret]()
	secretSliceType = reflect.TypeFor[[]Secret]()
)

// Variables lists the environment variables of Config with their defaults, in field order.
// Any field with an env tag is included, nested structs too (caarlos0/env GetFieldParams).
func Variables() []Setting {
	params, err := env.GetFieldParams(&Config{})
	if err != nil {
		panic(fmt.Sprintf("config: bad struct tags: %v", err)) // a programming error, caught by every test
	}
	out := make([]Setting, 0, len(params))
	for _, p := range params {
		if p.Key == "" || p.Ignored {
			continue
		}
		out = append(out, Setting{Name: p.Key, Default: p.DefaultValue})
	}
	return out
}

// Settings returns every variable of c (Variables) with its effective value, redacted.
func (c Config) Settings() []Setting {
	values := map[string]reflect.Value{}
	walkFields(reflect.ValueOf(c), "", values)
	vars := Variables()
	for i := range vars {
		v, ok := values[vars[i].Name]
		if !ok {
			continue
		}
		vars[i].Secret = v.Type() == secretType || v.Type() == secretSliceType
		vars[i].Value = formatValue(vars[i].Name, v)
	}
	return vars
}

// walkFields maps each env-tagged field of the struct v (recursing into untagged struct
// fields with their envPrefix, as caarlos0/env does) to its value.
func walkFields(v reflect.Value, prefix string, into map[string]reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("env"), ",")
		switch {
		case name != "" && name != "-":
			into[prefix+name] = v.Field(i)
		case f.Type.Kind() == reflect.Struct:
			walkFields(v.Field(i), prefix+f.Tag.Get("envPrefix"), into)
		}
	}
}

// formatValue prints v as the text one would set the variable to, secrets redacted.
func formatValue(name string, v reflect.Value) string {
	switch v.Type() {
	case secretType:
		return redactSecret(name, v.Interface().(Secret))
	case secretSliceType:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = redactSecret(name, v.Index(i).Interface().(Secret))
		}
		return strings.Join(parts, ",")
	}
	if s, ok := v.Interface().(fmt.Stringer); ok {
		return s.String()
	}
	if v.Kind() == reflect.Slice {
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = fmt.Sprint(v.Index(i).Interface())
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.Interface())
}

// redactSecret masks a secret: the password of a URL-shaped variable (*_URL, *_URLS,
// *_DSN: DATABASE_URL, REDIS_URL), the whole value otherwise.
func redactSecret(name string, s Secret) string {
	if s == "" {
		return ""
	}
	if strings.HasSuffix(name, "_URL") || strings.HasSuffix(name, "_URLS") || strings.HasSuffix(name, "_DSN") {
		return RedactURL(s.Reveal())
	}
	return s.String()
}

// settingsLogValue is LogValue's body: every setting under its lower-case name (numbers and
// booleans typed, everything else as text), secrets redacted, plus the fingerprints (key
// ids) of ENCRYPTION_KEY and of the older ENCRYPTION_KEYS.
func (c Config) settingsLogValue() slog.Value {
	settings := c.Settings()
	values := map[string]reflect.Value{}
	walkFields(reflect.ValueOf(c), "", values)
	attrs := make([]slog.Attr, 0, len(settings)+1)
	for _, s := range settings {
		key := strings.ToLower(s.Name)
		v, ok := values[s.Name]
		switch {
		case ok && !s.Secret && isInt(v.Kind()) && v.Type().PkgPath() == "": // int, not time.Duration
			attrs = append(attrs, slog.Int64(key, v.Int()))
		case ok && !s.Secret && v.Kind() == reflect.Bool:
			attrs = append(attrs, slog.Bool(key, v.Bool()))
		default:
			attrs = append(attrs, slog.String(key, s.Value))
		}
	}
	attrs = append(attrs, slog.String("encryption_key_fingerprint", c.KeyFingerprint()),
		slog.Any("encryption_keys_fingerprints", c.OldKeyFingerprints()))
	return slog.GroupValue(attrs...)
}

func isInt(k reflect.Kind) bool {
	return k >= reflect.Int && k <= reflect.Int64
}

// environment reads every variable of Config through getenv; an unset or empty variable
// is left out, so that its envDefault applies.
func environment(getenv func(string) string) map[string]string {
	vars := map[string]string{}
	for _, s := range Variables() {
		if v := getenv(s.Name); v != "" {
			vars[s.Name] = v
		}
	}
	return vars
}

// Misspelled returns a warning for each variable of environ ("KEY=value" pairs, as
// os.Environ gives) that is not a setting but is within two edits of one, e.g.
// TELEGRAM_RATE_LIMT: such a variable is otherwise silently ignored.
func Misspelled(environ []string) []string {
	known := map[string]bool{}
	vars := Variables()
	for _, s := range vars {
		known[s.Name] = true
	}
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		if known[name] {
			continue
		}
		for _, s := range vars {
			if editDistance(name, s.Name) <= 2 {
				out = append(out, fmt.Sprintf("%s is not a botfleet setting (did you mean %s?); it is ignored", name, s.Name))
				break
			}
		}
	}
	return out
}

// editDistance is the Levenshtein distance of a and b (bytes).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
