// Command botfleet is the whole platform in one binary:
//
//	botfleet serve      HTTP API and Telegram webhooks
//	botfleet worker     asynq worker: update processing, sending, broadcasts
//	botfleet all        serve and worker in one process
//	botfleet migrate    create the database when missing and apply the embedded migrations
//	botfleet tenant create --name N   create a tenant and print its API key (shown once)
//	botfleet emulator --addr HOST:PORT   run the tgemu Telegram Bot API emulator
//	botfleet doctor     check configuration, PostgreSQL, migrations, Redis, Telegram, webhooks
//	botfleet healthcheck [--url URL | --worker]   container health probe (exit 0 or 1)
//	botfleet version    print the version (also --version)
//	botfleet rotate-encryption-key   re-encrypt every bot token with ENCRYPTION_KEY
//
// Configuration comes from the environment (see README.md and internal/config).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/uptrace/bun"
	"golang.org/x/sync/errgroup"

	"github.com/botfleet/botfleet/api"
	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/callbacks"
	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/redisconn"
	"github.com/botfleet/botfleet/migrations"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
	"github.com/botfleet/botfleet/worker"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		// After the first signal, restore the default behaviour: a second one exits at once
		// (TECH-NOTES pitfall 13).
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "botfleet:", err)
		os.Exit(1)
	}
}

// run executes the CLI with args (without the program name).
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	root := &cobra.Command{
		Use:           "botfleet",
		Short:         "botfleet: a multi-tenant Telegram bot-hosting platform",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)

	root.AddCommand(&cobra.Command{
		Use:   "serve",
		Short: "Run the HTTP API and the Telegram webhooks (HTTP_ADDR)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(ctx, getenv, stderr, func(ctx context.Context, a *app) error { return a.serve(ctx) })
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "worker",
		Short: "Run the asynq worker: update processing, sending, broadcasts, sweeps",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(ctx, getenv, stderr, func(ctx context.Context, a *app) error { return a.work(ctx) })
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "all",
		Short: "Run serve and worker in one process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withApp(ctx, getenv, stderr, func(ctx context.Context, a *app) error {
				g, ctx := errgroup.WithContext(ctx)
				g.Go(func() error { return a.serve(ctx) })
				g.Go(func() error { return a.work(ctx) })
				return g.Wait()
			})
		},
	})
	root.AddCommand(&cobra.Command{
		Use:   "migrate",
		Short: "Create the database when it does not exist and apply the embedded migrations (safe to run twice)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return migrate(ctx, getenv, stdout)
		},
	})
	tenantCmd := &cobra.Command{Use: "tenant", Short: "Manage tenants"}
	var tenantName string
	createCmd := &cobra.Command{
		Use:   "create --name NAME",
		Short: "Create a tenant and print {id, name, api_key} as JSON (the key is shown only once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// A one-shot command: no startup log, no Redis; the database must be migrated.
			cfg, err := config.Load(getenv)
			if err != nil {
				return err
			}
			db, err := openMigratedDB(ctx, cfg)
			if err != nil {
				return err
			}
			defer db.Close()
			t, key, err := tenant.New(db).Create(ctx, tenantName)
			if err != nil {
				return err
			}
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(map[string]any{"id": t.ID, "name": t.Name, "api_key": key, "created_at": t.CreatedAt})
		},
	}
	createCmd.Flags().StringVar(&tenantName, "name", "", "tenant name (required)")
	_ = createCmd.MarkFlagRequired("name")
	tenantCmd.AddCommand(createCmd)
	root.AddCommand(tenantCmd)

	var emuAddr string
	emuCmd := &cobra.Command{
		Use:   "emulator --addr HOST:PORT",
		Short: "Run tgemu, the Telegram Bot API emulator (Bot API at /bot<token>/<method>, control API at /control/)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := newLogger(getenv("LOG_LEVEL"), getenv("APP_ENV"), stderr)
			emu := tgemu.New(tgemu.Options{Logger: log})
			url, err := emu.Start(emuAddr)
			if err != nil {
				return err
			}
			log.Info("emulator listening", "url", url)
			fmt.Fprintln(stdout, url)
			<-ctx.Done()
			return emu.Close()
		},
	}
	emuCmd.Flags().StringVar(&emuAddr, "addr", "127.0.0.1:8081", "listen address")
	root.AddCommand(emuCmd)
	root.AddCommand(&cobra.Command{
		Use:   "version",
		Short: "Print the version (the same as --version)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintf(stdout, "botfleet version %s\n", version)
			return err
		},
	})
	root.AddCommand(newDoctorCmd(ctx, getenv, stdout))
	root.AddCommand(newHealthcheckCmd(ctx, getenv, stdout))
	root.AddCommand(rotateCmd(ctx, getenv, stdout, stderr))
	root.AddCommand(configCmd(getenv, stdout, stderr))
	return root.ExecuteContext(ctx)
}

func newLogger(level, appEnv string, w io.Writer) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	if appEnv == "production" {
		return logging.New(w, logging.FormatJSON, l)
	}
	return logging.New(w, logging.FormatText, l)
}

// migrate creates the database when missing and applies the embedded migrations, printing
// what it did on stdout (no startup log, no Redis).
func migrate(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	dsn := cfg.DatabaseURL.Reveal()
	created, err := database.EnsureDatabase(ctx, dsn)
	if err != nil {
		return explainDBError(err, dsn)
	}
	if created {
		fmt.Fprintf(stdout, "database %q created\n", dbName(dsn))
	}
	db, err := database.Open(dsn, database.WithMultiStatements()) // trusted, embedded SQL files only
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := migrations.Apply(ctx, db)
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		fmt.Fprintln(stdout, "migrations: up to date")
		return nil
	}
	for _, name := range applied {
		fmt.Fprintln(stdout, "migrations: applied", name)
	}
	return nil
}

// app holds the wired services of one process.
type app struct {
	cfg        config.Config
	log        *slog.Logger
	db         *bun.DB
	rdb        redis.UniversalClient
	queue      *asynq.Client
	tenants    *tenant.Service
	contacts   *contacts.Service
	telegram   *telegram.Service
	broadcasts *broadcast.Service
	metrics    http.Handler // GET /metrics (ops.go)
	// callbacks: event callbacks to the tenant (webhook endpoints, the delivery loop).
	callbacks *callbacks.Service
}

func withApp(ctx context.Context, getenv func(string) string, stderr io.Writer, fn func(context.Context, *app) error) error {
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	log := logging.New(stderr, cfg.LogFormatName(), cfg.SlogLevel())
	slog.SetDefault(log)
	log.Info("botfleet starting", "version", version, "config", cfg)
	warnMisspelled(log)
	key, err := cfg.Key()
	if err != nil {
		return err
	}
	oldKeys, err := cfg.OldKeys()
	if err != nil {
		return err
	}
	db, err := database.Open(cfg.DatabaseURL.Reveal(), database.WithMaxConns(cfg.DatabaseMaxConns),
		database.WithStatementTimeout(cfg.DatabaseStatementTimeout))
	if err != nil {
		return err
	}
	defer db.Close()
	// Every running send task and webhook request may use a connection at once (the
	// default, 10 per CPU, makes them queue for Redis). REDIS_URL's pool_size wins.
	rdb, err := redisconn.New(cfg.RedisURL.Reveal(), cfg.RedisCluster, 2*cfg.WorkerSendConcurrency+64)
	if err != nil {
		return err
	}
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	if err := db.PingContext(pctx); err != nil {
		if err := explainDBError(err, cfg.DatabaseURL.Reveal()); errors.Is(err, errNotMigrated) {
			cancel()
			return err
		}
		log.Warn("PostgreSQL not reachable at start; requests needing it answer 503 until it is", "error", err)
	} else if err := checkMigrated(pctx, db, cfg.DatabaseURL.Reveal()); err != nil {
		cancel()
		return err
	}
	if err := rdb.Ping(pctx).Err(); err != nil {
		log.Warn("Redis not reachable at start; requests needing it answer 503 until it is", "error", err)
	}
	cancel()
	if cfg.PprofAddr != "" {
		startPprof(ctx, cfg.PprofAddr, log)
	}
	queue := asynq.NewClientFromRedisClient(rdb)
	a := &app{cfg: cfg, log: log, db: db, rdb: rdb, queue: queue}
	a.metrics = newMetrics(ctx, cfg, db, rdb, log) // ops.go
	// API key authentication is cached per process; revocations reach every process over Redis pub/sub.
	a.tenants = tenant.New(db, tenant.WithRedis(rdb), tenant.WithLogger(log))
	defer a.tenants.Close()
	a.contacts = contacts.New(db)
	// Event callbacks: secrets sealed with the bot tokens' keys (callbacks package).
	keyring, err := telegram.NewKeyring(key, oldKeys...)
	if err != nil {
		return err
	}
	a.callbacks = callbacks.New(callbacks.Deps{DB: db, Redis: rdb, Sealer: keyring, Log: log, AllowPrivate: cfg.AllowPrivateCallbacks})
	defer a.callbacks.Close()
	a.telegram, err = telegram.New(telegram.Deps{
		DB: db, Redis: rdb, Queue: queue, Contacts: a.contacts, Log: log, Callbacks: a.callbacks,
		Cfg: telegram.Config{
			APIURL:         cfg.TelegramAPIURL,
			PublicBaseURL:  cfg.PublicBaseURL,
			RequestTimeout: cfg.TelegramRequestTimeout,
			MaxWait:        cfg.TelegramMaxWait,
			MaxRetries:     cfg.TelegramMaxRetries,
			GlobalRate:     cfg.TelegramRateLimit,
			BotRate:        cfg.TelegramBotRateLimit,
			PaidBotRate:    cfg.TelegramPaidBotRate,
			ChatInterval:   cfg.TelegramChatInterval,
			EncryptionKey:  key,
			DecryptionKeys: oldKeys,
		},
	})
	if err != nil {
		return err
	}
	a.broadcasts = broadcast.New(broadcast.Deps{
		DB: db, Queue: queue, Telegram: a.telegram, Contacts: a.contacts, Log: log,
		MaxRetries: cfg.TelegramMaxRetries, Senders: cfg.BroadcastSenders,
	})
	return fn(ctx, a)
}

func (a *app) serve(ctx context.Context) error {
	e := api.New(api.Deps{
		Tenants: a.tenants, Telegram: a.telegram, Contacts: a.contacts, Broadcasts: a.broadcasts,
		DB: a.db, Redis: a.rdb, AdminToken: a.cfg.AdminToken, Log: a.log, Metrics: a.metrics,
		RateLimit: api.RateLimit{Rate: a.cfg.APIRateLimit, Burst: a.cfg.APIRateBurst},
	})
	srv := &http.Server{
		Addr:              a.cfg.HTTPAddr,
		Handler:           e,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: listen on HTTP_ADDR %s: %w", a.cfg.HTTPAddr, err)
	}
	// Logged once the port is bound: a client may connect from now on.
	a.log.Info("http listening", "addr", ln.Addr().String())
	errc := make(chan error, 1)
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
		close(errc)
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	a.log.Info("http stopping")
	return srv.Shutdown(sctx)
}

func (a *app) work(ctx context.Context) error {
	periodic := []worker.Periodic{
		{Spec: "@every " + a.cfg.SweepInterval.String(), Task: telegram.NewSweepTask()},
		{Spec: "@every " + a.cfg.SweepInterval.String(), Task: broadcast.NewSweepTask()},
	}
	if a.cfg.BotHealthInterval > 0 { // health checks and webhook drift repair (telegram/health.go)
		periodic = append(periodic, worker.Periodic{Spec: "@every " + a.cfg.BotHealthInterval.String(), Task: telegram.NewHealthCheckTask()})
	}
	return worker.Run(ctx, worker.Deps{
		Redis:           a.rdb,
		Concurrency:     a.cfg.WorkerConcurrency,
		SendConcurrency: a.cfg.WorkerSendConcurrency,
		ShutdownTimeout: a.cfg.ShutdownTimeout,
		Log:             a.log,
		Services:        []worker.Registrar{a.telegram, a.broadcasts},
		Loops: []func(context.Context) error{
			func(ctx context.Context) error { return a.telegram.RunEventProcessors(ctx, a.cfg.EventProcessors) },
			a.callbacks.Run, // event callbacks: the delivery loop (callbacks/deliver.go)
		},
		Periodic: periodic,
	})
}

// startPprof serves net/http/pprof on addr (PPROF_ADDR) until ctx ends. The address must be
// private (loopback or an admin network): profiles reveal internals.
func startPprof(ctx context.Context, addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("pprof: listen on PPROF_ADDR", "addr", addr, "error", err)
		return
	}
	log.Info("pprof listening", "addr", ln.Addr().String())
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("pprof listener failed", "error", err)
		}
	}()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
}
