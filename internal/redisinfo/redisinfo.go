// Package redisinfo checks that a Redis server keeps what botfleet stores in it: the asynq
// queues, the send limiters' windows and pauses, and the bots' daily counters. A Redis that
// evicts keys under memory pressure, or that forgets everything on restart, silently drops
// queued tasks and resets limits; GET /readyz and `botfleet doctor` report it.
package redisinfo

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"
)

// NoEviction is the only maxmemory-policy under which Redis never drops keys: at the memory
// limit, writes fail instead (redis.io/docs/latest/develop/reference/eviction).
const NoEviction = "noeviction"

// Check reads the server's eviction policy and persistence settings and returns a warning,
// in plain words with the fix, for each way in which it would lose botfleet's keys:
//   - maxmemory-policy other than noeviction: keys may be evicted when memory is full;
//   - neither AOF (appendonly yes) nor RDB snapshots (a non-empty save schedule): a restart
//     loses every key.
//
// It reads CONFIG GET maxmemory-policy / appendonly / save. Managed services often disable
// CONFIG; Check then falls back to INFO memory (maxmemory_policy) and INFO persistence
// (aof_enabled), and a setting it cannot read gives a warning that says "unknown" rather
// than an error. On a Redis Cluster (*redis.ClusterClient) every master is checked and each
// warning names the node. No warnings means the settings are safe.
//
// err is non-nil only when the server cannot be asked at all (connection refused, timeout,
// authentication): a refused command is not an error.
func Check(ctx context.Context, c redis.UniversalClient) (warnings []string, err error) {
	cc, ok := c.(*redis.ClusterClient)
	if !ok {
		return checkNode(ctx, c)
	}
	var mu sync.Mutex
	err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
		w, err := checkNode(ctx, n)
		mu.Lock()
		defer mu.Unlock()
		for _, s := range w {
			warnings = append(warnings, n.Options().Addr+": "+s)
		}
		return err
	})
	sort.Strings(warnings)
	return warnings, err
}

// checkNode checks one server.
func checkNode(ctx context.Context, c redis.Cmdable) ([]string, error) {
	var warnings []string
	policy, err := configGet(ctx, c, "maxmemory-policy")
	if err != nil && !refused(err) {
		return nil, err
	}
	if err != nil {
		policy, err = infoField(ctx, c, "memory", "maxmemory_policy")
		if err != nil && !refused(err) {
			return nil, err
		}
	}
	switch {
	case policy == "":
		warnings = append(warnings, "eviction policy unknown (CONFIG GET and INFO memory refused): "+
			"make sure maxmemory-policy is noeviction, or Redis may drop queued tasks and send limits when memory is full")
	case policy != NoEviction:
		warnings = append(warnings, fmt.Sprintf("maxmemory-policy is %s: Redis may evict queued tasks, send limits "+
			"and daily counters when memory is full; set maxmemory-policy noeviction", policy))
	}

	aof, aofErr := configGet(ctx, c, "appendonly")
	save, saveErr := configGet(ctx, c, "save")
	for _, e := range []error{aofErr, saveErr} {
		if e != nil && !refused(e) {
			return nil, e
		}
	}
	if aofErr != nil { // CONFIG refused: INFO persistence tells AOF, not the RDB schedule
		v, err := infoField(ctx, c, "persistence", "aof_enabled")
		if err != nil && !refused(err) {
			return nil, err
		}
		aof = map[string]string{"1": "yes", "0": "no"}[v]
	}
	switch {
	case aof == "yes":
	case aofErr == nil && saveErr == nil && strings.TrimSpace(save) == "":
		warnings = append(warnings, "no persistence (appendonly no, save \"\"): a Redis restart loses queued tasks "+
			"and send limits; set appendonly yes")
	case aof == "no" && saveErr != nil:
		warnings = append(warnings, "persistence unknown: AOF is off and the RDB save schedule cannot be read "+
			"(CONFIG GET refused); make sure snapshots are on, or set appendonly yes")
	case aof == "":
		warnings = append(warnings, "persistence unknown (CONFIG GET and INFO persistence refused): make sure "+
			"appendonly yes or RDB snapshots are on, or a restart loses queued tasks and send limits")
	}
	return warnings, nil
}

// configGet returns the value of one CONFIG GET parameter ("" when the server has none).
func configGet(ctx context.Context, c redis.Cmdable, name string) (string, error) {
	m, err := c.ConfigGet(ctx, name).Result()
	if err != nil {
		return "", err
	}
	return m[name], nil
}

// infoField returns field of INFO section ("" when absent).
func infoField(ctx context.Context, c redis.Cmdable, section, field string) (string, error) {
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), field+":"); ok {
			return v, nil
		}
	}
	return "", nil
}

// refused reports an error answer of the server (unknown or renamed command, NOPERM):
// the server is there but will not tell.
func refused(err error) bool {
	var re redis.Error
	return errors.As(err, &re) && !errors.Is(err, redis.Nil) && !isConnErr(err)
}

// isConnErr reports errors that redis.Error also covers but that mean the server cannot be
// asked at all (authentication, loading, cluster down).
func isConnErr(err error) bool {
	s := err.Error()
	for _, p := range []string{"NOAUTH", "WRONGPASS", "LOADING", "CLUSTERDOWN", "MASTERDOWN"} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}
