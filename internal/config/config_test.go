package config

import (
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestParseRate(t *testing.T) {
	tests := []struct {
		in       string
		want     Rate
		interval time.Duration
		wantErr  bool
	}{
		{in: "30/min", want: Rate{30, time.Minute}, interval: 2 * time.Second},
		{in: "30/s", want: Rate{30, time.Second}, interval: time.Second / 30},
		{in: "3600/h", want: Rate{3600, time.Hour}, interval: time.Second},
		{in: " 5 / sec ", want: Rate{5, time.Second}, interval: 200 * time.Millisecond},
		{in: "10/minute", want: Rate{10, time.Minute}, interval: 6 * time.Second},
		{in: "0/s", wantErr: true},
		{in: "-1/s", wantErr: true},
		{in: "30", wantErr: true},
		{in: "30/day", wantErr: true},
		{in: "x/s", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRate(tt.in)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseRate(%q) = %v, want an error", tt.in, got)
				}
				return
			}
			if err != nil || got != tt.want || got.Interval() != tt.interval {
				t.Fatalf("ParseRate(%q) = %v (interval %s), %v; want %v (interval %s)", tt.in, got, got.Interval(), err, tt.want, tt.interval)
			}
		})
	}
}

func TestLoad_Defaults(t *testing.T) {
	cfg, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TelegramRateLimit != (Rate{30, time.Minute}) || cfg.TelegramMaxRetries != 3 || cfg.TelegramRequestTimeout != 30*time.Second {
		t.Fatalf("defaults = %+v", cfg)
	}
	if k, err := cfg.Key(); err != nil || len(k) != 32 {
		t.Fatalf("development key: %v (%d bytes)", err, len(k))
	}
}

func TestLoad_Production(t *testing.T) {
	strong := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"missing secrets", map[string]string{"APP_ENV": "production"}, "ENCRYPTION_KEY"},
		{"weak admin token", map[string]string{"APP_ENV": "production", "ENCRYPTION_KEY": strong, "ADMIN_TOKEN": "short"}, "ADMIN_TOKEN"},
		{"short key", map[string]string{"APP_ENV": "production", "ENCRYPTION_KEY": "abcd", "ADMIN_TOKEN": strings.Repeat("a", 40)}, "ENCRYPTION_KEY"},
		{"ok", map[string]string{"APP_ENV": "production", "ENCRYPTION_KEY": strong, "ADMIN_TOKEN": strings.Repeat("a", 40)}, ""},
		{"bad rate", map[string]string{"TELEGRAM_RATE_LIMIT": "fast"}, "TELEGRAM_RATE_LIMIT"},
		{"bad env", map[string]string{"APP_ENV": "staging"}, "APP_ENV"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(envOf(tt.env))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Load: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Load error = %v, want one naming %s", err, tt.wantErr)
			}
		})
	}
}

func TestConfig_SecretsNeverPrinted(t *testing.T) {
	cfg, err := Load(envOf(map[string]string{
		"ADMIN_TOKEN":    "super-secret-admin-token-value-1234567890",
		"ENCRYPTION_KEY": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"DATABASE_URL":   "postgres://app:hunter2@db:5432/botfleet",
	}))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	slog.New(slog.NewTextHandler(&b, nil)).Info("cfg", "config", cfg)
	out := b.String() + fmt.Sprintf("%v %+v", cfg, cfg)
	for _, secret := range []string{"super-secret-admin-token", "0123456789abcdef", "hunter2"} {
		if strings.Contains(out, secret) {
			t.Fatalf("output leaks %q: %s", secret, out)
		}
	}
}
