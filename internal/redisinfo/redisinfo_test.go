package redisinfo_test

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/redisinfo"
	"github.com/botfleet/botfleet/internal/testenv"
)

// TestCheck runs Check against private redis-servers configured each way: safe settings give
// no warning, each unsafe one its warning, and a server that refuses CONFIG (as managed
// services do) or also INFO is reported as "unknown" rather than failing.
func TestCheck(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // substrings, one per expected warning, in order
	}{
		{"aof and noeviction", []string{"--appendonly", "yes", "--maxmemory-policy", "noeviction"}, nil},
		{"rdb snapshots only", []string{"--save", "3600 1"}, nil},
		{"no persistence", nil, []string{"no persistence"}},
		{"evicting", []string{"--appendonly", "yes", "--maxmemory-policy", "allkeys-lru"}, []string{"maxmemory-policy is allkeys-lru"}},
		{"evicting, no persistence", []string{"--maxmemory-policy", "volatile-ttl"}, []string{"maxmemory-policy is volatile-ttl", "no persistence"}},
		{"config disabled, aof", []string{"--rename-command", "CONFIG", "", "--appendonly", "yes"}, nil},
		{"config disabled, evicting, no aof", []string{"--rename-command", "CONFIG", "", "--maxmemory-policy", "allkeys-lfu"},
			[]string{"maxmemory-policy is allkeys-lfu", "persistence unknown"}},
		{"config and info disabled", []string{"--rename-command", "CONFIG", "", "--rename-command", "INFO", ""},
			[]string{"eviction policy unknown", "persistence unknown"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t, tc.args...)
			got, err := redisinfo.Check(context.Background(), r.Client())
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("warnings = %q, want %d matching %q", got, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.Contains(got[i], w) {
					t.Errorf("warning %d = %q, want it to contain %q", i, got[i], w)
				}
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		defer c.Close()
		if _, err := redisinfo.Check(context.Background(), c); err == nil {
			t.Fatal("no error for a closed port")
		}
	})
}

// TestCheck_Cluster checks a Redis Cluster client: every master is checked and each warning
// names its node (a one-node cluster holding all slots).
func TestCheck_Cluster(t *testing.T) {
	ctx := context.Background()
	r := testenv.StartRedis(t, "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-announce-ip", "127.0.0.1",
		"--maxmemory-policy", "allkeys-lru", "--appendonly", "yes")
	node := r.Client()
	if err := node.Do(ctx, "CLUSTER", "ADDSLOTSRANGE", "0", "16383").Err(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(node.ClusterInfo(ctx).Val(), "cluster_state:ok") {
		if time.Now().After(deadline) {
			t.Fatal("the one-node cluster did not become ok")
		}
		time.Sleep(50 * time.Millisecond)
	}
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{r.Addr()}})
	defer c.Close()
	got, err := redisinfo.Check(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || !strings.HasPrefix(got[0], r.Addr()+": maxmemory-policy is allkeys-lru") {
		t.Fatalf("warnings = %q, want one for node %s", got, r.Addr())
	}
}
