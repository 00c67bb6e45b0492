// Package bench is the user-workload benchmark of issue 5 (`make bench`): it builds
// cmd/botfleet, starts `botfleet serve` and two `botfleet worker` processes against real
// PostgreSQL and Redis and an in-process tgemu that enforces Telegram's limits, drives the
// six scenarios of docs/benchmarks.md and prints a table of figures, goals and verdicts.
//
// Everything lives in _test.go files and runs only as BenchmarkWorkload, so `go test ./...`
// (and `make test`) compiles it but never runs it:
//
//	go test ./bench -run '^$' -bench Workload -benchtime 1x -timeout 0
//
// Knobs are environment variables (BENCH_SCALE, BENCH_SCENARIOS, BENCH_ENV_*, ...); see
// docs/benchmarks.md.
package bench
