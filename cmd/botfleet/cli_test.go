package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// syncBuffer is a bytes.Buffer safe for a running command and the test reading it.
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

// cliEnv is a process environment for run.
type cliEnv map[string]string

func (e cliEnv) getenv(k string) string { return e[k] }

func (e cliEnv) with(kv ...string) cliEnv {
	out := cliEnv{}
	for k, v := range e {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// runCLI runs the CLI in-process and returns its stdout, stderr and error (the error
// makes main exit 1).
func runCLI(t *testing.T, ctx context.Context, env cliEnv, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr syncBuffer
	err := run(ctx, args, env.getenv, &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// countingListener accepts and counts TCP connections (then closes them): a REDIS_URL
// pointing at it proves whether a command dials Redis.
func countingListener(t *testing.T) (addr string, dials *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	dials = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			dials.Add(1)
			c.Close()
		}
	}()
	return ln.Addr().String(), dials
}

// baseEnv is a development configuration on a fresh migrated database, a reserved Redis
// database, a tgemu emulator and a free HTTP port (PUBLIC_BASE_URL points at it).
func baseEnv(t *testing.T) (cliEnv, *tgemu.Server) {
	t.Helper()
	emu := tgemu.NewTest(t, tgemu.Options{})
	addr := freeAddr(t)
	return cliEnv{
		"DATABASE_URL":        testenv.DBURL(t),
		"REDIS_URL":           testenv.RedisDBURL(t),
		"TELEGRAM_API_URL":    emu.URL(),
		"HTTP_ADDR":           addr,
		"PUBLIC_BASE_URL":     "http://" + addr,
		"TELEGRAM_RATE_LIMIT": "30/s",
		"SHUTDOWN_TIMEOUT":    "5s",
		"DATABASE_MAX_CONNS":  "4",  // the shared PostgreSQL allows 100 connections for everyone
		"SWEEP_INTERVAL":      "1s", // the scheduler runs and is shut down
	}, emu
}

// withDBName returns dsn naming database name.
func withDBName(t *testing.T, dsn, name string) string {
	t.Helper()
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	return u.String()
}

func TestVersion(t *testing.T) {
	ctx := context.Background()
	sub, _, err := runCLI(t, ctx, cliEnv{}, "version")
	if err != nil {
		t.Fatal(err)
	}
	flag, _, err := runCLI(t, ctx, cliEnv{}, "--version")
	if err != nil {
		t.Fatal(err)
	}
	if sub != flag || !strings.Contains(sub, version) {
		t.Fatalf("`botfleet version` = %q, `botfleet --version` = %q: want the same line with %q", sub, flag, version)
	}
}

// TestConfigError: an invalid setting is one plain error naming the variable, no usage.
func TestConfigError(t *testing.T) {
	for _, args := range [][]string{{"tenant", "create", "--name", "x"}, {"migrate"}, {"serve"}, {"doctor"}} {
		stdout, stderr, err := runCLI(t, context.Background(), cliEnv{"TELEGRAM_RATE_LIMIT": "lots"}, args...)
		if err == nil || !strings.Contains(err.Error()+stdout, "TELEGRAM_RATE_LIMIT") {
			t.Fatalf("%v: err = %v, want one naming TELEGRAM_RATE_LIMIT", args, err)
		}
		if strings.Contains(stdout+stderr, "Usage:") || strings.Contains(stderr, "goroutine") {
			t.Fatalf("%v: usage or stack printed:\n%s%s", args, stdout, stderr)
		}
	}
}

// TestMigrateAndTenantCreate: on a database that does not exist, `tenant create` says to
// run `botfleet migrate`; `migrate` creates and migrates it; then `tenant create` prints
// the tenant. Neither logs the startup configuration nor dials Redis.
func TestMigrateAndTenantCreate(t *testing.T) {
	ctx := context.Background()
	env, _ := baseEnv(t)
	redisAddr, dials := countingListener(t)
	name := fmt.Sprintf("botfleet_cli_%d", time.Now().UnixNano())
	dsn := withDBName(t, env["DATABASE_URL"], name)
	t.Cleanup(func() {
		admin, err := pgx.Connect(context.Background(), withDBName(t, dsn, "postgres"))
		if err != nil {
			t.Error(err)
			return
		}
		defer admin.Close(context.Background())
		if _, err := admin.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	env = env.with("DATABASE_URL", dsn, "REDIS_URL", "redis://"+redisAddr+"/0")

	_, stderr, err := runCLI(t, ctx, env, "tenant", "create", "--name", "Acme")
	if err == nil || !strings.Contains(err.Error(), "run `botfleet migrate`") || strings.Contains(err.Error(), "SQLSTATE") {
		t.Fatalf("tenant create on a missing database: err = %v, want a `run botfleet migrate` hint without SQLSTATE", err)
	}
	if stderr != "" {
		t.Fatalf("tenant create logged:\n%s", stderr)
	}

	stdout, stderr, err := runCLI(t, ctx, env, "migrate")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stdout, "created") || !strings.Contains(stdout, "migrations: applied") || stderr != "" {
		t.Fatalf("migrate: stdout %q, stderr %q: want what it did on stdout, nothing on stderr", stdout, stderr)
	}
	stdout, _, err = runCLI(t, ctx, env, "migrate")
	if err != nil || strings.TrimSpace(stdout) != "migrations: up to date" {
		t.Fatalf("second migrate: %q, %v", stdout, err)
	}

	stdout, stderr, err = runCLI(t, ctx, env, "tenant", "create", "--name", "Acme")
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		ID     string `json:"id"`
		Name   string `json:"name"`
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(stdout), &got); err != nil || got.Name != "Acme" || got.APIKey == "" || got.ID == "" {
		t.Fatalf("tenant create printed %q (%v)", stdout, err)
	}
	if stderr != "" {
		t.Fatalf("tenant create logged (the startup line belongs to serve/worker):\n%s", stderr)
	}
	if n := dials.Load(); n != 0 {
		t.Fatalf("migrate and tenant create dialled Redis %d times; they do not need it", n)
	}
}

// TestServe_RefusesUnmigrated: serve and worker refuse to start on a database that lacks a
// migration, saying what to do.
func TestServe_RefusesUnmigrated(t *testing.T) {
	ctx := context.Background()
	env, _ := baseEnv(t)
	db, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	if _, err := db.Exec(ctx, "DELETE FROM bun_migrations WHERE id = (SELECT max(id) FROM bun_migrations)"); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"serve", "worker"} {
		_, _, err := runCLI(t, ctx, env, cmd)
		if err == nil || !strings.Contains(err.Error(), "not applied") || !strings.Contains(err.Error(), "run `botfleet migrate`") {
			t.Fatalf("%s on an unmigrated database: err = %v", cmd, err)
		}
	}
}

// startAll runs `botfleet all` until the test ends and waits for /healthz; it returns the
// process's stderr and a stop function that returns run's error.
func startAll(t *testing.T, env cliEnv) (*syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"all"}, env.getenv, &stdout, &stderr) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(20 * time.Second):
				runErr = errors.New("botfleet all did not stop within 20s")
			}
		})
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(stderr.String(), "http listening") {
		select {
		case err := <-done:
			t.Fatalf("botfleet all exited: %v\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no `http listening` within 15s:\n%s", stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Logged only once bound: the port answers at once, without retrying.
	resp, err := http.Get(env["PUBLIC_BASE_URL"] + "/healthz")
	if err != nil {
		t.Fatalf("`http listening` was logged but GET /healthz fails: %v", err)
	}
	resp.Body.Close()
	return &stderr, stop
}

// TestAll_HealthcheckAndCleanShutdown: `healthcheck` passes against a running serve and
// worker and fails once they stop; a clean shutdown logs no ERROR (asynq's scheduler used
// to log "Failed to close redis client connection" on every stop).
func TestAll_HealthcheckAndCleanShutdown(t *testing.T) {
	ctx := context.Background()
	env, _ := baseEnv(t)

	// Before the worker runs, --worker fails: no asynq heartbeat of this host.
	if out, _, err := runCLI(t, ctx, env, "healthcheck", "--worker"); err == nil {
		t.Fatalf("healthcheck --worker with no worker running passed: %s", out)
	}

	stderr, stop := startAll(t, env)
	if out, _, err := runCLI(t, ctx, env, "healthcheck"); err != nil || !strings.Contains(out, "ok") {
		t.Fatalf("healthcheck (serve): %q, %v", out, err)
	}
	if _, _, err := runCLI(t, ctx, env, "healthcheck", "--url", env["PUBLIC_BASE_URL"]+"/readyz"); err != nil {
		t.Fatalf("healthcheck --url /readyz: %v", err)
	}
	if _, _, err := runCLI(t, ctx, env, "healthcheck", "--url", env["PUBLIC_BASE_URL"]+"/nope"); err == nil {
		t.Fatal("healthcheck --url answering 404 passed")
	}
	var out string
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if out, _, err = runCLI(t, ctx, env, "healthcheck", "--worker"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("healthcheck --worker with the worker running: %v (%s)", err, out)
	}
	time.Sleep(1500 * time.Millisecond) // let the periodic sweeps (SWEEP_INTERVAL=1s) run once
	if err := stop(); err != nil {
		t.Fatalf("botfleet all: %v", err)
	}
	logs := stderr.String()
	if strings.Contains(logs, "level=ERROR") || strings.Contains(logs, `"level":"ERROR"`) {
		t.Fatalf("a clean shutdown logged an ERROR:\n%s", logs)
	}
	if !strings.Contains(logs, "worker stopped") || !strings.Contains(logs, "botfleet starting") {
		t.Fatalf("want the startup line and `worker stopped` in the logs:\n%s", logs)
	}
	if _, _, err := runCLI(t, ctx, env, "healthcheck"); err == nil {
		t.Fatal("healthcheck passed after serve stopped")
	}
}

// TestDoctor: all OK (warnings allowed) against a running platform with a registered bot;
// a wrong DATABASE_URL is a FAIL with the fix, and the command fails (exit status 1).
func TestDoctor(t *testing.T) {
	ctx := context.Background()
	env, emu := baseEnv(t)
	_, stop := startAll(t, env)
	defer func() { _ = stop() }()

	// A tenant and a bot registered through the API (setWebhook under PUBLIC_BASE_URL).
	stdout, _, err := runCLI(t, ctx, env, "tenant", "create", "--name", "Doc")
	if err != nil {
		t.Fatal(err)
	}
	var tn struct {
		APIKey string `json:"api_key"`
	}
	if err := json.Unmarshal([]byte(stdout), &tn); err != nil {
		t.Fatal(err)
	}
	info := emu.CreateBot("doctor_bot", "Doctor")
	req, _ := http.NewRequest(http.MethodPost, env["PUBLIC_BASE_URL"]+"/telegram/v1/bots/",
		strings.NewReader(fmt.Sprintf(`{"name":"doc","bot_token":%q}`, info.Token)))
	req.Header.Set("Authorization", "Bearer "+tn.APIKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("register bot: %s", resp.Status)
	}

	out, _, err := runCLI(t, ctx, env, "doctor")
	if err != nil {
		t.Fatalf("doctor against a healthy platform: %v\n%s", err, out)
	}
	for _, want := range []string{"OK    postgresql ", "OK    migrations ", "OK    redis ", "OK    telegram api ", "OK    public base url ", "OK    webhooks ", "1 bot(s)", " 0 FAIL"} {
		if !strings.Contains(out, want) {
			t.Fatalf("doctor output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "FAIL ") {
		t.Fatalf("doctor reported a failure:\n%s", out)
	}

	// PUBLIC_BASE_URL moved: it does not reach serve, and the bot's webhook is not under it.
	moved := env.with("PUBLIC_BASE_URL", "http://"+freeAddr(t))
	out, _, err = runCLI(t, ctx, moved, "doctor")
	if err == nil {
		t.Fatalf("doctor with PUBLIC_BASE_URL moved succeeded:\n%s", out)
	}
	for _, want := range []string{"FAIL  public base url ", "FAIL  webhooks ", "is not under PUBLIC_BASE_URL", "fix: the tenant deletes the bot and registers it again"} {
		if !strings.Contains(out, want) {
			t.Fatalf("doctor output lacks %q:\n%s", want, out)
		}
	}

	// PostgreSQL on a port where nothing listens.
	bad := env.with("DATABASE_URL", "postgres://postgres@"+freeAddr(t)+"/botfleet?sslmode=disable")
	out, _, err = runCLI(t, ctx, bad, "doctor")
	if err == nil {
		t.Fatalf("doctor with a wrong DATABASE_URL succeeded:\n%s", out)
	}
	for _, want := range []string{"FAIL  postgresql ", "fix: start PostgreSQL, or fix DATABASE_URL", "SKIP  migrations ", "OK    redis "} {
		if !strings.Contains(out, want) {
			t.Fatalf("doctor output lacks %q:\n%s", want, out)
		}
	}
	// A database that does not exist: the fix is `botfleet migrate`.
	missing := env.with("DATABASE_URL", withDBName(t, env["DATABASE_URL"], "botfleet_no_such_db"))
	out, _, err = runCLI(t, ctx, missing, "doctor")
	if err == nil || !strings.Contains(out, "fix: run `botfleet migrate`") {
		t.Fatalf("doctor on a missing database: %v\n%s", err, out)
	}
}
