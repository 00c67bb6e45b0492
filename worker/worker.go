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
	Redis       redis.UniversalClient
	Concurrency int
	Log         *slog.Logger
	Services    []Registrar
	Periodic    []Periodic
	// ShutdownTimeout is how long running tasks get to finish on shutdown before asynq
	// requeues them. Default 25s.
	ShutdownTimeout time.Duration
	// Loops run alongside the asynq server (e.g. telegram.Service.RunEventProcessors), each
	// in its own goroutine, until the worker stops: their context is cancelled when
	// shutdown starts and Run waits for them to return. A loop that returns an error
	// before then is logged; the others keep running.
	Loops []func(context.Context) error
}

// Queues and their weights: webhook updates first (replies stay snappy), then single
// sends, then broadcasts, then housekeeping.
var Queues = map[string]int{
	telegram.QueueUpdates:  6,
	telegram.QueueOutbound: 4,
	"broadcast":            2,
	telegram.QueueDefault:  1,
}

// IsFailure reports whether err counts as a task failure. A *telegram.RetryAfterError (a
// rate-limit wait, Telegram's 429 retry_after, a daily-limit deferral) does not: waiting
// is not failing, so it never uses up a retry (asynq server.go IsFailure).
func IsFailure(err error) bool {
	var ra *telegram.RetryAfterError
	return !errors.As(err, &ra)
}

// RetryDelay is the asynq RetryDelayFunc: a *telegram.RetryAfterError is retried after its
// RetryAfter (plus up to 50 ms jitter); other errors after 1s·2^(n) (n = retries so far),
// capped at 10 min, with ±20% jitter.
func RetryDelay(n int, err error, _ *asynq.Task) time.Duration {
	var ra *telegram.RetryAfterError
	if errors.As(err, &ra) {
		return ra.RetryAfter + time.Duration(rand.IntN(50))*time.Millisecond
	}
	if n > 10 {
		n = 10
	}
	d := time.Second << n
	if d > 10*time.Minute {
		d = 10 * time.Minute
	}
	jitter := time.Duration(rand.Int64N(int64(d)/5+1)) - d/10
	return d + jitter
}

// Run runs the asynq server (and the scheduler of periodic tasks) until ctx is done, then
// shuts down gracefully.
func Run(ctx context.Context, d Deps) error {
	log := d.Log
	if log == nil {
		log = slog.Default()
	}
	if d.ShutdownTimeout == 0 {
		d.ShutdownTimeout = 25 * time.Second
	}
	srv := asynq.NewServerFromRedisClient(d.Redis, asynq.Config{
		Concurrency:              d.Concurrency,
		Queues:                   Queues,
		IsFailure:                IsFailure,
		RetryDelayFunc:           RetryDelay,
		ShutdownTimeout:          d.ShutdownTimeout,
		DelayedTaskCheckInterval: time.Second,
		TaskCheckInterval:        200 * time.Millisecond,
		Logger:                   asynqLogger{log},
		LogLevel:                 asynq.WarnLevel,
		ErrorHandler: asynq.ErrorHandlerFunc(func(ctx context.Context, t *asynq.Task, err error) {
			if !IsFailure(err) {
				return
			}
			id, _ := asynq.GetTaskID(ctx)
			retried, _ := asynq.GetRetryCount(ctx)
			log.Warn("task failed", "task_type", t.Type(), "task_id", id, "retry", retried, "err", err)
		}),
	})
	mux := asynq.NewServeMux()
	for _, s := range d.Services {
		s.RegisterTasks(mux)
	}
	if err := srv.Start(mux); err != nil {
		return fmt.Errorf("worker: start: %w", err)
	}
	var sched *asynq.Scheduler
	if len(d.Periodic) > 0 {
		sched = asynq.NewSchedulerFromRedisClient(d.Redis, &asynq.SchedulerOpts{Logger: asynqLogger{log}, LogLevel: asynq.WarnLevel})
		for _, p := range d.Periodic {
			if _, err := sched.Register(p.Spec, p.Task); err != nil {
				srv.Shutdown()
				return fmt.Errorf("worker: schedule %s: %w", p.Task.Type(), err)
			}
		}
		if err := sched.Start(); err != nil {
			srv.Shutdown()
			return fmt.Errorf("worker: start scheduler: %w", err)
		}
	}
	loopCtx, stopLoops := context.WithCancel(context.WithoutCancel(ctx))
	var loops sync.WaitGroup
	for _, loop := range d.Loops {
		loops.Go(func() {
			if err := loop(loopCtx); err != nil && loopCtx.Err() == nil {
				log.Error("worker loop stopped", "err", err)
			}
		})
	}
	log.Info("worker started", "concurrency", d.Concurrency, "loops", len(d.Loops))
	<-ctx.Done()
	log.Info("worker stopping")
	stopLoops()
	loops.Wait()
	if sched != nil {
		sched.Shutdown()
	}
	srv.Shutdown()
	return nil
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
