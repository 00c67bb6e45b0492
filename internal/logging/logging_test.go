package logging

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestHandler_ScopeAttrs(t *testing.T) {
	var buf bytes.Buffer
	log := New(&buf, FormatJSON, slog.LevelDebug)
	ctx := NewContext(context.Background(), slog.String(KeyRequestID, "r1"))
	child, cancel := context.WithCancel(ctx)
	defer cancel()
	Add(child, slog.String(KeyTenantID, "t1")) // visible through the parent: one scope
	log.InfoContext(ctx, "one")
	log.With(KeyTenantID, "own").InfoContext(child, "two", KeyRequestID, "explicit")
	log.Info("no context")
	log.WithGroup("g").InfoContext(ctx, "grouped")

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
		lines = append(lines, m)
	}
	if lines[0][KeyRequestID] != "r1" || lines[0][KeyTenantID] != "t1" {
		t.Errorf("line one: %v", lines[0])
	}
	if lines[1][KeyRequestID] != "explicit" || lines[1][KeyTenantID] != "own" || strings.Count(buf.String(), `"tenant_id"`) != 2 {
		t.Errorf("line two (the record's and the logger's own keys win, no duplicate keys): %s", buf.String())
	}
	if _, ok := lines[2][KeyRequestID]; ok {
		t.Errorf("a line without context carries scope attrs: %v", lines[2])
	}
	if _, ok := lines[3][KeyRequestID]; ok {
		t.Errorf("a grouped line carries scope attrs at top level: %v", lines[3])
	}
}

func TestParseLevel(t *testing.T) {
	if l, err := ParseLevel("warn"); err != nil || l != slog.LevelWarn {
		t.Fatalf("warn: %v %v", l, err)
	}
	if _, err := ParseLevel("verbose"); err == nil {
		t.Fatal("verbose: no error")
	}
}

// TestOneErrorKey fails when a log call of the project logs an error under another key than
// "error" ("err", "e"...): one key for errors everywhere, so that they can be searched.
func TestOneErrorKey(t *testing.T) {
	bad := regexp.MustCompile(`(?:\.(?:Debug|Info|Warn|Error)(?:Context)?\(|slog\.(?:Any|String)\().*"(?:err|e|errors?Msg|cause)",`)
	root := filepath.Join("..", "..")
	n := 0
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "node_modules") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(p, ".go") {
			return nil
		}
		b, err := os.ReadFile(p) //nolint:gosec // G122: a test reading the repository's own source files
		if err != nil {
			return err
		}
		n++
		for i, line := range strings.Split(string(b), "\n") {
			if bad.MatchString(line) {
				t.Errorf("%s:%d logs an error under another key than %q: %s", p, i+1, KeyError, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil || n < 50 {
		t.Fatalf("walked %d files: %v", n, err)
	}
}

// BenchmarkHandler is an access-log-like record through Handler with a request scope of
// three attributes, against the bare JSON handler.
func BenchmarkHandler(b *testing.B) {
	ctx := NewContext(context.Background(), slog.String(KeyRequestID, "r1"), slog.String(KeyTenantID, "t1"), slog.String(KeyBotAppID, "b1"))
	for _, bc := range []struct {
		name string
		log  *slog.Logger
	}{
		{"bare", slog.New(slog.NewJSONHandler(io.Discard, nil))},
		{"scoped", New(io.Discard, FormatJSON, slog.LevelInfo)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				bc.log.LogAttrs(ctx, slog.LevelInfo, "http request", slog.String("method", "GET"), slog.Int("status", 200))
			}
		})
	}
}
