package bench

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// config is the benchmark's configuration, read from BENCH_* environment variables.
type config struct {
	// scale multiplies the bot and contact counts of every scenario (BENCH_SCALE, default 1).
	scale float64
	// only lists the scenarios to run (BENCH_SCENARIOS=1,2,4); nil runs all.
	only map[int]bool
	// outDir receives the processes' logs, profiles and results.txt (BENCH_OUT, default a
	// new directory under $TMPDIR).
	outDir string
	// profile turns on CPU profiles of the platform (BENCH_PROFILE=dir); "" is off.
	profile string
	// results is an extra copy of the table (BENCH_RESULTS, default bench/results.txt; ""
	// writes none). Relative paths of every BENCH_* variable are relative to the repository
	// root, where `make bench` runs.
	results string
	// setupTimeout caps each setup phase: contacts created, welcomes received (BENCH_SETUP_TIMEOUT).
	setupTimeout time.Duration
	// progress is the interval of progress lines on stderr (BENCH_PROGRESS, default 5s).
	progress time.Duration
	// bin is a botfleet binary to benchmark instead of building ./cmd/botfleet (BENCH_BIN),
	// e.g. to compare two builds.
	bin string
}

func loadConfig() (config, error) {
	c := config{
		scale:        1,
		results:      "bench/results.txt",
		setupTimeout: 5 * time.Minute,
		progress:     5 * time.Second,
	}
	if v := os.Getenv("BENCH_SCALE"); v != "" {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f <= 0 {
			return c, fmt.Errorf("BENCH_SCALE=%q: want a positive number", v)
		}
		c.scale = f
	}
	if v := os.Getenv("BENCH_SCENARIOS"); v != "" {
		c.only = map[int]bool{}
		for _, f := range strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' }) {
			n, err := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(f), "s"))
			if err != nil || n < 1 || n > 6 {
				return c, fmt.Errorf("BENCH_SCENARIOS=%q: want numbers 1-6 such as 1,2,4", v)
			}
			c.only[n] = true
		}
	}
	c.outDir = os.Getenv("BENCH_OUT")
	c.profile = os.Getenv("BENCH_PROFILE")
	c.bin = os.Getenv("BENCH_BIN")
	if v, ok := os.LookupEnv("BENCH_RESULTS"); ok {
		c.results = v
	}
	for _, p := range []*string{&c.outDir, &c.profile, &c.results, &c.bin} {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(repoRoot(), *p)
		}
	}
	var err error
	if c.setupTimeout, err = envDuration("BENCH_SETUP_TIMEOUT", c.setupTimeout); err != nil {
		return c, err
	}
	if c.progress, err = envDuration("BENCH_PROGRESS", c.progress); err != nil {
		return c, err
	}
	return c, nil
}

func (c config) enabled(n int) bool { return c.only == nil || c.only[n] }

// count is a scenario's bot or contact count: BENCH_S<n>_<WHAT> when set, else full scaled
// by BENCH_SCALE (rounded, at least min).
func (c config) count(scenario int, what string, full, min int) (int, error) {
	name := fmt.Sprintf("BENCH_S%d_%s", scenario, what)
	if v := os.Getenv(name); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return 0, fmt.Errorf("%s=%q: want a positive integer", name, v)
		}
		return n, nil
	}
	return max(int(math.Round(float64(full)*c.scale)), min), nil
}

// timeout is BENCH_S<n>_TIMEOUT when set, else def.
func (c config) timeout(scenario int, def time.Duration) (time.Duration, error) {
	return envDuration(fmt.Sprintf("BENCH_S%d_TIMEOUT", scenario), def)
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s=%q: want a positive duration such as 90s or 5m", name, v)
	}
	return d, nil
}
