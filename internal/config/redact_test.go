package config

import (
	"io"
	"log/slog"
	"strings"
	"testing"
)

func TestRedactURL(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"postgres url", "postgres://app:hunter2@db:5432/botfleet?sslmode=disable", "postgres://app:xxxxx@db:5432/botfleet?sslmode=disable"},
		{"postgresql url", "postgresql://app:hunter2@db/botfleet", "postgresql://app:xxxxx@db/botfleet"},
		{"password with @ and /", "postgres://app:hun@ter/2@db:5432/botfleet", "postgres://app:xxxxx@db:5432/botfleet"},
		{"multi-host url", "postgres://app:hunter2@db1:5432,db2:5432/botfleet", "postgres://app:xxxxx@db1:5432,db2:5432/botfleet"},
		{"no password", "postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable", "postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable"},
		{"query password", "postgres://app@db/botfleet?password=hunter2&sslmode=disable", "postgres://app@db/botfleet?password=xxxxx&sslmode=disable"},
		{"query &password", "postgres://db/botfleet?sslmode=disable&password=hunter2", "postgres://db/botfleet?sslmode=disable&password=xxxxx"},
		{"query PASSWORD and sslpassword", "postgres://db/b?PASSWORD=hunter2&sslpassword=hunter3#x", "postgres://db/b?PASSWORD=xxxxx&sslpassword=xxxxx#x"},
		{"userinfo and query", "postgres://app:hunter2@db/b?password=hunter3", "postgres://app:xxxxx@db/b?password=xxxxx"},
		{"keyword", "host=db user=app password=hunter2 dbname=botfleet", "host=db user=app password=xxxxx dbname=botfleet"},
		{"keyword spaces", "host=db password = hunter2 dbname=botfleet", "host=db password = xxxxx dbname=botfleet"},
		{"keyword quoted", "host=db password='hunter 2' dbname=botfleet", "host=db password=xxxxx dbname=botfleet"},
		{"keyword quoted escape", `host=db password='it\'s hunter2' dbname=botfleet`, "host=db password=xxxxx dbname=botfleet"},
		{"keyword first", "password=hunter2 host=db", "password=xxxxx host=db"},
		{"keyword sslpassword", "host=db sslpassword=hunter2", "host=db sslpassword=xxxxx"},
		{"keyword no password", "host=db user=app dbname=botfleet", "host=db user=app dbname=botfleet"},
		{"redis password only", "redis://:hunter2@127.0.0.1:6379/0", "redis://:xxxxx@127.0.0.1:6379/0"},
		{"redis user and password", "redis://app:hunter2@127.0.0.1:6379/0", "redis://app:xxxxx@127.0.0.1:6379/0"},
		{"rediss", "rediss://app:hunter2@cache.example:6380/1?dial_timeout=3s", "rediss://app:xxxxx@cache.example:6380/1?dial_timeout=3s"},
		{"redis query password", "redis://127.0.0.1:6379/0?password=hunter2", "redis://127.0.0.1:6379/0?password=xxxxx"},
		{"redis no auth", "redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"},
		{"unix socket", "unix://app:hunter2@/run/redis.sock?db=1", "unix://app:xxxxx@/run/redis.sock?db=1"},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := RedactURL(tt.in)
			if got != tt.want {
				t.Fatalf("RedactURL(%q) = %q, want %q", tt.in, got, tt.want)
			}
			if strings.Contains(got, "hunter") {
				t.Fatalf("RedactURL(%q) = %q still holds the password", tt.in, got)
			}
		})
	}
}

// TestConfig_StartupLogRedactsEveryDSNForm logs the configuration the way the startup log
// does (slog, "config" attribute) with each DSN form in DATABASE_URL and REDIS_URL.
func TestConfig_StartupLogRedactsEveryDSNForm(t *testing.T) {
	for _, dsn := range []struct{ db, redis string }{
		{"postgres://app:hunter2@db/b", "redis://:hunter3@cache:6379/0"},
		{"host=db user=app password='hunter 2'", "rediss://app:hunter3@cache:6380/0"},
		{"postgres://db/b?sslmode=disable&password=hunter2", "redis://cache:6379/0?password=hunter3"},
	} {
		cfg, err := Load(envOf(map[string]string{"DATABASE_URL": dsn.db, "REDIS_URL": dsn.redis}))
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		logConfig(&b, cfg)
		if strings.Contains(b.String(), "hunter") {
			t.Fatalf("startup log leaks a password: %s", b.String())
		}
		if !strings.Contains(b.String(), "xxxxx") {
			t.Fatalf("startup log shows no redacted DSN: %s", b.String())
		}
	}
}

// logConfig logs cfg as cmd/botfleet's startup line does.
func logConfig(w io.Writer, cfg Config) {
	slog.New(slog.NewTextHandler(w, nil)).Info("botfleet starting", "config", cfg)
}

func TestLoad_MalformedDSNErrorHidesPassword(t *testing.T) {
	for _, env := range []map[string]string{
		{"DATABASE_URL": "postgres://app:hunter2@db:xx/b"},
		{"REDIS_URL": "redis://:hunter2@cache:xx/0"},
	} {
		_, err := Load(envOf(env))
		if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "xxxxx") {
			t.Fatalf("Load(%v) = %v, want a redacted parse error", env, err)
		}
	}
}
