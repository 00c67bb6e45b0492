package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/uptrace/bun"
)

const (
	// scrapeTimeout bounds the PostgreSQL or Redis queries of one collector at one scrape.
	scrapeTimeout = 3 * time.Second
	// DefaultMinInterval is the collectors' default MinInterval.
	DefaultMinInterval = 5 * time.Second
)

// ScrapeErrors counts scrapes at which a collector could not read its source (PostgreSQL or
// Redis down, timeout), by collector (broadcasts, queues); its metrics are then left out.
var ScrapeErrors = newCounterVec("botfleet_scrape_errors_total",
	"Scrapes at which a collector could not read PostgreSQL or Redis, by collector (broadcasts, queues).", "collector")

// cached runs read at most once per ttl and keeps its last good answer for the scrapes in
// between, so that several Prometheus servers (or a short scrape interval) cost PostgreSQL
// and Redis one read per ttl.
type cached[T any] struct {
	ttl  *time.Duration
	read func(context.Context) (T, error)

	mu   sync.Mutex
	at   time.Time
	last T
}

func (c *cached[T]) get() (T, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.at.IsZero() && time.Since(c.at) < *c.ttl {
		return c.last, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	v, err := c.read(ctx)
	if err != nil {
		var zero T
		return zero, err
	}
	c.last, c.at = v, time.Now()
	return v, nil
}

// BroadcastCollector reports, at scrape time, the broadcasts by status and the recipients of
// the broadcasts still in progress (queued or running) by recipient status. It reads
// PostgreSQL at most once per MinInterval: the broadcasts table (one row per broadcast) and, for the
// unfinished broadcasts only, broadcast_recipients through its (broadcast_id, status) index,
// so that a scrape never counts the recipients of every finished broadcast.
type BroadcastCollector struct {
	// MinInterval is the least time between two reads of PostgreSQL; scrapes in between
	// get the last answer. Default: DefaultMinInterval.
	MinInterval time.Duration

	broadcasts, recipients *prometheus.Desc
	c                      cached[broadcastCounts]
}

type broadcastCounts struct {
	broadcasts, recipients map[string]float64
}

// NewBroadcastCollector returns a BroadcastCollector reading db.
func NewBroadcastCollector(db bun.IDB) *BroadcastCollector {
	bc := &BroadcastCollector{
		MinInterval: DefaultMinInterval,
		broadcasts: prometheus.NewDesc("botfleet_broadcasts",
			"Broadcasts by status (draft, scheduled, running, paused, completed, cancelled, failed).", []string{"status"}, nil),
		recipients: prometheus.NewDesc("botfleet_broadcast_recipients",
			"Recipients of the broadcasts in progress (scheduled, running or paused), by recipient status.", []string{"status"}, nil),
	}
	bc.c = cached[broadcastCounts]{ttl: &bc.MinInterval, read: func(ctx context.Context) (broadcastCounts, error) {
		out := broadcastCounts{broadcasts: map[string]float64{}, recipients: map[string]float64{}}
		if err := countBy(ctx, db, out.broadcasts, `SELECT status, count(*) FROM broadcasts GROUP BY status`); err != nil {
			return out, err
		}
		err := countBy(ctx, db, out.recipients, `SELECT r.status, count(*) FROM broadcasts AS b
			JOIN broadcast_recipients AS r ON r.broadcast_id = b.id
			WHERE b.status IN ('scheduled', 'running', 'paused') GROUP BY r.status`)
		return out, err
	}}
	return bc
}

func countBy(ctx context.Context, db bun.IDB, into map[string]float64, query string) error {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var k string
		var n int64
		if err := rows.Scan(&k, &n); err != nil {
			return err
		}
		into[k] = float64(n)
	}
	return rows.Err()
}

// Describe implements prometheus.Collector.
func (bc *BroadcastCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- bc.broadcasts
	ch <- bc.recipients
}

// Collect implements prometheus.Collector.
func (bc *BroadcastCollector) Collect(ch chan<- prometheus.Metric) {
	v, err := bc.c.get()
	if err != nil {
		ScrapeErrors.WithLabelValues("broadcasts").Inc()
		return
	}
	for status, n := range v.broadcasts {
		ch <- prometheus.MustNewConstMetric(bc.broadcasts, prometheus.GaugeValue, n, status)
	}
	for status, n := range v.recipients {
		ch <- prometheus.MustNewConstMetric(bc.recipients, prometheus.GaugeValue, n, status)
	}
}

// QueueCollector reports, at scrape time, every asynq queue's tasks by state (pending,
// active, scheduled, retry, archived, completed, aggregating) and its latency (the age of
// its oldest pending task), read with the asynq Inspector at most once per MinInterval.
type QueueCollector struct {
	// MinInterval is the least time between two reads of Redis; scrapes in between get the
	// last answer. Default: DefaultMinInterval.
	MinInterval time.Duration

	tasks, latency, paused *prometheus.Desc
	c                      cached[[]*asynq.QueueInfo]
}

// NewQueueCollector returns a QueueCollector using insp (asynq.NewInspectorFromRedisClient).
func NewQueueCollector(insp *asynq.Inspector) *QueueCollector {
	qc := &QueueCollector{
		MinInterval: DefaultMinInterval,
		tasks: prometheus.NewDesc("botfleet_queue_tasks",
			"asynq tasks by queue and state (pending, active, scheduled, retry, archived, completed, aggregating).", []string{"queue", "state"}, nil),
		latency: prometheus.NewDesc("botfleet_queue_latency_seconds",
			"Age of the oldest pending task of each asynq queue, in seconds.", []string{"queue"}, nil),
		paused: prometheus.NewDesc("botfleet_queue_paused",
			"1 when the asynq queue is paused (asynqmon), else 0.", []string{"queue"}, nil),
	}
	qc.c = cached[[]*asynq.QueueInfo]{ttl: &qc.MinInterval, read: func(context.Context) ([]*asynq.QueueInfo, error) {
		names, err := insp.Queues()
		if err != nil {
			return nil, err
		}
		infos := make([]*asynq.QueueInfo, 0, len(names))
		for _, q := range names {
			info, err := insp.GetQueueInfo(q)
			if err != nil {
				return nil, err
			}
			infos = append(infos, info)
		}
		return infos, nil
	}}
	return qc
}

// Describe implements prometheus.Collector.
func (qc *QueueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- qc.tasks
	ch <- qc.latency
	ch <- qc.paused
}

// Collect implements prometheus.Collector.
func (qc *QueueCollector) Collect(ch chan<- prometheus.Metric) {
	infos, err := qc.c.get()
	if err != nil {
		ScrapeErrors.WithLabelValues("queues").Inc()
		return
	}
	for _, q := range infos {
		for state, n := range map[string]int{
			"pending": q.Pending, "active": q.Active, "scheduled": q.Scheduled, "retry": q.Retry,
			"archived": q.Archived, "completed": q.Completed, "aggregating": q.Aggregating,
		} {
			ch <- prometheus.MustNewConstMetric(qc.tasks, prometheus.GaugeValue, float64(n), q.Queue, state)
		}
		ch <- prometheus.MustNewConstMetric(qc.latency, prometheus.GaugeValue, q.Latency.Seconds(), q.Queue)
		paused := 0.0
		if q.Paused {
			paused = 1
		}
		ch <- prometheus.MustNewConstMetric(qc.paused, prometheus.GaugeValue, paused, q.Queue)
	}
}
