// Package redisconn builds botfleet's Redis client from REDIS_URL and REDIS_CLUSTER: a
// single-server client, or a Redis Cluster client, both as a redis.UniversalClient, which
// go-redis, the send limiter, the bot cache and asynq (NewClientFromRedisClient and friends)
// all accept.
package redisconn

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/redis/go-redis/v9"
)

// New returns a client for rawURL. It does not contact Redis.
//
// Single server (cluster false): rawURL is go-redis's URL form (redis.ParseURL), e.g.
// redis://:password@host:6379/0 or rediss:// for TLS.
//
// Redis Cluster (cluster true): rawURL is go-redis's cluster URL form
// (redis.ParseClusterURL): one seed node as the host and any more as addr parameters, e.g.
// redis://:password@10.0.0.1:7000?addr=10.0.0.2:7000&addr=10.0.0.3:7000. The client learns
// the other nodes and the slot map from the seeds (CLUSTER SLOTS) and follows MOVED/ASK
// redirections; one reachable seed is enough. A Cluster has only database 0, so a path
// other than /0 is an error.
//
// poolSize is the connection pool size (per node on a Cluster) used when the URL sets no
// pool_size. Errors name the variable at fault (REDIS_URL, REDIS_CLUSTER) and never echo the
// URL, which may carry a password.
func New(rawURL string, cluster bool, poolSize int) (redis.UniversalClient, error) {
	if !cluster {
		opt, err := redis.ParseURL(rawURL)
		if err != nil {
			if strings.Contains(err.Error(), "unexpected option: addr") {
				return nil, errors.New("REDIS_URL lists several nodes (addr=): set REDIS_CLUSTER=true for a Redis Cluster")
			}
			return nil, fmt.Errorf("parse REDIS_URL: %w", withoutURL(err))
		}
		if opt.PoolSize == 0 {
			opt.PoolSize = poolSize
		}
		return redis.NewClient(opt), nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("parse REDIS_URL: not a URL")
	}
	if db := strings.Trim(u.Path, "/"); db != "" && db != "0" {
		return nil, fmt.Errorf("REDIS_URL: a Redis Cluster has only database 0, got /%s (REDIS_CLUSTER=true)", db)
	}
	u.Path = ""
	opt, err := redis.ParseClusterURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("parse REDIS_URL as a cluster URL (REDIS_CLUSTER=true): %w", withoutURL(err))
	}
	if opt.PoolSize == 0 {
		opt.PoolSize = poolSize
	}
	return redis.NewClusterClient(opt), nil
}

// withoutURL drops the URL (and so any password in it) from a *url.Error.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
