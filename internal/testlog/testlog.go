// Package testlog keeps what the test suite's processes log, and the secrets the tests
// issued, so that `make test` can check afterwards that no secret was ever logged
// (issue 6, "Secrets"; the check is Scan, run by ./internal/testlog/logscan).
//
// It is off unless BOTFLEET_TEST_LOG_DIR names a directory (`make test` sets it to
// .data/testlogs and empties it first). When on:
//   - Logger gives tests a debug-level JSON slog.Logger that appends to
//     <dir>/<test binary>-<pid>.log, for the services the test builds;
//   - NewWriter gives a file for a child process's stdout and stderr (the e2e harness tees
//     `botfleet serve` and `botfleet worker` into it);
//   - RecordSecret appends a secret the test world issued (tgemu's bot tokens, the
//     secret_token of every setWebhook, API keys, admin tokens, encryption keys) to
//     <dir>/secrets-<pid>.tsv.
//
// When off, Logger discards and NewWriter returns io.Discard, as tests did before.
// Only the standard library is imported, so that tgemu can use it.
package testlog

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
)

// EnvDir is the environment variable that turns logging to files on: the directory the
// files go to. A relative path is taken from the module root (the directory of go.mod), so
// that every package's test binary (each run in its own package directory) writes to the
// same place.
const EnvDir = "BOTFLEET_TEST_LOG_DIR"

// SecretsPrefix starts the name of every secrets file; LogSuffix ends every log file.
const (
	SecretsPrefix = "secrets-"
	LogSuffix     = ".log"
)

var (
	dirOnce sync.Once
	dir     string
)

// Dir is the directory named by BOTFLEET_TEST_LOG_DIR, made absolute and created; "" when
// the variable is unset or the directory cannot be created.
func Dir() string {
	dirOnce.Do(func() {
		d := os.Getenv(EnvDir)
		if d == "" {
			return
		}
		if !filepath.IsAbs(d) {
			d = filepath.Join(moduleRoot(), d)
		}
		if err := os.MkdirAll(d, 0o750); err != nil {
			fmt.Fprintf(os.Stderr, "testlog: %s=%s: %v\n", EnvDir, d, err)
			return
		}
		dir = d
	})
	return dir
}

// moduleRoot is the nearest directory at or above the working directory holding go.mod
// (the working directory itself when there is none).
func moduleRoot() string {
	wd, err := os.Getwd()
	if err != nil {
		return "."
	}
	for d := wd; ; {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		parent := filepath.Dir(d)
		if parent == d {
			return wd
		}
		d = parent
	}
}

// lazyFile is a file in Dir opened at the first write and never closed (the process's
// exit closes it); writes are serialised so that lines from goroutines do not interleave.
type lazyFile struct {
	name string
	once sync.Once
	mu   sync.Mutex
	f    *os.File
}

func (l *lazyFile) Write(p []byte) (int, error) {
	l.once.Do(func() {
		f, err := os.OpenFile(filepath.Join(Dir(), l.name), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
		if err != nil {
			fmt.Fprintf(os.Stderr, "testlog: %v\n", err)
			return
		}
		l.f = f
	})
	if l.f == nil {
		return len(p), nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

var (
	processLog = &lazyFile{name: fmt.Sprintf("%s-%d%s", filepath.Base(os.Args[0]), os.Getpid(), LogSuffix)}
	secrets    = &lazyFile{name: fmt.Sprintf("%s%d.tsv", SecretsPrefix, os.Getpid())}
	writerSeq  struct {
		sync.Mutex
		n int
	}
)

// Logger returns a debug-level JSON logger for the services a test builds: it appends to
// this test binary's log file in Dir, each line carrying the test's name (t may be nil, for
// package-level loggers), or discards when Dir is "".
func Logger(t testing.TB) *slog.Logger {
	if Dir() == "" {
		return slog.New(slog.DiscardHandler)
	}
	l := slog.New(slog.NewJSONHandler(processLog, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if t != nil {
		l = l.With("test", t.Name())
	}
	return l
}

// Writer returns a writer to this test binary's log file in Dir (the one Logger writes
// to), or io.Discard when Dir is "": for loggers a test builds itself.
func Writer() io.Writer {
	if Dir() == "" {
		return io.Discard
	}
	return processLog
}

// NewWriter returns a writer to a new file <name>-<pid>-<n>.log in Dir, for the output of
// a child process, or io.Discard when Dir is "".
func NewWriter(name string) io.Writer {
	if Dir() == "" {
		return io.Discard
	}
	writerSeq.Lock()
	writerSeq.n++
	n := writerSeq.n
	writerSeq.Unlock()
	return &lazyFile{name: fmt.Sprintf("%s-%d-%d%s", name, os.Getpid(), n, LogSuffix)}
}

// RecordSecret records value, a secret of the given kind ("bot_token", "secret_token",
// "api_key", ...), for Scan. Empty values are ignored; nothing happens when Dir is "".
func RecordSecret(kind, value string) {
	if value == "" || Dir() == "" {
		return
	}
	_, _ = fmt.Fprintf(secrets, "%s\t%s\n", kind, strconv.Quote(value))
}

// readSecrets reads the secrets files of dir: kind by value.
func readSecrets(dir string) (map[string]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, SecretsPrefix+"*.tsv"))
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, name := range files {
		f, err := os.Open(filepath.Clean(name))
		if err != nil {
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			kind, quoted, ok := cutTab(sc.Text())
			if !ok {
				continue
			}
			if v, err := strconv.Unquote(quoted); err == nil && v != "" {
				out[v] = kind
			}
		}
		err = sc.Err()
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
	return out, nil
}

func cutTab(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '\t' {
			return s[:i], s[i+1:], true
		}
	}
	return "", "", false
}
