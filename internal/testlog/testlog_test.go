package testlog

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// plant writes files into dir: name → content.
func plant(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const (
	plantedToken  = "7123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"
	plantedKey    = "bf_" + "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF"
	plantedSecret = "Wh5ecRetT0kenWh5ecRetT0kenWh5ecRetT0kenWh5"
)

// TestScan plants secrets in log files the way each could leak and checks that Scan
// reports every one, and nothing in clean logs.
func TestScan(t *testing.T) {
	dir := t.TempDir()
	unrecorded := "6999999999:" + strings.Repeat("x", 35)
	plant(t, dir, map[string]string{
		"secrets-1.tsv": "bot_token\t" + strconv.Quote(plantedToken) + "\n" +
			"secret_token\t" + strconv.Quote(plantedSecret) + "\n" +
			"admin_token\t" + strconv.Quote("e2e-admin-token") + "\n",
		"secrets-2.tsv": "api_key\t" + strconv.Quote(plantedKey) + "\n",
		"clean.log": `{"level":"INFO","msg":"bot registered","bot_app_id":"0b3c7a52-6a43-4b8e-8a8f-3f0d2f6f7c11","telegram_bot_id":7123456789}` + "\n" +
			"time=2026-12-02T10:50:18.123Z level=INFO msg=\"http listening\" addr=127.0.0.1:41234 url=http://127.0.0.1:41234/telegram/v1/webhooks/0b3c7a52-6a43-4b8e-8a8f-3f0d2f6f7c11/\n" +
			"prefix bf_abcdef stored, admin token e2e-admin-token-x is another word\n",
		"token.log":         "line one\n" + `{"msg":"call","url":"http://127.0.0.1:1/bot` + plantedToken + `/sendMessage"}` + "\n",
		"token-part.log":    "a\nb\nsecret part " + plantedToken[11:] + " alone\n",
		"shape.log":         "err=\"Post /bot" + unrecorded + "/getMe: refused\"\n",
		"api-key.log":       "Authorization: Bearer " + plantedKey + "\n",
		"api-key-shape.log": "key=bf_" + strings.Repeat("Q", 43) + "\n",
		"webhook.log":       "X-Telegram-Bot-Api-Secret-Token: " + plantedSecret + "\n",
		"sub/admin.log":     "level=WARN token=e2e-admin-token\n",
		"not-a-log.txt":     plantedToken + "\n",
		"no-newline-at-end": "x",
	})
	rep, err := Scan(dir)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 8 || rep.Secrets != 4 {
		t.Errorf("files = %d, secrets = %d; want 8 and 4", rep.Files, rep.Secrets)
	}
	var got []string
	for _, f := range rep.Findings {
		got = append(got, fmt.Sprintf("%s:%d %s", f.File, f.Line, f.Kind))
		if strings.Contains(f.String(), plantedToken[11:20]) {
			t.Errorf("a finding prints the secret: %s", f)
		}
	}
	want := []string{
		"api-key-shape.log:1 API key shape",
		"api-key.log:1 recorded api_key",
		"shape.log:1 bot token shape",
		"sub/admin.log:1 recorded admin_token",
		"token-part.log:3 recorded bot_token (part)",
		"token.log:2 recorded bot_token (part)",
		"token.log:2 bot token shape",
		"webhook.log:1 recorded secret_token",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("findings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestSuiteWiring runs only under `make test` (BOTFLEET_TEST_LOG_DIR set): it checks that
// Logger and RecordSecret really write where the scan looks, without planting a secret
// in a log (that would fail the real scan).
func TestSuiteWiring(t *testing.T) {
	if Dir() == "" {
		t.Skip(EnvDir + " not set (make test sets it)")
	}
	marker := fmt.Sprintf("testlog-wiring-%d", time.Now().UnixNano())
	Logger(t).Info("wiring check", "marker", marker)
	RecordSecret("self_test", marker+"-secret")
	w := NewWriter("testlog-wiring")
	fmt.Fprintln(w, marker+"-writer")

	var all strings.Builder
	files, _ := filepath.Glob(filepath.Join(Dir(), "*"+LogSuffix))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		all.Write(b)
	}
	if !strings.Contains(all.String(), `"marker":"`+marker+`"`) || !strings.Contains(all.String(), marker+"-writer") {
		t.Fatalf("Logger or NewWriter output is not in %s", Dir())
	}
	secrets, err := readSecrets(Dir())
	if err != nil || secrets[marker+"-secret"] != "self_test" {
		t.Fatalf("RecordSecret's value is not in %s (%v)", Dir(), err)
	}
}
