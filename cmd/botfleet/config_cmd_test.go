package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/botfleet/botfleet/internal/config"
)

func TestConfigCommand(t *testing.T) {
	env := map[string]string{
		"ADMIN_TOKEN":         "admin-SECRET-0123456789",
		"DATABASE_URL":        "postgres://app:PASSWORD@db.internal:5432/botfleet",
		"TELEGRAM_RATE_LIMIT": "40/s",
	}
	getenv := func(k string) string { return env[k] }
	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"config"}, getenv, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"TELEGRAM_RATE_LIMIT=40/s\n", "ADMIN_TOKEN=[REDACTED]\n", "WORKER_CONCURRENCY=20\n", "db.internal"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "SECRET") || strings.Contains(text, "PASSWORD") || strings.Contains(text, "dev-encryption") {
		t.Errorf("output leaks a secret:\n%s", text)
	}
	if n := strings.Count(text, "\n"); n != len(config.Variables()) {
		t.Errorf("%d lines, want one per variable (%d)", n, len(config.Variables()))
	}

	out.Reset()
	if err := run(context.Background(), []string{"config", "--json"}, getenv, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	var m map[string]string
	if err := json.Unmarshal(out.Bytes(), &m); err != nil || m["TELEGRAM_RATE_LIMIT"] != "40/s" {
		t.Fatalf("--json: %v %s", err, out.String())
	}

	env["LOG_LEVEL"] = "verbose"
	err := run(context.Background(), []string{"config"}, getenv, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "LOG_LEVEL") {
		t.Fatalf("LOG_LEVEL=verbose: %v, want an error naming LOG_LEVEL", err)
	}
}
