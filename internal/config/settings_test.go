package config

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLoad_ReadsEveryVariable sets every variable of the struct tags to a valid non-default
// value and checks that each one reached its field: a field that Load forgot (a hand-written
// list) would keep its default.
func TestLoad_ReadsEveryVariable(t *testing.T) {
	vars := Variables()
	if len(vars) < 20 {
		t.Fatalf("only %d variables derived from the struct tags", len(vars))
	}
	def, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]reflect.Value{}
	walkFields(reflect.ValueOf(def), "", defaults)

	set := map[string]string{}
	for _, v := range vars {
		set[v.Name] = otherValue(t, v.Name, defaults[v.Name])
	}
	cfg, err := Load(envOf(set))
	if err != nil {
		t.Fatalf("Load(every variable set): %v", err)
	}
	got := map[string]reflect.Value{}
	walkFields(reflect.ValueOf(cfg), "", got)
	for _, v := range vars {
		if reflect.DeepEqual(got[v.Name].Interface(), defaults[v.Name].Interface()) {
			t.Errorf("%s=%q was not read: the field kept its default %v", v.Name, set[v.Name], defaults[v.Name])
		}
	}
}

// Strong test keys (64 hex characters, not one repeated byte).
const (
	testKey1 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testKey2 = "1123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	testKey3 = "2123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// otherValue is a valid value of a variable that differs from its default d.
func otherValue(t *testing.T, name string, d reflect.Value) string {
	t.Helper()
	switch name {
	case "APP_ENV":
		return "production"
	case "ADMIN_TOKEN":
		return strings.Repeat("a", 40)
	case "ENCRYPTION_KEY":
		return testKey1
	case "ENCRYPTION_KEYS":
		return testKey2 + "," + testKey3
	case "DATABASE_URL":
		return "postgres://other@127.0.0.1:5433/other?sslmode=disable"
	case "REDIS_URL":
		return "redis://127.0.0.1:6380/0"
	case "LOG_LEVEL":
		return "debug"
	case "LOG_FORMAT":
		return "json"
	}
	switch v := d.Interface().(type) {
	case Secret:
		return "redis://other:6380/1"
	case Rate:
		return "7/s"
	case time.Duration:
		return (v + 3*time.Second).String()
	case int:
		return "7"
	case bool:
		if v {
			return "false"
		}
		return "true"
	case string:
		return v + "x"
	case []Secret:
		return strings.Repeat("cd", 32)
	case []string:
		return "a,b"
	case float64:
		return strconv.FormatFloat(v+1.5, 'f', -1, 64)
	}
	t.Fatalf("%s: no test value for type %s; extend otherValue", name, d.Type())
	return ""
}

// TestVariables_MatchStructWalk checks that the variables caarlos0/env derives and the
// fields Settings reads values from are the same list.
func TestVariables_MatchStructWalk(t *testing.T) {
	fields := map[string]reflect.Value{}
	walkFields(reflect.ValueOf(Config{}), "", fields)
	var names []string
	for _, v := range Variables() {
		names = append(names, v.Name)
		if _, ok := fields[v.Name]; !ok {
			t.Errorf("%s: no field found by walkFields", v.Name)
		}
	}
	if len(names) != len(fields) {
		t.Errorf("Variables() has %d names, walkFields %d fields", len(names), len(fields))
	}
}

func TestLoad_InvalidLogSettings(t *testing.T) {
	for _, tt := range []struct{ env, val string }{
		{"LOG_LEVEL", "verbose"},
		{"LOG_FORMAT", "xml"},
	} {
		_, err := Load(envOf(map[string]string{tt.env: tt.val}))
		if err == nil || !strings.Contains(err.Error(), tt.env) {
			t.Errorf("%s=%s: err = %v, want an error naming %s", tt.env, tt.val, err, tt.env)
		}
	}
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{nil, "text"},
		{map[string]string{"LOG_FORMAT": "json"}, "json"},
		{map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": strings.Repeat("a", 40), "ENCRYPTION_KEY": testKey1}, "json"},
		{map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": strings.Repeat("a", 40), "ENCRYPTION_KEY": testKey1, "LOG_FORMAT": "text"}, "text"},
	} {
		cfg, err := Load(envOf(tt.env))
		if err != nil {
			t.Fatal(err)
		}
		if got := cfg.LogFormatName(); got != tt.want {
			t.Errorf("%v: LogFormatName = %q, want %q", tt.env, got, tt.want)
		}
	}
}

// TestSettings_Redacted checks the derived settings and LogValue: every secret redacted,
// DSNs with their password masked but host kept, other values printed.
func TestSettings_Redacted(t *testing.T) {
	cfg, err := Load(envOf(map[string]string{
		"ADMIN_TOKEN":         "admin-SECRET1-0123456789012345678901234",
		"DATABASE_URL":        "postgres://app:SECRET2@db.internal:5432/botfleet",
		"REDIS_URL":           "redis://:SECRET3@cache.internal:6379/0",
		"TELEGRAM_RATE_LIMIT": "50/s",
	}))
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]Setting{}
	for _, s := range cfg.Settings() {
		byName[s.Name] = s
	}
	if s := byName["ADMIN_TOKEN"]; !s.Secret || s.Value != "[REDACTED]" {
		t.Errorf("ADMIN_TOKEN = %+v", s)
	}
	if s := byName["DATABASE_URL"]; !strings.Contains(s.Value, "db.internal") {
		t.Errorf("DATABASE_URL = %+v, want the host kept", s)
	}
	if s := byName["TELEGRAM_RATE_LIMIT"]; s.Value != "50/s" || s.Default != "30/min" {
		t.Errorf("TELEGRAM_RATE_LIMIT = %+v", s)
	}
	var b strings.Builder
	slog.New(slog.NewJSONHandler(&b, nil)).Info("starting", "config", cfg)
	out := b.String()
	for _, s := range cfg.Settings() {
		out += s.Value
	}
	for _, secret := range []string{"SECRET1", "SECRET2", "SECRET3", DevEncryptionKey[:16]} {
		if strings.Contains(out, secret) {
			t.Errorf("settings or log leak %q: %s", secret, out)
		}
	}
	var logged struct {
		Config map[string]any `json:"config"`
	}
	if err := json.Unmarshal([]byte(out[:strings.Index(out, "\n")]), &logged); err != nil {
		t.Fatal(err)
	}
	for _, v := range Variables() {
		if _, ok := logged.Config[strings.ToLower(v.Name)]; !ok {
			t.Errorf("the startup log lacks %s", strings.ToLower(v.Name))
		}
	}
	if logged.Config["telegram_max_wait"] != "15s" {
		t.Errorf("telegram_max_wait logged as %v, want \"15s\"", logged.Config["telegram_max_wait"])
	}
	if logged.Config["worker_concurrency"] != float64(20) {
		t.Errorf("worker_concurrency logged as %v (%T), want the number 20", logged.Config["worker_concurrency"], logged.Config["worker_concurrency"])
	}
}

func TestMisspelled(t *testing.T) {
	got := Misspelled([]string{"TELEGRAM_RATE_LIMT=5/s", "LOG_LEVEL=info", "REDIS_PORT=tcp://10.0.0.1:6379", "PATH=/bin", "LOGLEVEL=debug"})
	if len(got) != 2 || !strings.Contains(got[0], "TELEGRAM_RATE_LIMIT") || !strings.Contains(got[1], "LOG_LEVEL") {
		t.Fatalf("Misspelled = %q", got)
	}
}

// TestREADMESettingsTable checks README.md's settings table (## Configuration) against the
// struct tags: the same variables, and a non-secret variable's default shown as its
// envDefault (in backquotes) or, without a default, no value in backquotes.
func TestREADMESettingsTable(t *testing.T) {
	f, err := os.Open(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	row := regexp.MustCompile("^\\| `([A-Z0-9_]+)` \\| ([^|]*) \\|")
	inTable := false
	readme := map[string]string{}
	var order []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "## ") {
			inTable = line == "## Configuration"
			continue
		}
		if m := row.FindStringSubmatch(line); inTable && m != nil {
			readme[m[1]] = strings.TrimSpace(m[2])
			order = append(order, m[1])
		}
	}
	if len(readme) == 0 {
		t.Fatal("no settings table under ## Configuration in README.md")
	}
	cfg, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cfg.Settings() {
		cell, ok := readme[s.Name]
		if !ok {
			t.Errorf("README.md's settings table lacks %s (default %q)", s.Name, s.Default)
			continue
		}
		delete(readme, s.Name)
		switch {
		case s.Secret:
		case s.Default != "" && !strings.Contains(cell, "`"+s.Default+"`"):
			t.Errorf("README.md: %s default %q, the struct tag says %q", s.Name, cell, s.Default)
		case s.Default == "" && strings.Contains(cell, "`"):
			t.Errorf("README.md: %s default %q, the struct tag has none", s.Name, cell)
		}
	}
	for _, name := range order {
		if _, left := readme[name]; !left {
			continue
		}
		t.Errorf("README.md's settings table has %s, which is not a setting of internal/config", name)
	}
}

// TestConfig_EveryFieldHasAVariable fails on an exported field of Config without an env tag:
// nothing would ever set it.
func TestConfig_EveryFieldHasAVariable(t *testing.T) {
	var check func(rt reflect.Type)
	check = func(rt reflect.Type) {
		for i := 0; i < rt.NumField(); i++ {
			f := rt.Field(i)
			if !f.IsExported() || f.Tag.Get("env") != "" {
				continue
			}
			if f.Type.Kind() == reflect.Struct {
				check(f.Type)
				continue
			}
			t.Errorf("Config field %s has no env tag: no variable sets it", f.Name)
		}
	}
	check(reflect.TypeFor[Config]())
}
