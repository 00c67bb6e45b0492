package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/database"
)

// healthcheckTimeout bounds one `botfleet healthcheck` run (Docker's and Kubernetes'
// probe timeouts are a few seconds).
const healthcheckTimeout = 4 * time.Second

// newHealthcheckCmd is `botfleet healthcheck`: a container health probe for the distroless
// image (no shell, no curl). Exit status 0 when healthy, 1 otherwise, with one line saying
// why on stdout.
//
//   - default: GET http://HTTP_ADDR/healthz (a host-less HTTP_ADDR such as ":8080" means
//     127.0.0.1) answers 2xx: the `serve` process of this container is up.
//   - --url URL: GET URL answers 2xx (e.g. the emulator's http://127.0.0.1:8081/control/,
//     or /readyz to include PostgreSQL and Redis).
//   - --worker: PostgreSQL (DATABASE_URL) and Redis (REDIS_URL) answer a ping, and an asynq
//     server of this host (os.Hostname, the container's name in Docker and the pod's name
//     in Kubernetes) has a live heartbeat in Redis: asynq rewrites it every 5 s with a 10 s
//     expiry, so a hung or dead `worker` process fails within about 10 s.
func newHealthcheckCmd(ctx context.Context, getenv func(string) string, stdout io.Writer) *cobra.Command {
	var url string
	var workerMode bool
	cmd := &cobra.Command{
		Use:   "healthcheck [--url URL | --worker]",
		Short: "Container health probe: GET http://HTTP_ADDR/healthz (or --url), or --worker: PostgreSQL, Redis and this host's asynq heartbeat; exit 0 or 1",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(ctx, healthcheckTimeout)
			defer cancel()
			if workerMode {
				if url != "" {
					return errors.New("healthcheck: --url and --worker exclude each other")
				}
				return healthcheckWorker(ctx, getenv, stdout)
			}
			if url == "" {
				cfg, err := config.Load(getenv)
				if err != nil {
					return err
				}
				url = "http://" + loopbackAddr(cfg.HTTPAddr) + "/healthz"
			}
			return healthcheckURL(ctx, url, stdout)
		},
	}
	cmd.Flags().StringVar(&url, "url", "", "URL that must answer 2xx to a GET (default http://HTTP_ADDR/healthz)")
	cmd.Flags().BoolVar(&workerMode, "worker", false, "check a worker process: PostgreSQL, Redis and this host's asynq heartbeat")
	return cmd
}

// loopbackAddr turns a listen address into one to dial: an empty or unspecified host
// (":8080", "0.0.0.0:8080", "[::]:8080") becomes 127.0.0.1.
func loopbackAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

func healthcheckURL(ctx context.Context, url string, stdout io.Writer) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("healthcheck: GET %s: %s", url, resp.Status)
	}
	fmt.Fprintf(stdout, "ok: GET %s: %s\n", url, resp.Status)
	return nil
}

func healthcheckWorker(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	db, err := database.Open(cfg.DatabaseURL.Reveal(), database.WithMaxConns(1))
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.PingContext(ctx); err != nil {
		return fmt.Errorf("healthcheck: PostgreSQL: %w", explainDBError(err, cfg.DatabaseURL.Reveal()))
	}
	ropt, err := redis.ParseURL(cfg.RedisURL.Reveal())
	if err != nil {
		return fmt.Errorf("parse REDIS_URL: %w", err)
	}
	ropt.PoolSize = 1
	rdb := redis.NewClient(ropt)
	defer rdb.Close()
	if err := rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("healthcheck: Redis at %s: %w", config.RedactURL(cfg.RedisURL.Reveal()), err)
	}
	host, err := os.Hostname()
	if err != nil {
		return fmt.Errorf("healthcheck: hostname: %w", err)
	}
	// The Inspector shares rdb, which is closed above (its own Close refuses a shared client).
	servers, err := asynq.NewInspectorFromRedisClient(rdb).Servers()
	if err != nil {
		return fmt.Errorf("healthcheck: list asynq servers: %w", err)
	}
	var live []string
	for _, s := range servers {
		if s.Host == host && s.Status == "active" {
			live = append(live, fmt.Sprintf("pid %d", s.PID))
		}
	}
	if len(live) == 0 {
		return fmt.Errorf("healthcheck: no running asynq server with a live heartbeat on host %q (is `botfleet worker` running?)", host)
	}
	fmt.Fprintf(stdout, "ok: PostgreSQL, Redis, asynq servers on %s: %s\n", host, strings.Join(live, ", "))
	return nil
}
