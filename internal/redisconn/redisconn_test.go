package redisconn

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/testenv"
)

func TestNew(t *testing.T) {
	t.Run("single server", func(t *testing.T) {
		c, err := New("redis://:pw@127.0.0.1:6390/3", false, 77)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		rc, ok := c.(*redis.Client)
		if !ok {
			t.Fatalf("got %T, want *redis.Client", c)
		}
		if o := rc.Options(); o.Addr != "127.0.0.1:6390" || o.DB != 3 || o.Password != "pw" || o.PoolSize != 77 {
			t.Fatalf("options %+v", o)
		}
	})
	t.Run("pool_size in the URL wins", func(t *testing.T) {
		c, err := New("redis://127.0.0.1:6390/0?pool_size=5", false, 77)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if n := c.(*redis.Client).Options().PoolSize; n != 5 {
			t.Fatalf("pool size %d, want 5", n)
		}
	})
	t.Run("cluster", func(t *testing.T) {
		c, err := New("redis://:pw@10.0.0.1:7000/0?addr=10.0.0.2:7001&addr=10.0.0.3:7002", true, 77)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cc, ok := c.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("got %T, want *redis.ClusterClient", c)
		}
		o := cc.Options()
		if strings.Join(o.Addrs, ",") != "10.0.0.1:7000,10.0.0.2:7001,10.0.0.3:7002" || o.Password != "pw" || o.PoolSize != 77 {
			t.Fatalf("options %+v", o)
		}
	})
	for name, tc := range map[string]struct {
		url     string
		cluster bool
		want    string
	}{
		"several nodes without REDIS_CLUSTER": {"redis://10.0.0.1:7000?addr=10.0.0.2:7001", false, "set REDIS_CLUSTER=true"},
		"cluster with a database":             {"redis://10.0.0.1:7000/2", true, "only database 0"},
		"bad scheme":                          {"http://u:secretpw@10.0.0.1:7000", true, "invalid URL scheme"},
		"bad URL":                             {"redis://u:secretpw@[::1", false, "parse REDIS_URL"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := New(tc.url, tc.cluster, 10)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "secretpw") {
				t.Fatalf("error shows the password: %v", err)
			}
		})
	}
}

// TestNew_Cluster checks that a cluster URL listing one seed reaches every master of a
// local Redis Cluster (keys spread over all of them).
func TestNew_Cluster(t *testing.T) {
	addrs := testenv.RedisCluster(t)
	c, err := New(testenv.RedisClusterURL(addrs[:1]), true, 10)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for i := range 50 {
		if err := c.Set(ctx, "k"+strings.Repeat("x", i), i, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	cc := c.(*redis.ClusterClient)
	var masters atomic.Int64
	err = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
		if n := m.DBSize(ctx).Val(); n > 0 {
			masters.Add(1)
		}
		return nil
	})
	if err != nil || masters.Load() != testenv.RedisClusterMasters {
		t.Fatalf("keys on %d masters (err %v), want %d", masters.Load(), err, testenv.RedisClusterMasters)
	}
}
