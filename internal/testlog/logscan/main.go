// Command logscan fails when a test process logged a secret: it runs testlog.Scan on the
// directory that `make test` gave the suite (BOTFLEET_TEST_LOG_DIR, or its argument) and
// exits 1 on any finding, and also when the directory holds no logs or no recorded
// secrets (the suite did not write where the scan looks, so the scan would prove nothing).
//
//	go run ./internal/testlog/logscan [DIR]
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/botfleet/botfleet/internal/testlog"
)

// maxShown is the most findings printed.
const maxShown = 50

func main() {
	os.Exit(run(os.Args[1:], os.Getenv(testlog.EnvDir), os.Stdout))
}

// run scans args[0] (else envDir) and returns the exit code.
func run(args []string, envDir string, out io.Writer) int {
	dir := envDir
	if len(args) > 0 {
		dir = args[0]
	}
	if dir == "" {
		fmt.Fprintf(out, "logscan: no directory (argument or %s)\n", testlog.EnvDir)
		return 2
	}
	rep, err := testlog.Scan(dir)
	if err != nil {
		fmt.Fprintln(out, "logscan:", err)
		return 2
	}
	fmt.Fprintf(out, "logscan: %d log files, %d bytes, %d recorded secrets, %d findings\n", rep.Files, rep.Bytes, rep.Secrets, len(rep.Findings))
	if rep.Files == 0 || rep.Secrets == 0 {
		fmt.Fprintf(out, "logscan: nothing to check in %s: were the tests run with %s set?\n", dir, testlog.EnvDir)
		return 1
	}
	for i, f := range rep.Findings {
		if i == maxShown {
			fmt.Fprintf(out, "... and %d more\n", len(rep.Findings)-maxShown)
			break
		}
		fmt.Fprintln(out, "logscan: secret in a log:", f)
	}
	if len(rep.Findings) > 0 {
		return 1
	}
	return 0
}
