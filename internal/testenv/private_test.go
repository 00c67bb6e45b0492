package testenv

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
)

// TestPrivateServers starts, stops and restarts a private PostgreSQL and Redis: data written
// before a clean stop is there after the restart (PostgreSQL; Redis with AOF).
func TestPrivateServers(t *testing.T) {
	ctx := context.Background()
	pg := StartPostgres(t)
	exec := func(sql string) error {
		conn, err := pgx.Connect(ctx, pg.URL("postgres"))
		if err != nil {
			return err
		}
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, sql)
		return err
	}
	if err := exec("CREATE TABLE t (x int); INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	pg.Stop()
	if err := exec("SELECT 1"); err == nil {
		t.Fatal("PostgreSQL answers after Stop")
	}
	pg.Start()
	if err := exec("SELECT x FROM t"); err != nil {
		t.Fatal(err)
	}

	r := StartRedis(t, "--appendonly", "yes")
	c := r.Client()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	r.Stop()
	probe := redis.NewClient(&redis.Options{Addr: r.Addr(), MaxRetries: -1})
	defer probe.Close()
	if err := probe.Ping(ctx).Err(); err == nil {
		t.Fatal("Redis answers after Stop")
	}
	r.Start()
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("after restart with AOF: %q %v", v, err)
	}
}
