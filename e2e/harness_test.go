// Package e2e drives the built botfleet binary (serve, worker, migrate, tenant create)
// against real PostgreSQL and Redis and the tgemu Telegram emulator.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/botfleet once per test run.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "botfleet-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "botfleet")
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Dir(filepath.Dir(file))
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/botfleet")
		cmd.Dir = root
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// platform is one botfleet deployment under test: its environment and the processes started.
type platform struct {
	t     *testing.T
	env   []string
	base  string // http://HTTP_ADDR
	admin string
	emu   *tgemu.Server
	// workers are the worker processes, in start order.
	workers []*proc
}

type options struct {
	emu     tgemu.Options
	env     map[string]string
	workers int
}

// newPlatform migrates a brand-new database with `botfleet migrate` (twice), then starts
// `botfleet serve` and opts.workers `botfleet worker` processes against the emulator.
func newPlatform(t *testing.T, opts options) *platform {
	t.Helper()
	binary(t) // build first, so a build error fails fast
	emu := tgemu.NewTest(t, opts.emu)
	dsn := newDatabaseURL(t)
	addr := freeAddr(t)
	p := &platform{t: t, base: "http://" + addr, admin: "e2e-admin-token", emu: emu}
	env := map[string]string{
		"DATABASE_URL":             dsn,
		"REDIS_URL":                testenv.RedisDBURL(t),
		"HTTP_ADDR":                addr,
		"PUBLIC_BASE_URL":          p.base,
		"TELEGRAM_API_URL":         emu.URL(),
		"ADMIN_TOKEN":              p.admin,
		"ENCRYPTION_KEY":           "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		"TELEGRAM_RATE_LIMIT":      "100/s",
		"TELEGRAM_REQUEST_TIMEOUT": "5s",
		"SWEEP_INTERVAL":           "2s",
		"LOG_LEVEL":                "warn",
		"PATH":                     os.Getenv("PATH"),
		"HOME":                     os.Getenv("HOME"),
	}
	if testlog.Dir() != "" {
		// `make test` scans the processes' output for secrets: let them log everything.
		env["LOG_LEVEL"] = "debug"
	}
	for k, v := range opts.env {
		env[k] = v
	}
	for k, v := range env {
		p.env = append(p.env, k+"="+v)
	}
	for _, k := range []string{"ADMIN_TOKEN", "ENCRYPTION_KEY", "ENCRYPTION_KEYS"} {
		testlog.RecordSecret(strings.ToLower(k), env[k])
	}
	for i := 0; i < 2; i++ { // migrate is safe to run twice
		out, err := p.cmd("migrate").CombinedOutput()
		_, _ = testlog.NewWriter("e2e-migrate").Write(out)
		if err != nil {
			t.Fatalf("botfleet migrate (run %d): %v\n%s", i+1, err, out)
		}
	}
	p.start("serve")
	workers := opts.workers
	if workers == 0 {
		workers = 1
	}
	for i := 0; i < workers; i++ {
		p.workers = append(p.workers, p.start("worker"))
	}
	p.waitHealthy()
	return p
}

// newDatabaseURL returns the URL of a database that does not exist yet (botfleet migrate
// creates it), dropped at cleanup.
func newDatabaseURL(t *testing.T) string {
	name := fmt.Sprintf("botfleet_e2e_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000_000)
	base := testenv.DatabaseURL()
	i := strings.LastIndex(base, "/")
	q := ""
	if j := strings.Index(base[i:], "?"); j >= 0 {
		q = base[i+j:]
	}
	dsn := base[:i] + "/" + name + q
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base[:i]+"/postgres"+q)
		if err != nil {
			return
		}
		defer conn.Close(ctx)
		_, _ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return dsn
}

func (p *platform) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(binary(p.t), args...)
	cmd.Env = p.env
	return cmd
}

// proc is a long-lived botfleet process started by platform.start.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	out  *syncBuffer
}

// exited reports whether the process has exited within d.
func (pr *proc) exited(d time.Duration) bool {
	select {
	case <-pr.done:
		return true
	case <-time.After(d):
		return false
	}
}

// start runs a long-lived subcommand, stopped with SIGTERM at cleanup; its output is kept,
// printed when the test fails, and copied to a testlog file (scanned for secrets by
// `make test`).
func (p *platform) start(args ...string) *proc {
	p.t.Helper()
	cmd := p.cmd(args...)
	buf := &syncBuffer{}
	out := io.MultiWriter(buf, testlog.NewWriter("e2e-"+args[0]))
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	pr := &proc{cmd: cmd, done: make(chan struct{}), out: buf}
	go func() { _ = cmd.Wait(); close(pr.done) }()
	p.t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		if !pr.exited(40 * time.Second) {
			_ = cmd.Process.Kill()
			<-pr.done
		}
		if p.t.Failed() {
			p.t.Logf("--- botfleet %s output ---\n%s", strings.Join(args, " "), buf.String())
		}
	})
	return pr
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (p *platform) waitHealthy() {
	p.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(p.base + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	p.t.Fatal("botfleet serve did not become ready")
}

// do sends a JSON request with an optional bearer token and decodes the JSON answer into out
// (when non-nil). It returns the status code.
func (p *platform) do(method, path, token string, body any, out any) int {
	p.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		buf, err := json.Marshal(b)
		if err != nil {
			p.t.Fatal(err)
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequest(method, p.base+path, rd)
	if err != nil {
		p.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			p.t.Fatalf("%s %s: decode %q: %v", method, path, raw, err)
		}
	}
	return resp.StatusCode
}

// eventually polls cond every 100 ms until it returns true or timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}
