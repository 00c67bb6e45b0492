package testenv

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterMasters is the number of masters RedisCluster starts.
const RedisClusterMasters = 3

// RedisCluster starts a private Redis Cluster for t: RedisClusterMasters redis-server
// processes (/usr/bin/redis-server or the one on PATH, Redis ≥ 7) with cluster-enabled on
// free loopback ports in a temporary directory, joined by `redis-cli --cluster create
// --cluster-replicas 0`, no persistence. It returns the masters' addresses (host:port) once
// every node reports cluster_state:ok, and stops the processes when t ends. t is skipped when
// redis-server or redis-cli is missing.
func RedisCluster(t testing.TB) []string {
	t.Helper()
	server, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed: Redis Cluster test skipped")
	}
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli not installed: Redis Cluster test skipped")
	}
	dir := t.TempDir()
	addrs := make([]string, RedisClusterMasters)
	for i := range addrs {
		// The cluster bus needs a port of its own (by default port+10000, which may not
		// exist above 55535).
		port, busPort := freePort(t), freePort(t)
		nd := filepath.Join(dir, strconv.Itoa(port))
		if err := os.Mkdir(nd, 0o700); err != nil {
			t.Fatal(err)
		}
		logf, err := os.Create(filepath.Join(nd, "redis.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(server, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", nd,
			"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-port", strconv.Itoa(busPort), "--cluster-node-timeout", "5000",
			"--appendonly", "no", "--save", "", "--daemonize", "no", "--protected-mode", "no")
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logf.Close()
		})
		addrs[i] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	}
	for _, a := range addrs {
		waitRedis(t, a, 60*time.Second) // generous: a loaded 2-core box (make test runs packages in parallel) took over 10 s
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	// Every node must agree before clients route by slot: wait for cluster_state:ok and all
	// slots assigned on each of them.
	deadline := time.Now().Add(20 * time.Second)
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_slots_ok:16384") {
				break
			}
			if time.Now().After(deadline) {
				c.Close()
				t.Fatalf("Redis Cluster at %v not ready: %v %s", addrs, err, info)
			}
			time.Sleep(50 * time.Millisecond)
		}
		c.Close()
	}
	return addrs
}

// RedisClusterURL is the REDIS_URL of a cluster started by RedisCluster, in go-redis's
// cluster URL form (redis.ParseClusterURL): the first address as host, the others as addr
// parameters. Use it with REDIS_CLUSTER=true.
func RedisClusterURL(addrs []string) string {
	u := "redis://" + addrs[0]
	for i, a := range addrs[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=" + a
	}
	return u
}

// RedisClusterClient returns a cluster client on addrs, closed when t ends.
func RedisClusterClient(t testing.TB, addrs []string) *redis.ClusterClient {
	t.Helper()
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { c.Close() })
	return c
}

// waitRedis waits until a Redis server answers PING at addr.
func waitRedis(t testing.TB, addr string, within time.Duration) {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer c.Close()
	deadline := time.Now().Add(within)
	for {
		err := c.Ping(context.Background()).Err()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server at %s did not start: %v", addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
