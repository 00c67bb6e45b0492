// Package testenv gives tests real dependencies: a fresh PostgreSQL database cloned from a
// migrated template, an isolated Redis database, and the tgemu Telegram emulator.
//
// DATABASE_URL and REDIS_URL (the same variables the service reads) point at the servers;
// `make test` starts local ones when they are absent (scripts/services.sh).
package testenv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/migrations"
)

// Default server addresses, the same as the service's development defaults.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/botfleet?sslmode=disable"
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
)

// DatabaseURL is the configured server DSN (DATABASE_URL or the default).
func DatabaseURL() string {
	if v := os.Getenv("DATABASE_URL"); v != "" {
		return v
	}
	return DefaultDatabaseURL
}

// RedisURL is the configured Redis URL (REDIS_URL or the default).
func RedisURL() string {
	if v := os.Getenv("REDIS_URL"); v != "" {
		return v
	}
	return DefaultRedisURL
}

func withDatabase(dsn, name string) string {
	u, err := url.Parse(dsn)
	if err != nil {
		panic(config.RedactURLError(err))
	}
	u.Path = "/" + name
	return u.String()
}

var (
	tmplOnce sync.Once
	tmplName string
	tmplErr  error
)

// templateName is derived from the migrations' contents so that a changed migration
// builds a new template instead of reusing a stale one.
func templateName() string {
	h := sha256.New()
	_ = fs.WalkDir(migrations.FS(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(migrations.FS(), path)
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return "botfleet_tmpl_" + hex.EncodeToString(h.Sum(nil))[:12]
}

func ensureTemplate(ctx context.Context) (string, error) {
	tmplOnce.Do(func() {
		name := templateName()
		admin, err := pgx.Connect(ctx, withDatabase(DatabaseURL(), "postgres"))
		if err != nil {
			tmplErr = fmt.Errorf("testenv: connect to PostgreSQL at %s (run `make services`): %w", config.RedactURL(DatabaseURL()), err)
			return
		}
		defer admin.Close(ctx)
		// Serialise template creation across test binaries running in parallel.
		if _, err := admin.Exec(ctx, "SELECT pg_advisory_lock(4242001)"); err != nil {
			tmplErr = err
			return
		}
		defer admin.Exec(ctx, "SELECT pg_advisory_unlock(4242001)") //nolint:errcheck
		var exists bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname=$1)", name).Scan(&exists); err != nil {
			tmplErr = err
			return
		}
		if !exists {
			building := name + "_building"
			_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+building+" WITH (FORCE)")
			if _, err := admin.Exec(ctx, "CREATE DATABASE "+building); err != nil {
				tmplErr = err
				return
			}
			db, err := database.Open(withDatabase(DatabaseURL(), building), database.WithMultiStatements())
			if err != nil {
				tmplErr = err
				return
			}
			_, err = migrations.Apply(ctx, db)
			db.Close()
			if err != nil {
				tmplErr = fmt.Errorf("testenv: migrate template: %w", err)
				return
			}
			if _, err := admin.Exec(ctx, "ALTER DATABASE "+building+" RENAME TO "+name); err != nil {
				tmplErr = err
				return
			}
		}
		tmplName = name
	})
	return tmplName, tmplErr
}

var dbSeq struct {
	sync.Mutex
	n int
}

// DBURL creates a fresh, migrated database for t, dropped at cleanup, and returns its DSN.
func DBURL(t testing.TB) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmpl, err := ensureTemplate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	dbSeq.Lock()
	dbSeq.n++
	n := dbSeq.n
	dbSeq.Unlock()
	name := fmt.Sprintf("botfleet_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1_000_000, n)
	admin, err := pgx.Connect(ctx, withDatabase(DatabaseURL(), "postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close(ctx)
	// CREATE DATABASE ... TEMPLATE fails while another session uses the template; retry briefly.
	for i := 0; ; i++ {
		_, err = admin.Exec(ctx, "CREATE DATABASE "+name+" TEMPLATE "+tmpl)
		if err == nil || i > 50 || !strings.Contains(err.Error(), "being accessed by other users") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("testenv: create database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, withDatabase(DatabaseURL(), "postgres"))
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	return withDatabase(DatabaseURL(), name)
}

// DB returns a bun.DB on a fresh migrated database for t (see DBURL), closed at cleanup.
func DB(t testing.TB) *bun.DB {
	t.Helper()
	db, err := database.Open(DBURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// RedisDBURL reserves one of Redis's numbered databases (1-15) for t, flushes it, and
// returns its URL. Reservations are keys in database 0 so that test binaries running in
// parallel never share a database; they are released at cleanup.
func RedisDBURL(t testing.TB) string {
	t.Helper()
	opt, err := redis.ParseURL(RedisURL())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ctl := redis.NewClient(&redis.Options{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: 0})
	defer ctl.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		for n := 1; n <= 15; n++ {
			key := fmt.Sprintf("botfleet:testenv:redis-db:%d", n)
			ok, err := ctl.SetNX(ctx, key, os.Getpid(), 15*time.Minute).Result()
			if err != nil {
				t.Fatalf("testenv: Redis at %s (run `make services`): %v", opt.Addr, err)
			}
			if !ok {
				continue
			}
			c := redis.NewClient(&redis.Options{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: n})
			err = c.FlushDB(ctx).Err()
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				c := redis.NewClient(&redis.Options{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: n})
				_ = c.FlushDB(context.Background()).Err()
				c.Close()
				ctl := redis.NewClient(&redis.Options{Addr: opt.Addr, Username: opt.Username, Password: opt.Password, DB: 0})
				_ = ctl.Del(context.Background(), key).Err()
				ctl.Close()
			})
			u := &url.URL{Scheme: "redis", Host: opt.Addr, Path: fmt.Sprintf("/%d", n)}
			if opt.Password != "" {
				u.User = url.UserPassword(opt.Username, opt.Password)
			}
			return u.String()
		}
		if time.Now().After(deadline) {
			t.Fatal("testenv: no free Redis database (1-15)")
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Redis returns a client on a reserved, flushed Redis database (see RedisDBURL).
func Redis(t testing.TB) *redis.Client {
	t.Helper()
	opt, err := redis.ParseURL(RedisDBURL(t))
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := strconv.Atoi(os.Getenv("TESTENV_REDIS_POOL")); n > 0 {
		opt.PoolSize = n
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}
