// Package metrics holds botfleet's Prometheus instruments (github.com/prometheus/client_golang)
// on a dedicated registry, never the client library's global one, and serves them in the
// Prometheus text format.
//
// The instruments are package-level, as Prometheus instruments usually are: a process has
// one set, and the domain packages record into them with one call at the place where a
// thing happens (telegram ingest and send, the send limiter, update processing, the REST
// server). State that lives in PostgreSQL or Redis (broadcast recipients, queue sizes) is
// read at scrape time by collectors (NewBroadcastCollector, NewQueueCollector) that each
// process registers on its own Handler.
//
// Every name starts with "botfleet_"; units follow Prometheus' naming conventions
// (prometheus.io/docs/practices/naming): seconds, "_total" for counters.
package metrics

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of a webhook update (label "outcome" of WebhookUpdates).
const (
	// UpdateStored: the update was new and is stored (webhook_events).
	UpdateStored = "stored"
	// UpdateDuplicate: the same (bot, update_id) was stored before; acknowledged.
	UpdateDuplicate = "duplicate"
	// UpdateBotNotFound: unknown or deleted bot (404).
	UpdateBotNotFound = "bot_not_found"
	// UpdateUnauthorized: missing or wrong X-Telegram-Bot-Api-Secret-Token (401).
	UpdateUnauthorized = "unauthorized"
	// UpdateMalformed: not a JSON object with a positive update_id, or data PostgreSQL refuses (400).
	UpdateMalformed = "malformed"
	// UpdateUnavailable: PostgreSQL or Redis failed (503; Telegram redelivers).
	UpdateUnavailable = "unavailable"
)

// Reasons of a limiter wait (label "reason" of LimiterWait): the limits of telegram.Limiter
// (its Refused* constants) and "slot", the wait of a granted permit for its global slot.
const (
	WaitSlot = "slot"
)

// Buckets of the latency histograms, in seconds: 1 ms to 5 min.
var latencyBuckets = []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

var (
	// registry holds the instruments below and the Go and process collectors.
	registry = prometheus.NewRegistry()

	// WebhookUpdates counts the updates Telegram POSTed to the webhook, by outcome
	// (Update* constants).
	WebhookUpdates = newCounterVec("botfleet_webhook_updates_total",
		"Updates received on the webhook, by outcome (stored, duplicate, bot_not_found, unauthorized, malformed, unavailable).", "outcome")

	// UpdateLag observes, per processed update, the time from its storage by the webhook
	// (webhook_events.received_at) to the commit of its processing, in seconds.
	UpdateLag = register(prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "botfleet_update_processing_lag_seconds",
		Help:    "Time from an update's arrival on the webhook to the end of its processing, in seconds.",
		Buckets: latencyBuckets,
	}))

	// Sends counts sendMessage calls to the Bot API by outcome: sent, retry (network error,
	// timeout, 5xx), 429 (flood wait), blocked (403), failed (other 4xx, undecryptable token).
	Sends = newCounterVec("botfleet_telegram_sends_total",
		"sendMessage calls to the Telegram Bot API, by outcome (sent, retry, 429, blocked, failed).", "outcome")

	// Telegram429 counts the Bot API's 429 Too Many Requests answers (each pauses its bot for
	// retry_after).
	Telegram429 = register(prometheus.NewCounter(prometheus.CounterOpts{
		Name: "botfleet_telegram_429_total",
		Help: "Telegram Bot API answers 429 Too Many Requests (flood wait).",
	}))

	// LimiterWait observes each wait of a send for a rate slot, in seconds, by reason:
	// paused (a 429's retry_after), chat (per-chat limit), bot (the bot's window), global
	// (TELEGRAM_RATE_LIMIT), slot (a granted permit waiting for its global slot).
	LimiterWait = register(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "botfleet_limiter_wait_seconds",
		Help:    "Waits of sends for a rate slot, in seconds, by reason (paused, chat, bot, global, slot).",
		Buckets: []float64{0, .01, .05, .1, .25, .5, 1, 2, 5, 10, 15, 30, 60},
	}, []string{"reason"}))

	// HTTPDuration observes each REST request's duration in seconds, by method, route
	// template (e.g. /contacts/:id/) and status class (2xx, 4xx, 5xx...).
	HTTPDuration = register(prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "botfleet_http_request_duration_seconds",
		Help:    "REST request durations in seconds, by method, route template and status class.",
		Buckets: latencyBuckets,
	}, []string{"method", "route", "code"}))
)

// The Go runtime's (go_*) and the process's (process_*) standard metrics.
var (
	_ = register(collectors.NewGoCollector())
	_ = register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
)

func register[C prometheus.Collector](c C) C {
	registry.MustRegister(c)
	return c
}

func newCounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	return register(prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
}

// ObserveHTTP records one REST request: route is the matched route template ("" when no
// route matched: recorded as "unmatched", so that raw paths never become label values); a
// method outside RFC 9110's (a client may send any token) is recorded as "other".
func ObserveHTTP(method, route string, status int, d time.Duration) {
	if route == "" {
		route = "unmatched"
	}
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodConnect, http.MethodOptions, http.MethodTrace:
	default:
		method = "other"
	}
	HTTPDuration.WithLabelValues(method, route, strconv.Itoa(status/100)+"xx").Observe(d.Seconds())
}

// ObserveLimiterWait records a wait of d for reason (d < 0 counts as 0).
func ObserveLimiterWait(reason string, d time.Duration) {
	LimiterWait.WithLabelValues(reason).Observe(max(d, 0).Seconds())
}

// WebhookBatch records a group-commit INSERT of n webhook rows of which inserted were new:
// the others were duplicates. A failed INSERT (err != nil) records nothing here: its
// callers' errors are counted by outcome where they are returned.
func WebhookBatch(inserted int64, n int, err error) {
	if err != nil {
		return
	}
	WebhookUpdates.WithLabelValues(UpdateStored).Add(float64(inserted))
	if dup := int64(n) - inserted; dup > 0 {
		WebhookUpdates.WithLabelValues(UpdateDuplicate).Add(float64(dup))
	}
}

// Handler serves the process-wide instruments and those of extra (collectors reading
// PostgreSQL or Redis at scrape time) in the Prometheus text format. A collector that fails
// (PostgreSQL down) leaves its metrics out of the answer and reports itself through
// botfleet_scrape_errors_total; the rest is served. Each Handler has its own registry for
// extra, so that tests and processes can build several.
func Handler(extra ...prometheus.Collector) http.Handler {
	own := prometheus.NewRegistry()
	own.MustRegister(extra...)
	return promhttp.HandlerFor(prometheus.Gatherers{registry, own}, promhttp.HandlerOpts{
		ErrorHandling: promhttp.ContinueOnError,
	})
}
