package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/spf13/cobra"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/internal/redisinfo"
	"github.com/botfleet/botfleet/migrations"
	"github.com/botfleet/botfleet/telegram"
)

// Doctor check outcomes. OK and WARN keep the exit status 0; any FAIL makes it 1. SKIP
// marks a check that could not run because one it depends on failed (that one is the FAIL).
const (
	checkOK   = "OK"
	checkWarn = "WARN"
	checkFail = "FAIL"
	checkSkip = "SKIP"
)

// doctorTimeout bounds each network check of `botfleet doctor`.
const doctorTimeout = 5 * time.Second

// doctorProbeBudget bounds all the webhook probes of one doctor run together: with
// thousands of bots and a slow PUBLIC_BASE_URL, the bots not probed by then are counted
// in a WARN instead of keeping the operator waiting.
const doctorProbeBudget = 30 * time.Second

// doctorMaxBotLines is how many bots with a webhook problem doctor lists one by one; the
// rest are counted.
const doctorMaxBotLines = 20

// checkResult is one line of the doctor's report.
type checkResult struct {
	Name   string
	Status string // checkOK, checkWarn, checkFail or checkSkip
	Detail string // what was found (no secrets: URLs are redacted)
	Fix    string // how to fix it (WARN and FAIL)
}

// doctor runs the checks of `botfleet doctor` and prints each result as it goes.
type doctor struct {
	out     io.Writer
	http    *http.Client
	results []checkResult
}

func (d *doctor) report(r checkResult) {
	d.results = append(d.results, r)
	fmt.Fprintf(d.out, "%-5s %-17s %s\n", r.Status, r.Name, oneLine(r.Detail))
	if r.Fix != "" && (r.Status == checkWarn || r.Status == checkFail) {
		fmt.Fprintf(d.out, "%-23s fix: %s\n", "", oneLine(r.Fix))
	}
}

func oneLine(s string) string { return strings.ReplaceAll(strings.TrimSpace(s), "\n", "; ") }

func (d *doctor) count(status string) int {
	n := 0
	for _, r := range d.results {
		if r.Status == status {
			n++
		}
	}
	return n
}

// newDoctorCmd is `botfleet doctor`: it checks the configuration, PostgreSQL, the
// migrations, Redis, the Telegram Bot API URL, PUBLIC_BASE_URL and every bot's webhook,
// prints one line per check (OK, WARN, FAIL or SKIP, what was found, how to fix it) and
// exits 1 when any check failed (warnings keep 0), so scripts can gate a deploy on it.
func newDoctorCmd(ctx context.Context, getenv func(string) string, stdout io.Writer) *cobra.Command {
	return &cobra.Command{
		Use:   "doctor",
		Short: "Check configuration, PostgreSQL, migrations, Redis, the Telegram API URL and every bot's webhook; exit 1 on any FAIL",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			d := &doctor{
				out:  stdout,
				http: &http.Client{Timeout: doctorTimeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
			}
			d.run(ctx, getenv)
			fmt.Fprintf(stdout, "\n%d OK, %d WARN, %d FAIL, %d SKIP\n", d.count(checkOK), d.count(checkWarn), d.count(checkFail), d.count(checkSkip))
			if n := d.count(checkFail); n > 0 {
				return fmt.Errorf("doctor: %d check(s) failed", n)
			}
			return nil
		},
	}
}

func (d *doctor) run(ctx context.Context, getenv func(string) string) {
	cfg, err := config.Load(getenv)
	if err != nil {
		d.report(checkResult{Name: "configuration", Status: checkFail, Detail: err.Error(),
			Fix: "set the environment variables named above (README.md, Configuration); the other checks need a valid configuration"})
		return
	}
	d.checkConfig(cfg)
	db, dbOK := d.checkPostgres(ctx, cfg)
	if db != nil {
		defer db.Close()
	}
	migrated := d.checkMigrations(ctx, cfg, db, dbOK)
	d.checkRedis(ctx, cfg)
	d.checkTelegram(ctx, cfg)
	baseOK := d.checkPublicBaseURL(ctx, cfg)
	d.checkWebhooks(ctx, cfg, db, migrated, baseOK)
}

func (d *doctor) checkConfig(cfg config.Config) {
	var devDefaults []string
	if cfg.AdminToken.Reveal() == config.DevAdminToken {
		devDefaults = append(devDefaults, "ADMIN_TOKEN")
	}
	if cfg.EncryptionKey.Reveal() == config.DevEncryptionKey {
		devDefaults = append(devDefaults, "ENCRYPTION_KEY")
	}
	if len(devDefaults) > 0 {
		d.report(checkResult{Name: "configuration", Status: checkWarn,
			Detail: fmt.Sprintf("APP_ENV=%s; %s use the development defaults", cfg.AppEnv, strings.Join(devDefaults, " and ")),
			Fix:    "fine on a laptop; set real secrets before production (ENCRYPTION_KEY: openssl rand -base64 32), where APP_ENV=production refuses these"})
		return
	}
	d.report(checkResult{Name: "configuration", Status: checkOK, Detail: "APP_ENV=" + cfg.AppEnv})
}

// checkPostgres opens DATABASE_URL and pings it. It returns the pool (nil when DATABASE_URL
// does not parse) and whether the database answered.
func (d *doctor) checkPostgres(ctx context.Context, cfg config.Config) (*bun.DB, bool) {
	dsn := cfg.DatabaseURL.Reveal()
	shown := config.RedactURL(dsn)
	db, err := database.Open(dsn, database.WithMaxConns(4))
	if err != nil {
		d.report(checkResult{Name: "postgresql", Status: checkFail, Detail: err.Error(), //nolint:gosec // G101: the fix shows the DSN's format, not a credential
			Fix: "fix DATABASE_URL (postgres://user:password@host:5432/dbname?sslmode=...)"})
		return nil, false
	}
	pctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	var ver string
	if err := db.QueryRowContext(pctx, "SHOW server_version").Scan(&ver); err != nil {
		err = explainDBError(err, dsn)
		fix := "start PostgreSQL, or fix DATABASE_URL (host, port, user, password, sslmode)"
		if errors.Is(err, errNotMigrated) {
			fix = "run `botfleet migrate` (it creates the database and its tables)"
		}
		d.report(checkResult{Name: "postgresql", Status: checkFail, Detail: shown + ": " + err.Error(), Fix: fix})
		return db, false
	}
	d.report(checkResult{Name: "postgresql", Status: checkOK, Detail: fmt.Sprintf("%s (PostgreSQL %s)", shown, ver)})
	return db, true
}

// checkMigrations compares the embedded migrations with those applied; it reports
// whether all are applied.
func (d *doctor) checkMigrations(ctx context.Context, cfg config.Config, db *bun.DB, dbOK bool) bool {
	if !dbOK {
		d.report(checkResult{Name: "migrations", Status: checkSkip, Detail: "PostgreSQL did not answer"})
		return false
	}
	pctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	pending, err := migrations.Pending(pctx, db)
	if err != nil {
		d.report(checkResult{Name: "migrations", Status: checkFail, Detail: explainDBError(err, cfg.DatabaseURL.Reveal()).Error(),
			Fix: "check that DATABASE_URL's user may read the schema; run `botfleet migrate`"})
		return false
	}
	if len(pending) > 0 {
		d.report(checkResult{Name: "migrations", Status: checkFail,
			Detail: fmt.Sprintf("%d not applied: %s", len(pending), strings.Join(pending, ", ")),
			Fix:    "run `botfleet migrate` (serve and worker refuse to start until it has run)"})
		return false
	}
	d.report(checkResult{Name: "migrations", Status: checkOK, Detail: "every embedded migration is applied"})
	return true
}

func (d *doctor) checkRedis(ctx context.Context, cfg config.Config) {
	shown := config.RedactURL(cfg.RedisURL.Reveal())
	ropt, err := redis.ParseURL(cfg.RedisURL.Reveal())
	if err != nil {
		d.report(checkResult{Name: "redis", Status: checkFail, Detail: "REDIS_URL: " + err.Error(),
			Fix: "fix REDIS_URL (redis://[:password@]host:6379/db)"})
		return
	}
	ropt.PoolSize = 2
	rdb := redis.NewClient(ropt)
	defer rdb.Close()
	pctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	info, err := rdb.InfoMap(pctx, "server").Result()
	if err != nil {
		d.report(checkResult{Name: "redis", Status: checkFail, Detail: shown + ": " + err.Error(),
			Fix: "start Redis, or fix REDIS_URL (host, port, password, database number)"})
		return
	}
	d.report(checkResult{Name: "redis", Status: checkOK, Detail: fmt.Sprintf("%s (Redis %s)", shown, info["Server"]["redis_version"])})
	// How the configured Redis could lose or evict botfleet's keys (the same check as
	// GET /readyz's warnings): each problem is a WARN.
	problems, err := redisinfo.Check(pctx, rdb)
	if err != nil {
		d.report(checkResult{Name: "redis durability", Status: checkWarn, Detail: "could not read the configuration: " + err.Error(),
			Fix: "allow CONFIG GET and INFO persistence to botfleet's Redis user, or check persistence by hand (README.md, Redis)"})
		return
	}
	for _, p := range problems {
		d.report(checkResult{Name: "redis durability", Status: checkWarn, Detail: p,
			Fix: "run Redis with appendonly yes and maxmemory-policy noeviction (README.md, Redis)"})
	}
	if len(problems) == 0 {
		d.report(checkResult{Name: "redis durability", Status: checkOK, Detail: "persistence on, no eviction"})
	}
}

// checkTelegram checks that TELEGRAM_API_URL answers HTTP at all: getMe would need a bot
// token, and any status (Telegram answers 404 at its root) proves DNS, TLS and the route.
func (d *doctor) checkTelegram(ctx context.Context, cfg config.Config) {
	status, err := d.get(ctx, cfg.TelegramAPIURL)
	if err != nil {
		d.report(checkResult{Name: "telegram api", Status: checkFail, Detail: err.Error(),
			Fix: "fix TELEGRAM_API_URL, or let this host reach it (DNS, firewall, HTTPS proxy via HTTPS_PROXY)"})
		return
	}
	d.report(checkResult{Name: "telegram api", Status: checkOK, Detail: fmt.Sprintf("%s answers HTTP (%s)", cfg.TelegramAPIURL, status)})
}

// checkPublicBaseURL checks that PUBLIC_BASE_URL + /healthz answers 2xx, i.e. that the
// address Telegram is given reaches a running `serve`; it reports whether it did.
func (d *doctor) checkPublicBaseURL(ctx context.Context, cfg config.Config) bool {
	base := strings.TrimRight(cfg.PublicBaseURL, "/")
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		d.report(checkResult{Name: "public base url", Status: checkFail, Detail: fmt.Sprintf("PUBLIC_BASE_URL %q is not an http(s) URL", cfg.PublicBaseURL),
			Fix: "set PUBLIC_BASE_URL to the public https://host of `botfleet serve`"})
		return false
	}
	status, err := d.get(ctx, base+"/healthz")
	switch {
	case err != nil:
		d.report(checkResult{Name: "public base url", Status: checkFail, Detail: err.Error(),
			Fix: "start `botfleet serve` and route PUBLIC_BASE_URL to it (reverse proxy, ingress, DNS): Telegram delivers every webhook there"})
		return false
	case !strings.HasPrefix(status, "2"):
		d.report(checkResult{Name: "public base url", Status: checkFail, Detail: fmt.Sprintf("GET %s/healthz: %s", base, status),
			Fix: "PUBLIC_BASE_URL must reach `botfleet serve` (GET /healthz answers 200 there)"})
		return false
	}
	d.report(checkResult{Name: "public base url", Status: checkOK, Detail: fmt.Sprintf("GET %s/healthz: %s", base, status)})
	// Telegram only delivers to HTTPS on ports 443, 80, 88 or 8443
	// (core.telegram.org/bots/api#setwebhook); the emulator and local setups take plain HTTP.
	if strings.Contains(cfg.TelegramAPIURL, "api.telegram.org") {
		port := u.Port()
		if u.Scheme != "https" || (port != "" && port != "443" && port != "80" && port != "88" && port != "8443") {
			d.report(checkResult{Name: "public base url", Status: checkWarn, Detail: fmt.Sprintf("%s: Telegram only calls HTTPS webhooks on ports 443, 80, 88 or 8443", base),
				Fix: "serve PUBLIC_BASE_URL over HTTPS on one of those ports (a TLS-terminating proxy in front of serve)"})
		}
	}
	return true
}

// get GETs u and returns the response's status line.
func (d *doctor) get(ctx context.Context, u string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := d.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	return resp.Status, nil
}

// doctorBot is what doctor reads of a bot (all tenants, active bots only).
type doctorBot struct {
	ID            uuid.UUID
	TenantID      uuid.UUID
	WebhookURL    string
	WebhookStatus string
	WebhookError  string
}

// checkWebhooks checks every active bot's stored webhook URL: that setWebhook succeeded,
// that the URL is PUBLIC_BASE_URL's webhook URL for the bot, and that a POST without the
// secret header answers 401 there (a running serve that knows the bot, refusing the
// missing secret; nothing is stored).
func (d *doctor) checkWebhooks(ctx context.Context, cfg config.Config, db *bun.DB, migrated, baseOK bool) {
	if !migrated {
		d.report(checkResult{Name: "webhooks", Status: checkSkip, Detail: "the database is not reachable or not migrated"})
		return
	}
	qctx, cancel := context.WithTimeout(ctx, doctorTimeout)
	defer cancel()
	var bots []doctorBot
	// An operator-wide read across tenants (the stores are tenant-scoped by design).
	if err := db.NewSelect().Table("bots").Column("id", "tenant_id", "webhook_url", "webhook_status", "webhook_error").
		Where("deleted_at IS NULL").OrderExpr("created_at, id").Scan(qctx, &bots); err != nil {
		d.report(checkResult{Name: "webhooks", Status: checkFail, Detail: "list bots: " + err.Error(), Fix: "check PostgreSQL (see above)"})
		return
	}
	if len(bots) == 0 {
		d.report(checkResult{Name: "webhooks", Status: checkOK, Detail: "no bots registered yet"})
		return
	}
	base := strings.TrimRight(cfg.PublicBaseURL, "/")
	problems := make([]string, len(bots))
	var unprobed atomic.Int64
	pctx, cancelProbes := context.WithTimeout(ctx, doctorProbeBudget)
	defer cancelProbes()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, b := range bots {
		want := base + telegram.WebhookPath + b.ID.String() + "/"
		switch {
		case b.WebhookStatus != telegram.WebhookActive:
			problems[i] = fmt.Sprintf("webhook %s %s", b.WebhookStatus, b.WebhookError)
		case b.WebhookURL != want:
			problems[i] = fmt.Sprintf("webhook URL %s is not under PUBLIC_BASE_URL %s", b.WebhookURL, base)
		case baseOK:
			wg.Go(func() {
				select {
				case sem <- struct{}{}:
				case <-pctx.Done():
					unprobed.Add(1)
					return
				}
				defer func() { <-sem }()
				if problems[i] = d.probeWebhook(pctx, want); problems[i] != "" && pctx.Err() != nil {
					problems[i] = ""
					unprobed.Add(1)
				}
			})
		}
	}
	wg.Wait()
	failed := 0
	for i, p := range problems {
		if p == "" {
			continue
		}
		failed++
		if failed <= doctorMaxBotLines {
			d.report(checkResult{Name: "webhooks", Status: checkFail,
				Detail: fmt.Sprintf("bot %s (tenant %s): %s", bots[i].ID, bots[i].TenantID, p),
				Fix:    "the tenant deletes the bot and registers it again (POST /telegram/v1/bots/), which calls setWebhook with the current PUBLIC_BASE_URL"})
		}
	}
	if n := unprobed.Load(); n > 0 {
		d.report(checkResult{Name: "webhooks", Status: checkWarn,
			Detail: fmt.Sprintf("%d of %d bots not probed within %s", n, len(bots), doctorProbeBudget),
			Fix:    "PUBLIC_BASE_URL answers slowly: check serve's load and the proxy in front of it"})
	}
	switch {
	case failed > doctorMaxBotLines:
		d.report(checkResult{Name: "webhooks", Status: checkFail, Detail: fmt.Sprintf("... and %d more bots (%d of %d in all)", failed-doctorMaxBotLines, failed, len(bots)),
			Fix: "see the lines above"})
	case failed == 0 && baseOK:
		d.report(checkResult{Name: "webhooks", Status: checkOK, Detail: fmt.Sprintf("%d bot(s): every webhook is under PUBLIC_BASE_URL and answers", len(bots))})
	case failed == 0:
		d.report(checkResult{Name: "webhooks", Status: checkSkip, Detail: fmt.Sprintf("%d bot(s) registered under PUBLIC_BASE_URL; not probed, PUBLIC_BASE_URL does not answer", len(bots))})
	}
}

// probeWebhook POSTs an empty update without the secret header to a webhook URL: 401 means
// a serve that knows the bot answered (and stored nothing). It returns "" or the problem.
func (d *doctor) probeWebhook(ctx context.Context, u string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(`{}`))
	if err != nil {
		return err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.http.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		return ""
	case http.StatusNotFound:
		return fmt.Sprintf("POST %s: 404: the server behind PUBLIC_BASE_URL does not know this bot (another database?)", u)
	}
	return fmt.Sprintf("POST %s without the secret header: %s, want 401", u, resp.Status)
}
