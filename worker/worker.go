// Package worker runs the asynq server and scheduler. It only wires: each domain package
// registers its own task handlers (RegisterTasks) and its periodic tasks.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/telegram"
)

// Registrar is a domain service that registers its task handlers.
type Registrar interface {
	RegisterTasks(mux *asynq.ServeMux)
}

// Periodic is a task enqueued on a cron spec (robfig/cron syntax, e.g. "@every 1m").
type Periodic struct {
	Spec string
	Task *asynq.Task
}

// Deps configure a Worker.
type Deps struct {
	Redis redis.UniversalClient
	// Concurrency is how many inbound and housekeeping tasks (InboundQueues) run at once
	// (WORKER_CONCURRENCY).
	Concurrency int
	// SendConcurrency is how many sending tasks (SendQueues: single messages, replies,
	// broadcast runs) run at once (WORKER_SEND_CONCURRENCY). They run on their own asynq
	// server, so that tasks waiting for a bot's pace never hold a slot that inbound
	// processing needs. Default: 64.
	SendConcurrency int
	Log             *slog.Logger
	Services        []Registrar
	Periodic        []Periodic
	// Loops run alongside the task servers (e.g. telegram.Service.RunEventProcessors), each
	// in its own goroutine: their context is cancelled when shutdown starts and Run waits for
	// them to return (within ShutdownTimeout). An error from one stops the worker.
	Loops []func(context.Context) error
	// ShutdownTimeout bounds a graceful shutdown (SHUTDOWN_TIMEOUT): when it starts, every
	// task's context is cancelled (rate-limit waits stop at once), sends already in flight
	// finish and are recorded, and Run returns at the latest after ShutdownTimeout.
	// Default: 30s.
	ShutdownTimeout time.Duration
}

// InboundQueues are the queues (and weights) of the inbound server: webhook updates first,
// then housekeeping (sweeps).
var InboundQueues = map[string]int{
	telegram.QueueUpdates: 6,
	telegram.QueueDefault: 1,
}

// SendQueues are the queues (and weights) of the sending server: single messages and
// replies before broadcast runs.
var SendQueues = map[string]int{
	telegram.QueueOutbound: 3,
	"broadcast":            1,
}

// IsFailure reports whether err counts as a task failure. A *telegram.RetryAfterError (a
// rate-limit wait, Telegram's 429 retry_after, a daily-limit deferral) does not: waiting
// is not failing, so it never uses up a retry (asynq server.go IsFailure). Neither does a
// cancelled context: the worker is shutting down, the task runs again elsewhere.
func IsFailure(err error) bool {
	var ra *telegram.RetryAfterError
	return !errors.As(err, &ra) && !errors.Is(err, context.Canceled)
}

// RetryDelay is the asynq RetryDelayFunc: a *telegram.RetryAfterError is retried after its
// RetryAfter (plus up to 50 ms jitter), a task interrupted by shutdown after 1 s; other
// errors after 1s·2^(n) (n = retries so far), capped at 10 min, with ±20% jitter.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var ra *telegram.RetryAfterError
	if errors.As(err, &ra) {
		return ra.RetryAfter + time.Duration(rand.IntN(50))*time.Millisecond //nolint:gosec // G404: retry jitter, not a secret
	}
	if errors.Is(err, context.Canceled) {
		return time.Second
	}
	if n > 10 {
		n = 10
	}
	d := time.Second << n
	if d > 10*time.Minute {
		d = 10 * time.Minute
	}
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10 //nolint:gosec // G404: retry jitter, not a secret
	return d + jitter
}

// Run runs the asynq servers (inbound and sending), the scheduler of periodic tasks and the
// loops until ctx is done, then shuts down gracefully within ShutdownTimeout (see Deps).
func Run(ctx context.Context, d Deps) error {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	if d.ShutdownTimeout <= 0 {
		d.ShutdownTimeout = 30 * time.Second
	}
	if d.SendConcurrency <= 0 {
		d.SendConcurrency = 64
	}
	// Task contexts derive from base, cancelled as soon as shutdown starts (asynq only
	// cancels them at its ShutdownTimeout otherwise; TECH-NOTES pitfall 13).
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	var running sync.WaitGroup // handlers still running (asynq stops waiting on cancel)
	mux := asynq.NewServeMux()
	mux.Use(logging.TaskMiddleware) // task_id and task_type on every log line of a task
	mux.Use(func(h asynq.Handler) asynq.Handler {
		return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
			running.Add(1)
			defer running.Done()
			return h.ProcessTask(ctx, t)
		})
	})
	for _, s := range d.Services {
		s.RegisterTasks(mux)
	}
	newServer := func(concurrency int, queues map[string]int) *asynq.Server {
		return asynq.NewServerFromRedisClient(d.Redis, asynq.Config{
			Concurrency:              concurrency,
			Queues:                   queues,
			BaseContext:              func() context.Context { return base },
			IsFailure:                IsFailure,
			RetryDelayFunc:           RetryDelay,
			ShutdownTimeout:          d.ShutdownTimeout,
			DelayedTaskCheckInterval: time.Second,
			TaskCheckInterval:        100 * time.Millisecond,
			Logger:                   asynqLogger{log},
			LogLevel:                 asynq.WarnLevel,
			ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
				if !IsFailure(err) {
					return
				}
				id, _ := asynq.GetTaskID(ctx)
				retried, _ := asynq.GetRetryCount(ctx)
				log.WarnContext(ctx, "task failed", "task_type", t.Type(), "task_id", id, "retry", retried, "error", err)
			}),
		})
	}
	servers := []*asynq.Server{newServer(d.Concurrency, InboundQueues), newServer(d.SendConcurrency, SendQueues)}
	shutdownServers := func() {
		var wg sync.WaitGroup
		for _, srv := range servers {
			wg.Go(srv.Shutdown)
		}
		wg.Wait()
	}
	for i, srv := range servers {
		if err := srv.Start(mux); err != nil {
			for _, started := range servers[:i] {
				started.Shutdown()
			}
			return fmt.Errorf("worker: start: %w", err)
		}
	}
	var sched *asynq.Scheduler
	if len(d.Periodic) > 0 {
		sched = newScheduler(d.Redis, &asynq.SchedulerOpts{Logger: asynqLogger{log}, LogLevel: asynq.WarnLevel})
		for _, p := range d.Periodic {
			if _, err := sched.Register(p.Spec, p.Task); err != nil {
				shutdownServers()
				return fmt.Errorf("worker: schedule %s: %w", p.Task.Type(), err)
			}
		}
		if err := sched.Start(); err != nil {
			shutdownServers()
			return fmt.Errorf("worker: start scheduler: %w", err)
		}
	}
	loopErr := make(chan error, len(d.Loops))
	var loops sync.WaitGroup
	for _, loop := range d.Loops {
		loops.Go(func() {
			if err := loop(base); err != nil && !errors.Is(err, context.Canceled) {
				loopErr <- err
			}
		})
	}
	log.InfoContext(ctx, "worker started", "concurrency", d.Concurrency, "send_concurrency", d.SendConcurrency, "loops", len(d.Loops))
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-loopErr:
		log.ErrorContext(ctx, "worker: loop failed", "error", runErr)
	}
	log.InfoContext(ctx, "worker stopping", "shutdown_timeout", d.ShutdownTimeout)
	deadline := time.Now().Add(d.ShutdownTimeout)
	cancelBase()
	if sched != nil {
		sched.Shutdown()
	}
	shutdownServers()
	done := make(chan struct{})
	go func() {
		running.Wait()
		loops.Wait()
		close(done)
	}()
	select {
	case <-done:
		log.InfoContext(ctx, "worker stopped")
	case <-time.After(time.Until(deadline)):
		log.WarnContext(ctx, "worker: shutdown timeout; tasks still running are abandoned (asynq runs them again)")
	}
	return runErr
}

// asynqLogger adapts slog to asynq.Logger.
type asynqLogger struct{ l *slog.Logger }

func (a asynqLogger) Debug(args ...any) { a.l.Debug(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Info(args ...any)  { a.l.Info(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Warn(args ...any)  { a.l.Warn(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Error(args ...any) { a.l.Error(fmt.Sprint(args...), "component", "asynq") }
func (a asynqLogger) Fatal(args ...any) {
	a.l.Error(fmt.Sprint(args...), "component", "asynq", "fatal", true)
}

// newScheduler returns an asynq Scheduler on its own small Redis connection pool, made with
// shared's options. asynq v0.26.0's Scheduler.Shutdown closes its client, and a client made
// by NewSchedulerFromRedisClient refuses to close a shared connection, so every shutdown
// logged ERROR "Failed to close redis client connection" (hibiken/asynq#1068, open). Given
// a RedisConnOpt, the Scheduler owns its client and closes it cleanly. A client type
// without Options (none today) falls back to sharing.
func newScheduler(shared redis.UniversalClient, opts *asynq.SchedulerOpts) *asynq.Scheduler {
	switch c := shared.(type) {
	case *redis.Client:
		o := *c.Options()
		o.PoolSize, o.MinIdleConns, o.MaxIdleConns = 2, 0, 2
		return asynq.NewScheduler(ownedRedis{redis.NewClient(&o)}, opts)
	case *redis.ClusterClient:
		o := *c.Options()
		o.PoolSize, o.MinIdleConns, o.MaxIdleConns = 2, 0, 2
		return asynq.NewScheduler(ownedRedis{redis.NewClusterClient(&o)}, opts)
	}
	return asynq.NewSchedulerFromRedisClient(shared, opts)
}

// ownedRedis hands asynq a client that asynq then owns and closes (asynq.RedisConnOpt).
type ownedRedis struct{ c redis.UniversalClient }

// MakeRedisClient implements asynq.RedisConnOpt.
func (o ownedRedis) MakeRedisClient() any { return o.c }
