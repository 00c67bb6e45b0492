package bench

import (
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// Verdicts of a table row.
const (
	verdictPass    = "PASS"
	verdictFail    = "FAIL"
	verdictTimeout = "TIMEOUT" // the phase hit its time cap; the figure is what it reached
	verdictInfo    = "info"    // reported, no goal
)

// row is one line of the results table.
type row struct {
	scenario int
	figure   string
	goal     string
	measured string
	verdict  string
}

// report collects the rows of every scenario.
type report struct {
	mu     sync.Mutex
	rows   []row
	titles map[int]string
}

func (r *report) title(scenario int, t string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.titles == nil {
		r.titles = map[int]string{}
	}
	r.titles[scenario] = t
}

func (r *report) add(scenario int, figure, goal, measured, verdict string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rows = append(r.rows, row{scenario, figure, goal, measured, verdict})
}

// check adds a row whose verdict is PASS when ok, FAIL otherwise.
func (r *report) check(scenario int, figure, goal, measured string, ok bool) {
	v := verdictFail
	if ok {
		v = verdictPass
	}
	r.add(scenario, figure, goal, measured, v)
}

// write prints the table: scenario, figure, goal, measured, verdict.
func (r *report) write(w io.Writer, header string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	fmt.Fprintln(w, header)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tfigure\tgoal\tmeasured\tresult")
	fmt.Fprintln(tw, "--------\t------\t----\t--------\t------")
	rows := slices.Clone(r.rows)
	slices.SortStableFunc(rows, func(a, b row) int { return a.scenario - b.scenario })
	last := 0
	for _, x := range rows {
		sc := ""
		if x.scenario != last {
			sc = fmt.Sprintf("%d %s", x.scenario, r.titles[x.scenario])
			last = x.scenario
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", sc, x.figure, x.goal, x.measured, x.verdict)
	}
	tw.Flush()
	pass, fail, timeout := 0, 0, 0
	for _, x := range rows {
		switch x.verdict {
		case verdictPass:
			pass++
		case verdictFail:
			fail++
		case verdictTimeout:
			timeout++
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed, %d timed out\n", pass, fail, timeout)
}

// run is the state of one scenario.
type run struct {
	b     *testing.B
	cfg   config
	bin   string
	id    int
	rep   *report
	start time.Time
}

// logf prints a progress line on stderr, prefixed with the scenario and elapsed time.
func (r *run) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "[s%d %6.1fs] %s\n", r.id, time.Since(r.start).Seconds(), fmt.Sprintf(format, args...))
}

// percentile returns the p-th percentile (0 < p <= 1) of sorted by nearest rank.
func percentile[T any](sorted []T, p float64) T {
	var zero T
	if len(sorted) == 0 {
		return zero
	}
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sortedDurations(d []time.Duration) []time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s
}

// ms formats a duration in milliseconds with sensible precision.
func ms(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	case d < 10*time.Second:
		return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.1f s", d.Seconds())
	}
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

func mib(b int64) string { return fmt.Sprintf("%.0f MiB", float64(b)/(1<<20)) }

// num formats n with thousands separators.
func num[T int | int64](n T) string {
	s := fmt.Sprint(int64(n))
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func perSec(f float64) string {
	if f >= 100 {
		return num(int64(math.Round(f))) + "/s"
	}
	return fmt.Sprintf("%.1f/s", f)
}

func rssList(rss []int64) string {
	parts := make([]string, len(rss))
	for i, r := range rss {
		parts[i] = mib(r)
	}
	return strings.Join(parts, ", ")
}
