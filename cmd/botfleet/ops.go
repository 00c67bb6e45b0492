package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/metrics"
)

// newMetrics returns the /metrics handler of this process: the process-wide instruments
// plus the collectors reading PostgreSQL (broadcasts and their recipients) and Redis (asynq
// queue sizes) at scrape time. When METRICS_ADDR is set it also serves it there, without
// authentication, until ctx ends.
func newMetrics(ctx context.Context, cfg config.Config, db *bun.DB, rdb redis.UniversalClient, log *slog.Logger) http.Handler {
	h := metrics.Handler(
		metrics.NewBroadcastCollector(db),
		metrics.NewQueueCollector(asynq.NewInspectorFromRedisClient(rdb)),
	)
	if cfg.MetricsAddr == "" {
		return h
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	srv := &http.Server{Addr: cfg.MetricsAddr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		log.Info("metrics listening", "addr", cfg.MetricsAddr)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "addr", cfg.MetricsAddr, "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	return h
}

// warnMisspelled logs each environment variable that looks like a misspelled setting.
func warnMisspelled(log *slog.Logger) {
	for _, w := range config.Misspelled(os.Environ()) {
		log.Warn(w)
	}
}
