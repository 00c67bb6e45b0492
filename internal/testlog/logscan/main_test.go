package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestRun checks the exit codes the Makefile relies on: 1 for a planted token, 1 for a
// directory with nothing to check, 0 for clean logs.
func TestRun(t *testing.T) {
	token := "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
	write := func(dir, name, content string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	clean := t.TempDir()
	write(clean, "secrets-1.tsv", "bot_token\t"+strconv.Quote(token)+"\n")
	write(clean, "serve.log", "level=INFO msg=\"bot registered\" telegram_bot_id=7123456789\n")

	leaked := t.TempDir()
	write(leaked, "secrets-1.tsv", "bot_token\t"+strconv.Quote(token)+"\n")
	write(leaked, "serve.log", "level=INFO msg=ok\nlevel=ERROR msg=\"send failed\" err=\"Post https://api.telegram.org/bot"+token+"/sendMessage: timeout\"\n")

	tests := []struct {
		name     string
		args     []string
		env      string
		wantCode int
		wantOut  string
	}{
		{"clean", []string{clean}, "", 0, "0 findings"},
		{"clean from env", nil, clean, 0, "0 findings"},
		{"planted token", []string{leaked}, "", 1, "serve.log:2"},
		{"empty dir", []string{t.TempDir()}, "", 1, "nothing to check"},
		{"no dir", nil, "", 2, "no directory"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out strings.Builder
			if code := run(tt.args, tt.env, &out); code != tt.wantCode || !strings.Contains(out.String(), tt.wantOut) {
				t.Fatalf("run = %d, output:\n%s\nwant %d and %q", code, out.String(), tt.wantCode, tt.wantOut)
			}
			if strings.Contains(out.String(), token[11:]) {
				t.Fatalf("logscan printed the token: %s", out.String())
			}
		})
	}
}
