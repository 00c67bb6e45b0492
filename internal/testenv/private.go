package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// Private servers: for tests that stop a dependency. The shared PostgreSQL and Redis
// (DATABASE_URL, REDIS_URL) must never be stopped or reconfigured, because other test
// binaries use them at the same time; a test that needs an outage starts its own server on
// a free port in a temporary directory and stops that one.

// Binaries of the private servers; PG_BIN and REDIS_SERVER override them.
var (
	pgBinDir    = envOr("PG_BIN", "/usr/local/bin")
	redisServer = envOr("REDIS_SERVER", "/usr/bin/redis-server")
)

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// PrivatePostgres is a PostgreSQL server of one test (initdb in a temporary directory,
// trust authentication, 127.0.0.1 on a free port), which the test may Stop and Start.
type PrivatePostgres struct {
	t    testing.TB
	Port int
	dir  string // owns data/ and the log
	mu   sync.Mutex
	up   bool
}

// StartPostgres initialises and starts a private PostgreSQL server, stopped and deleted at
// cleanup. The test is skipped when initdb is not installed. As root, the server runs as the
// "postgres" user (PostgreSQL refuses root).
func StartPostgres(t testing.TB) *PrivatePostgres {
	t.Helper()
	if _, err := os.Stat(filepath.Join(pgBinDir, "initdb")); err != nil {
		t.Skipf("testenv: no initdb in %s (set PG_BIN): %v", pgBinDir, err)
	}
	dir, err := os.MkdirTemp("", "botfleet-pg-")
	if err != nil {
		t.Fatal(err)
	}
	p := &PrivatePostgres{t: t, Port: freePort(t), dir: dir}
	t.Cleanup(func() {
		_ = p.stop("immediate")
		_ = os.RemoveAll(dir)
	})
	data := filepath.Join(dir, "data")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Skipf("testenv: running as root and no postgres user: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range []string{dir, data} {
			if err := os.Chown(p, uid, gid); err != nil {
				t.Fatal(err)
			}
		}
	}
	if out, err := p.pgCmd("initdb", "-D", data, "--auth=trust", "-U", "postgres", "-E", "UTF8",
		"--no-locale", "--no-sync").CombinedOutput(); err != nil {
		t.Fatalf("testenv: initdb: %v\n%s", err, out)
	}
	p.Start()
	return p
}

// pgCmd runs a PostgreSQL binary, as the postgres user when the test runs as root.
func (p *PrivatePostgres) pgCmd(name string, args ...string) *exec.Cmd {
	bin := filepath.Join(pgBinDir, name)
	var cmd *exec.Cmd
	if os.Geteuid() == 0 {
		cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
	} else {
		cmd = exec.Command(bin, args...)
	}
	cmd.Dir = p.dir
	return cmd
}

// URL returns the DSN of database name on the server.
func (p *PrivatePostgres) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.Port, name)
}

// Start starts the server (again) on its port and waits until it accepts connections.
func (p *PrivatePostgres) Start() {
	p.t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.up {
		return
	}
	// fsync off: the tests stop the server cleanly or kill processes, never the machine.
	opts := fmt.Sprintf("-c listen_addresses=127.0.0.1 -p %d -c unix_socket_directories='' -c fsync=off -c max_connections=200", p.Port)
	cmd := p.pgCmd("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-l", filepath.Join(p.dir, "postgres.log"),
		"-w", "-t", "60", "-o", opts, "start")
	if out, err := cmd.CombinedOutput(); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.dir, "postgres.log"))
		p.t.Fatalf("testenv: pg_ctl start: %v\n%s\n%s", err, out, log)
	}
	p.up = true
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		conn, err := pgx.Connect(ctx, p.URL("postgres"))
		if err == nil {
			_ = conn.Close(ctx)
			return
		}
		if ctx.Err() != nil {
			p.t.Fatalf("testenv: private PostgreSQL not ready: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop stops the server with pg_ctl's fast mode (connections are closed, clients get errors)
// and waits until it has exited.
func (p *PrivatePostgres) Stop() {
	p.t.Helper()
	if err := p.stop("fast"); err != nil {
		p.t.Fatal(err)
	}
}

func (p *PrivatePostgres) stop(mode string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.up {
		return nil
	}
	out, err := p.pgCmd("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", mode, "-w", "-t", "60", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("testenv: pg_ctl stop: %v\n%s", err, out)
	}
	p.up = false
	return nil
}

// PrivateRedis is a redis-server of one test (127.0.0.1 on a free port, working directory in
// a temporary directory), which the test may Stop, Kill and Start.
type PrivateRedis struct {
	t    testing.TB
	Port int
	Dir  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *strings.Builder
}

// StartRedis starts a private redis-server with extra arguments (e.g. "--appendonly", "yes";
// the default is no persistence at all: --save "" --appendonly no), stopped and deleted at
// cleanup. The test is skipped when redis-server is not installed.
func StartRedis(t testing.TB, args ...string) *PrivateRedis {
	t.Helper()
	if _, err := os.Stat(redisServer); err != nil {
		t.Skipf("testenv: no %s (set REDIS_SERVER): %v", redisServer, err)
	}
	dir, err := os.MkdirTemp("", "botfleet-redis-")
	if err != nil {
		t.Fatal(err)
	}
	r := &PrivateRedis{t: t, Port: freePort(t), Dir: dir, args: args}
	t.Cleanup(func() {
		r.Kill()
		_ = os.RemoveAll(dir)
	})
	r.Start()
	return r
}

// Addr is the server's host:port.
func (r *PrivateRedis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.Port) }

// URL returns the redis:// URL of database db.
func (r *PrivateRedis) URL(db int) string { return fmt.Sprintf("redis://%s/%d", r.Addr(), db) }

// Client returns a client of database 0, closed at cleanup.
func (r *PrivateRedis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr()})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// Start starts the server (again, with the same arguments and directory, so that an AOF or
// RDB file is loaded) and waits until it answers PING.
func (r *PrivateRedis) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return
	}
	args := []string{"--port", strconv.Itoa(r.Port), "--bind", "127.0.0.1", "--dir", r.Dir,
		"--save", "", "--appendonly", "no", "--daemonize", "no", "--logfile", ""}
	args = append(args, r.args...) // later arguments win
	cmd := exec.Command(redisServer, args...)
	r.log = &strings.Builder{}
	w := &lockedWriter{b: r.log}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("testenv: start redis-server: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	r.cmd, r.done = cmd, done
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return
		}
		select {
		case <-done:
			r.t.Fatalf("testenv: redis-server exited: %s", r.log.String())
		default:
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("testenv: private Redis not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop shuts the server down with SIGTERM (Redis then writes its AOF or RDB file when
// persistence is configured) and waits until it has exited.
func (r *PrivateRedis) Stop() { r.signal(syscall.SIGTERM) }

// Kill stops the server with SIGKILL (no shutdown save) and waits until it has exited.
func (r *PrivateRedis) Kill() { r.signal(syscall.SIGKILL) }

func (r *PrivateRedis) signal(sig syscall.Signal) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
	}
	r.cmd, r.done = nil, nil
}

type lockedWriter struct {
	mu sync.Mutex
	b  *strings.Builder
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
