package e2e

import (
	"bytes"
	"encoding/hex"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// TestRotateEncryptionKey follows the README's key rotation procedure through the binary
// while serve and a worker run: `botfleet rotate-encryption-key` with the new key in
// ENCRYPTION_KEY and the old one in ENCRYPTION_KEYS re-encrypts the bot's token (then finds
// it current on a second run), a run without the token's key fails with a non-zero exit,
// and a worker holding only the new key then sends the bot's replies.
func TestRotateEncryptionKey(t *testing.T) {
	p := newPlatform(t, options{})
	oldKey := p.getenv("ENCRYPTION_KEY")
	newKey := hex.EncodeToString(bytes.Repeat([]byte{0x5a, 0x17}, 16))

	var acme tenantResp
	if code := p.do("POST", "/admin/v1/tenants/", p.admin, map[string]any{"name": "Acme"}, &acme); code != http.StatusCreated {
		t.Fatalf("create tenant: %d", code)
	}
	tg := p.emu.CreateBot("rotating_bot", "Rotating")
	var bot botResp
	if code := p.do("POST", "/telegram/v1/bots/", acme.APIKey, map[string]any{"name": "r", "bot_token": tg.Token}, &bot); code != http.StatusCreated {
		t.Fatalf("register bot: %d", code)
	}

	// Step 1: the processes get the new key, with the old one for reading.
	p.setenv("ENCRYPTION_KEY", newKey)
	p.setenv("ENCRYPTION_KEYS", oldKey)
	p.replaceWorkers(t)
	welcome := func(user tgemu.User) {
		t.Helper()
		if _, err := p.emu.SendCommand(tg.ID, user, "/start"); err != nil {
			t.Fatal(err)
		}
		eventually(t, 20*time.Second, "the welcome to "+user.FirstName, func() bool { return len(p.emu.SentTo(tg.ID, user.ID)) >= 1 })
	}
	welcome(tgemu.User{ID: 4241, FirstName: "Olga"})

	// Step 2: rotate.
	rotate := func(env map[string]string) (string, string, error) {
		cmd := p.cmd("rotate-encryption-key", "--batch-size", "1")
		for k, v := range env {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		_, _ = testlog.NewWriter("e2e-rotate").Write(stderr.Bytes())
		for _, out := range []string{stdout.String(), stderr.String()} {
			if strings.Contains(out, tg.Token) || strings.Contains(out, oldKey) || strings.Contains(out, newKey) {
				t.Fatalf("rotate-encryption-key printed a secret:\n%s", out)
			}
		}
		return stdout.String(), stderr.String(), err
	}
	out, errOut, err := rotate(map[string]string{"ENCRYPTION_KEY": newKey, "ENCRYPTION_KEYS": oldKey})
	if err != nil || !strings.Contains(out, "1 re-encrypted, 0 already current, 0 failed") {
		t.Fatalf("first run: %v\n%s%s", err, out, errOut)
	}
	out, errOut, err = rotate(map[string]string{"ENCRYPTION_KEY": newKey, "ENCRYPTION_KEYS": oldKey})
	if err != nil || !strings.Contains(out, "0 re-encrypted, 1 already current, 0 failed") {
		t.Fatalf("second run: %v\n%s%s", err, out, errOut)
	}
	other := hex.EncodeToString(bytes.Repeat([]byte{0x3c, 0x4d}, 16))
	out, errOut, err = rotate(map[string]string{"ENCRYPTION_KEY": other})
	if err == nil || !strings.Contains(out, "0 re-encrypted, 0 already current, 1 failed") || !strings.Contains(errOut, bot.BotAppID) {
		t.Fatalf("run without the token's key: err %v, want a non-zero exit naming the bot\n%s%s", err, out, errOut)
	}

	// Step 3: the old key is gone: a worker with the new key alone sends the welcome.
	p.setenv("ENCRYPTION_KEYS", "")
	p.replaceWorkers(t)
	welcome(tgemu.User{ID: 4242, FirstName: "Rosa"})
}

// replaceWorkers stops every worker (SIGINT, as at a deploy) and starts one with the
// platform's current environment.
func (p *platform) replaceWorkers(t *testing.T) {
	t.Helper()
	for _, w := range p.workers {
		_ = w.cmd.Process.Signal(os.Interrupt)
		if !w.exited(30 * time.Second) {
			t.Fatal("worker did not stop")
		}
	}
	p.workers = append(p.workers, p.start("worker"))
}

// getenv returns the platform's value of the environment variable k.
func (p *platform) getenv(k string) string {
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, k+"="); ok {
			return v
		}
	}
	return ""
}

// setenv sets the environment variable k of processes started from now on.
func (p *platform) setenv(k, v string) {
	for i, kv := range p.env {
		if strings.HasPrefix(kv, k+"=") {
			p.env[i] = k + "=" + v
			return
		}
	}
	p.env = append(p.env, k+"="+v)
}
