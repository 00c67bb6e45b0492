package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// scenarios are the six of issue 5 (docs/benchmarks.md), in order.
var scenarios = []struct {
	id   int
	name string
	fn   func(context.Context, *run) error
}{
	{1, "s1_broadcast_many_bots", scenario1},
	{2, "s2_broadcast_one_bot", scenario2},
	{3, "s3_beyond_telegram_cap", scenario3},
	{4, "s4_inbound", scenario4},
	{5, "s5_million_recipients", scenario5},
	{6, "s6_worker_crash", scenario6},
}

// BenchmarkWorkload is `make bench`: the user workload against the built binary, real
// PostgreSQL and Redis and tgemu with Telegram's limits, printed as a table. Run it once:
//
//	go test ./bench -run '^$' -bench Workload -benchtime 1x -timeout 0
//
// A scenario can also be chosen by name (-bench Workload/s4) or with BENCH_SCENARIOS.
func BenchmarkWorkload(b *testing.B) {
	cfg, err := loadConfig()
	if err != nil {
		b.Fatal(err)
	}
	if cfg.outDir == "" {
		if cfg.outDir, err = os.MkdirTemp("", "botfleet-bench-"); err != nil {
			b.Fatal(err)
		}
	} else if err := os.MkdirAll(cfg.outDir, 0o750); err != nil {
		b.Fatal(err)
	}
	if cfg.profile != "" {
		if err := os.MkdirAll(cfg.profile, 0o750); err != nil {
			b.Fatal(err)
		}
	}
	fmt.Fprintf(os.Stderr, "bench: logs in %s (scale %g)\n", cfg.outDir, cfg.scale)
	bin := cfg.bin
	if bin == "" {
		if bin, err = buildBinary(cfg.outDir); err != nil {
			b.Fatal(err)
		}
	}
	rep := &report{}
	started := time.Now()
	for _, sc := range scenarios {
		if !cfg.enabled(sc.id) {
			continue
		}
		b.Run(sc.name, func(b *testing.B) {
			r := &run{b: b, cfg: cfg, bin: bin, id: sc.id, rep: rep, start: time.Now()}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if la := loadAverage(); la != "" {
				r.logf("start; machine load average %s", la)
				rep.add(sc.id, "load average before (1, 5, 15 min)", "-", la+" (other work on the box skews every figure)", verdictInfo)
			}
			if err := sc.fn(ctx, r); err != nil {
				rep.add(sc.id, "scenario error", "-", firstLine(err.Error()), verdictFail)
				b.Errorf("scenario %d: %v", sc.id, err)
			}
			r.logf("done in %s; stopping the platform", secs(time.Since(r.start)))
		})
	}
	header := fmt.Sprintf("botfleet workload benchmark (%s, GOMAXPROCS %d, scale %g, %s)",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), runtime.GOMAXPROCS(0), cfg.scale, secs(time.Since(started)))
	var sb strings.Builder
	rep.write(&sb, header)
	fmt.Print("\n" + sb.String())
	for _, path := range []string{filepath.Join(cfg.outDir, "results.txt"), cfg.results} {
		if path == "" {
			continue
		}
		if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
			b.Logf("write %s: %v", path, err)
		}
	}
}

// loadAverage is /proc/loadavg's first three fields ("" when unreadable).
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return ""
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], ", ")
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
