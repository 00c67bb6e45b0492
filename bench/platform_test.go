package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

const (
	adminToken    = "bench-admin-token-0123456789abcdef0123456789"
	encryptionKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
)

// repoRoot is the module root (the parent of this package's directory).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// buildBinary compiles cmd/botfleet into dir.
func buildBinary(dir string) (string, error) {
	bin := filepath.Join(dir, "botfleet")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/botfleet")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/botfleet: %v\n%s", err, out)
	}
	return bin, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// platformOpts shape one scenario's deployment.
type platformOpts struct {
	emu     tgemu.Options
	env     map[string]string // on top of the harness's settings; BENCH_ENV_* still wins
	workers int
}

// platform is one botfleet deployment: a fresh database, a reserved Redis database, an
// in-process tgemu, `botfleet serve` and the workers.
type platform struct {
	b     testing.TB
	r     *run
	env   []string
	base  string
	emu   *tgemu.Server
	hooks *hookRecorder
	db    *pgxpool.Pool
	dbURL string
	http  *http.Client
	serve *proc
	profs sync.WaitGroup // CPU profiles being collected
	cpu0  cpuSnapshot    // the box and the harness when the platform started

	mu      sync.Mutex
	workers []*proc // in start order; a restarted worker is appended
	nproc   int
}

// newPlatform migrates a fresh database, starts serve and opts.workers workers against a
// new tgemu, and waits for /readyz.
func (r *run) newPlatform(ctx context.Context, opts platformOpts) (*platform, error) {
	b := r.b
	hooks := newHookRecorder()
	opts.emu.HTTPClient = &http.Client{Timeout: 10 * time.Second, Transport: hooks}
	emu := tgemu.NewTest(b, opts.emu)
	dbURL := testenv.DBURL(b)
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p := &platform{
		b: b, r: r, base: "http://" + addr, emu: emu, hooks: hooks, dbURL: dbURL,
		http: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{
			MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		}},
	}
	harness := map[string]string{
		"DATABASE_URL":        dbURL,
		"REDIS_URL":           testenv.RedisDBURL(b),
		"HTTP_ADDR":           addr,
		"PUBLIC_BASE_URL":     p.base,
		"TELEGRAM_API_URL":    emu.URL(),
		"ADMIN_TOKEN":         adminToken,
		"ENCRYPTION_KEY":      encryptionKey,
		"TELEGRAM_RATE_LIMIT": "100000/s",
		"API_RATE_LIMIT":      "100000/s", // the benchmarks page through lists with one key per tenant
		"LOG_LEVEL":           "warn",
	}
	for k, v := range opts.env {
		harness[k] = v
	}
	p.env = childEnv(os.Environ(), harness)
	if out, err := p.cmd("migrate").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("botfleet migrate: %v\n%s", err, out)
	}
	pool, err := pgxpool.New(ctx, dbURL)
	if err != nil {
		return nil, err
	}
	b.Cleanup(pool.Close)
	p.db = pool
	p.cpu0 = readCPUSnapshot()
	// Stop the processes before the database and Redis are dropped (cleanups run last-in
	// first-out).
	b.Cleanup(p.stopAll)
	if p.serve, err = p.start("serve"); err != nil {
		return nil, err
	}
	n := opts.workers
	if n == 0 {
		n = 2
	}
	for range n {
		if _, err := p.start("worker"); err != nil {
			return nil, err
		}
	}
	if err := p.waitReady(ctx, 30*time.Second); err != nil {
		return nil, err
	}
	return p, nil
}

// childEnv is the caller's environment (so that WORKER_CONCURRENCY and the like reach the
// platform) with the harness's settings on top, then BENCH_ENV_<NAME>=v as NAME=v on top of
// everything. BENCH_* variables themselves are not passed on.
func childEnv(environ []string, harness map[string]string) []string {
	vars := map[string]string{}
	var overrides [][2]string
	for _, kv := range environ {
		k, v, _ := strings.Cut(kv, "=")
		if name, ok := strings.CutPrefix(k, "BENCH_ENV_"); ok && name != "" {
			overrides = append(overrides, [2]string{name, v})
			continue
		}
		if strings.HasPrefix(k, "BENCH_") {
			continue
		}
		vars[k] = v
	}
	for k, v := range harness {
		vars[k] = v
	}
	for _, o := range overrides {
		vars[o[0]] = o[1]
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func (p *platform) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(p.r.bin, args...)
	cmd.Env = p.env
	return cmd
}

// proc is one running botfleet process, its log file and its memory high-water mark.
type proc struct {
	name      string
	cmd       *exec.Cmd
	done      chan struct{}
	pprofAddr string
	logPath   string

	mu      sync.Mutex
	peakRSS int64 // bytes, max of VmHWM and sampled VmRSS
	ticks   int64 // CPU time last sampled, in clock ticks
	exited  bool
}

// start runs `botfleet <sub>` with its output in <out>/s<scenario>-<name>-<n>.log; a worker is
// added to p.workers. When profiling is on, the process gets its own PPROF_ADDR.
func (p *platform) start(sub string) (*proc, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.nproc++
	name := sub
	if sub == "worker" {
		name = fmt.Sprintf("worker%d", len(p.workers)+1) // a restarted worker gets the next number
	}
	pr := &proc{name: name, done: make(chan struct{})}
	pr.logPath = filepath.Join(p.r.cfg.outDir, fmt.Sprintf("s%d-%s-%d.log", p.r.id, name, p.nproc))
	logf, err := os.Create(pr.logPath)
	if err != nil {
		return nil, err
	}
	cmd := p.cmd(sub)
	if p.r.cfg.profile != "" {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		pr.pprofAddr = addr
		cmd.Env = append(slices.Clone(cmd.Env), "PPROF_ADDR="+addr)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	pr.cmd = cmd
	go func() {
		_ = cmd.Wait()
		logf.Close()
		pr.mu.Lock()
		pr.exited = true
		pr.mu.Unlock()
		close(pr.done)
	}()
	go pr.sampleRSS()
	if sub == "worker" {
		p.workers = append(p.workers, pr)
	}
	return pr, nil
}

// workerList is a copy of p.workers.
func (p *platform) workerList() []*proc {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.workers)
}

// procs is serve and the workers.
func (p *platform) procs() []*proc {
	return append([]*proc{p.serve}, p.workerList()...)
}

// sampleRSS records the process's peak resident set size every 200 ms until it exits.
func (pr *proc) sampleRSS() {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		pr.readRSS()
		if t := pr.readCPU(); t > 0 {
			pr.mu.Lock()
			pr.ticks = t
			pr.mu.Unlock()
		}
		select {
		case <-pr.done:
			return
		case <-t.C:
		}
	}
}

func (pr *proc) readRSS() {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pr.cmd.Process.Pid))
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmHWM:") && !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		pr.mu.Lock()
		pr.peakRSS = max(pr.peakRSS, kb*1024)
		pr.mu.Unlock()
	}
}

// PeakRSS is the highest VmHWM/VmRSS seen, read once more now if the process runs.
func (pr *proc) PeakRSS() int64 {
	pr.mu.Lock()
	exited := pr.exited
	pr.mu.Unlock()
	if !exited {
		pr.readRSS()
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.peakRSS
}

// cpuTicks is the process's user+system CPU time in clock ticks: read now while it runs,
// else the last sample.
func (pr *proc) cpuTicks() int64 {
	if pr.alive() {
		if t := pr.readCPU(); t > 0 {
			return t
		}
	}
	pr.mu.Lock()
	defer pr.mu.Unlock()
	return pr.ticks
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times (100 on Linux x86 and arm).
const clockTick = 100

// cpuSeconds is cpuTicks in seconds.
func (pr *proc) cpuSeconds() float64 { return float64(pr.cpuTicks()) / clockTick }

// readCPU reads user+system time from /proc/<pid>/stat (0 when unknown).
func (pr *proc) readCPU() int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pr.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are fields 14 and 15.
	_, rest, ok := strings.Cut(string(b), ") ")
	if !ok {
		return 0
	}
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

func (pr *proc) alive() bool {
	select {
	case <-pr.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM and waits up to grace, then SIGKILL.
func (pr *proc) stop(grace time.Duration) {
	if pr == nil || pr.cmd == nil || !pr.alive() {
		return
	}
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pr.done:
	case <-time.After(grace):
		_ = pr.cmd.Process.Kill()
		<-pr.done
	}
}

// kill sends SIGKILL and waits for the exit.
func (pr *proc) kill() {
	if pr.alive() {
		_ = pr.cmd.Process.Signal(syscall.SIGKILL)
	}
	<-pr.done
}

// stopAll stops every process in parallel (SIGTERM, then SIGKILL after 10 s).
func (p *platform) stopAll() {
	var wg sync.WaitGroup
	for _, pr := range p.procs() {
		if pr != nil {
			wg.Go(func() { pr.stop(10 * time.Second) })
		}
	}
	wg.Wait()
}

// checkAlive reports processes that exited on their own (a crash is worth knowing before
// reading any figure).
func (p *platform) checkAlive() error {
	for _, pr := range p.procs() {
		if pr != nil && !pr.alive() && !pr.killed() {
			return fmt.Errorf("botfleet %s exited unexpectedly; see %s", pr.name, pr.logPath)
		}
	}
	return nil
}

func (pr *proc) killed() bool {
	if pr.cmd.ProcessState == nil {
		return false
	}
	ws, ok := pr.cmd.ProcessState.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled()
}

func (p *platform) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if err := p.checkAlive(); err != nil {
			return err
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, p.base+"/readyz", nil)
		if resp, err := p.http.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("botfleet serve not ready after %s; see %s", timeout, p.serve.logPath)
}

// workersPeakRSS is each worker's peak RSS, in start order.
func (p *platform) workersPeakRSS() []int64 {
	ws := p.workerList()
	out := make([]int64, len(ws))
	for i, w := range ws {
		out[i] = w.PeakRSS()
	}
	return out
}

// apiError is a non-2xx answer of the platform's API.
type apiError struct {
	method, path string
	status       int
	body         string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %d %s", e.method, e.path, e.status, strings.TrimSpace(e.body))
}

// do sends a JSON request with a bearer token and decodes a 2xx answer into out.
func (p *platform) do(ctx context.Context, method, path, token string, body, out any) error {
	var rd io.Reader
	if body != nil {
		buf, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(buf)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		if len(raw) > 300 {
			raw = raw[:300]
		}
		return &apiError{method: method, path: path, status: resp.StatusCode, body: string(raw)}
	}
	if out != nil {
		if err := json.Unmarshal(raw, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// profileCPU starts collecting a CPU profile of pr over d from its PPROF_ADDR into
// <BENCH_PROFILE>/<file>, in the background; waitProfiles waits for it. It reports (on
// stderr and in the table) when the engine has no pprof listener. No-op unless BENCH_PROFILE
// is set.
func (p *platform) profileCPU(pr *proc, d time.Duration, file string) {
	if p.r.cfg.profile == "" {
		return
	}
	p.profs.Go(func() { p.fetchProfile(pr, d, file) })
}

// waitProfiles waits for the profiles started by profileCPU (call it before the platform
// stops).
func (p *platform) waitProfiles() { p.profs.Wait() }

func (p *platform) fetchProfile(pr *proc, d time.Duration, file string) {
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pr.pprofAddr, max(1, int(d.Seconds())))
	resp, err := (&http.Client{Timeout: d + 30*time.Second}).Get(url)
	if err == nil && resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	if err != nil {
		why := "failed: " + firstLine(err.Error())
		if errors.Is(err, syscall.ECONNREFUSED) {
			why = "skipped: nothing listens at PPROF_ADDR (the engine does not support it yet?)"
		}
		p.r.logf("CPU profile of %s %s", pr.name, why)
		p.r.rep.add(p.r.id, "CPU profile "+pr.name, "-", why, verdictInfo)
		return
	}
	defer resp.Body.Close()
	path := filepath.Join(p.r.cfg.profile, file)
	f, err := os.Create(path)
	if err == nil {
		_, err = io.Copy(f, resp.Body)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		p.r.logf("profile of %s: %v", pr.name, err)
		return
	}
	p.r.logf("CPU profile of %s written to %s (go tool pprof -top %s %s)", pr.name, path, p.r.bin, path)
	p.r.rep.add(p.r.id, "CPU profile "+pr.name, "-", path, verdictInfo)
}

// errTimeout marks a phase that hit its time cap.
var errTimeout = errors.New("timed out")

// cpuSnapshot is the box's CPU time by state (/proc/stat, clock ticks) and the harness
// process's own CPU time.
type cpuSnapshot struct {
	user, system, idle, iowait, other int64
	self                              time.Duration
}

func readCPUSnapshot() cpuSnapshot {
	var s cpuSnapshot
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
	if len(f) < 8 || f[0] != "cpu" {
		return s
	}
	v := make([]int64, len(f))
	for i := 1; i < len(f); i++ {
		v[i], _ = strconv.ParseInt(f[i], 10, 64)
	}
	s.user, s.system, s.idle, s.iowait = v[1]+v[2], v[3]+v[6]+v[7], v[4], v[5]
	if len(v) > 8 {
		s.other = v[8] // steal
	}
	return s
}

// reportCPU adds where the CPU went since the platform started: seconds used by serve, each
// worker and the harness (tgemu, load generator, minimal handler), and the whole box's
// utilisation by state, which includes PostgreSQL, Redis and anything else running.
func (p *platform) reportCPU() {
	now := readCPUSnapshot()
	parts := []string{fmt.Sprintf("serve %.1f", p.serve.cpuSeconds())}
	for _, w := range p.workerList() {
		parts = append(parts, fmt.Sprintf("%s %.1f", w.name, w.cpuSeconds()))
	}
	parts = append(parts, fmt.Sprintf("harness %.1f", (now.self-p.cpu0.self).Seconds()))
	p.r.rep.add(p.r.id, "CPU seconds by process", "-", strings.Join(parts, ", "), verdictInfo)
	d := cpuSnapshot{user: now.user - p.cpu0.user, system: now.system - p.cpu0.system, idle: now.idle - p.cpu0.idle,
		iowait: now.iowait - p.cpu0.iowait, other: now.other - p.cpu0.other}
	total := d.user + d.system + d.idle + d.iowait + d.other
	if total <= 0 {
		return
	}
	pct := func(x int64) float64 { return 100 * float64(x) / float64(total) }
	p.r.rep.add(p.r.id, "box CPU (all processes)", "-", fmt.Sprintf("busy %.0f%%: user %.0f%%, kernel %.0f%%; iowait %.0f%%, idle %.0f%%",
		pct(d.user+d.system+d.other), pct(d.user), pct(d.system), pct(d.iowait), pct(d.idle)), verdictInfo)
}
