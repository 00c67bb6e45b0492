package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/botfleet/botfleet/telegram/tgemu"
)

// fleet is a tenant with bots and their contacts on a platform under test.
type fleet struct {
	p      *platform
	key    string
	bots   []botResp
	emuIDs []int64
	// contacts of each bot, by index of bots.
	contacts [][]contactResp
}

// registerFleet creates a tenant named name and n bots in tgemu (usernames name0_bot, ...),
// registers each with botfleet (201 or the test fails) and returns them without contacts.
func registerFleet(t *testing.T, p *platform, name string, n int) *fleet {
	t.Helper()
	var tn tenantResp
	if code := p.do("POST", "/admin/v1/tenants/", p.admin, map[string]any{"name": name}, &tn); code != 201 {
		t.Fatalf("create tenant: %d", code)
	}
	f := &fleet{p: p, key: tn.APIKey}
	for i := range n {
		tg := p.emu.CreateBot(fmt.Sprintf("%s%d_bot", name, i), name)
		var b botResp
		if code := p.do("POST", "/telegram/v1/bots/", tn.APIKey, map[string]any{"name": fmt.Sprint(name, " ", i), "bot_token": tg.Token}, &b); code != 201 {
			t.Fatalf("register bot: %d", code)
		}
		f.bots = append(f.bots, b)
		f.emuIDs = append(f.emuIDs, tg.ID)
	}
	return f
}

// newFleet registers nBots bots of one tenant and gives each perBot contacts, made by
// simulated users writing "hello" (no reply), then waits until the platform has them all.
func newFleet(t *testing.T, p *platform, nBots, perBot int) *fleet {
	t.Helper()
	f := registerFleet(t, p, "crash", nBots)
	for i, id := range f.emuIDs {
		for j := range perBot {
			u := tgemu.User{ID: int64(1_000_000*(i+1) + j), FirstName: fmt.Sprint("U", j)}
			if _, err := p.emu.SendText(id, u, "hello"); err != nil {
				t.Fatal(err)
			}
		}
	}
	f.contacts = make([][]contactResp, nBots)
	for i, b := range f.bots {
		eventually(t, 60*time.Second, "contacts of bot "+b.BotAppID, func() bool {
			var page struct {
				Items []contactResp `json:"items"`
			}
			p.do("GET", "/contacts/?limit=200&bot_app_id="+b.BotAppID, f.key, nil, &page)
			f.contacts[i] = page.Items
			return len(page.Items) == perBot
		})
	}
	return f
}

// broadcast starts one broadcast of bot i to all its contacts with text.
func (f *fleet) broadcast(t *testing.T, i int, text string) broadcastResp {
	t.Helper()
	ids := make([]string, len(f.contacts[i]))
	for j, c := range f.contacts[i] {
		ids[j] = c.ID
	}
	var bc broadcastResp
	if code := f.p.do("POST", "/broadcast/", f.key, map[string]any{
		"name": text, "platform": "TELEGRAM", "message_text": text, "recipients": ids, "bot_app_id": f.bots[i].BotAppID,
	}, &bc); code != 202 {
		t.Fatalf("create broadcast: %d", code)
	}
	return bc
}

// copies counts the messages with text that bot i's chats received, by chat.
func (f *fleet) copies(i int, text string) map[int64]int {
	m := map[int64]int{}
	for _, s := range f.p.emu.Sent(f.emuIDs[i]) {
		if s.Text == text {
			m[s.ChatID]++
		}
	}
	return m
}

// killAndReplaceWorker kills worker i with SIGKILL, waits for it to exit and starts a new
// worker in its place (appended to p.workers).
func (p *platform) killAndReplaceWorker(t *testing.T, i int) {
	t.Helper()
	victim := p.workers[i]
	if err := victim.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	if !victim.exited(5 * time.Second) {
		t.Fatal("SIGKILL did not stop the worker")
	}
	p.workers = append(p.workers, p.start("worker"))
}

// query runs a single-value SQL query on the platform's database.
func (p *platform) query(t *testing.T, sql string, args ...any) int {
	t.Helper()
	var dsn string
	for _, kv := range p.env {
		if v, ok := strings.CutPrefix(kv, "DATABASE_URL="); ok {
			dsn = v
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// TestWorkerKilledMidBroadcast kills one of two workers with SIGKILL while two broadcasts
// are half sent, starts a new worker, and checks the delivery guarantee: every recipient
// gets the message (nothing lost), duplicates are at most the sends that were in flight in
// the killed worker (its runs' senders), every broadcast completes with its counts right,
// and Telegram's limits hold throughout.
func TestWorkerKilledMidBroadcast(t *testing.T) {
	const bots, perBot, senders = 2, 90, 16
	p := newPlatform(t, options{
		workers: 2,
		env: map[string]string{
			"TELEGRAM_RATE_LIMIT": "100000/s", "TELEGRAM_MAX_WAIT": "2s", "TELEGRAM_REQUEST_TIMEOUT": "2s",
			"SWEEP_INTERVAL": "1s", "SHUTDOWN_TIMEOUT": "5s",
		},
	})
	f := newFleet(t, p, bots, perBot)
	for i := range bots { // every send takes 40 ms, so that some are in flight at the kill
		p.emu.AddFault(f.emuIDs[i], tgemu.Fault{Kind: tgemu.FaultLatency, Method: "sendMessage", Latency: 40 * time.Millisecond})
	}
	var bcs [bots]broadcastResp
	for i := range bots {
		bcs[i] = f.broadcast(t, i, fmt.Sprint("flash sale ", i))
	}
	eventually(t, 30*time.Second, "half of the messages", func() bool {
		n := 0
		for i := range bots {
			n += len(f.copies(i, fmt.Sprint("flash sale ", i)))
		}
		return n >= bots*perBot/2
	})
	p.killAndReplaceWorker(t, 0)

	eventually(t, 90*time.Second, "both broadcasts completed", func() bool {
		for i := range bcs {
			p.do("GET", "/broadcast/"+bcs[i].ID+"/", f.key, nil, &bcs[i])
			if bcs[i].Status != "completed" {
				return false
			}
		}
		return true
	})
	dups := 0
	for i := range bots {
		got := f.copies(i, fmt.Sprint("flash sale ", i))
		for _, c := range f.contacts[i] {
			switch n := got[c.TelegramChatID]; {
			case n == 0:
				t.Errorf("bot %d chat %d never got the broadcast (lost)", i, c.TelegramChatID)
			case n > 1:
				dups += n - 1
			}
		}
		if bcs[i].Sent != perBot || bcs[i].Failed != 0 {
			t.Errorf("broadcast %d: %+v, want sent=%d", i, bcs[i], perBot)
		}
		if v := p.emu.Violations(f.emuIDs[i]); v != (tgemu.Violations{}) {
			t.Errorf("bot %d: Telegram limits violated %+v", i, v)
		}
	}
	if bound := bots * senders; dups > bound {
		t.Errorf("%d duplicates, more than the %d sends the killed worker could have had in flight", dups, bound)
	}
	// Recipients the dead worker may have sent carry a record saying so.
	if dups > 0 {
		if n := p.query(t, `SELECT count(*) FROM broadcast_recipients WHERE attempts > 1`); n < dups {
			t.Errorf("%d duplicates but only %d recipients record more than one attempt", dups, n)
		}
	}
	t.Logf("killed a worker mid-broadcast: %d messages delivered, %d duplicates (bound %d)", bots*perBot, dups, bots*senders)
}

// TestWorkerSIGTERM checks a graceful shutdown in the middle of a broadcast whose sends are
// slow: the worker exits well within SHUTDOWN_TIMEOUT (rate-limit waits stop at once, sends
// in flight finish), every message Telegram received is recorded as sent, nothing is left
// "sending", and a new worker completes the broadcast without a duplicate. A second signal
// makes a worker stuck in a long send exit at once.
func TestWorkerSIGTERM(t *testing.T) {
	const perBot = 40
	p := newPlatform(t, options{
		workers: 1,
		env: map[string]string{
			"TELEGRAM_RATE_LIMIT": "100000/s", "TELEGRAM_REQUEST_TIMEOUT": "20s", "SWEEP_INTERVAL": "1s",
			"SHUTDOWN_TIMEOUT": "15s",
		},
	})
	f := newFleet(t, p, 1, perBot)
	p.emu.AddFault(f.emuIDs[0], tgemu.Fault{Kind: tgemu.FaultLatency, Method: "sendMessage", Latency: 700 * time.Millisecond})
	bc := f.broadcast(t, 0, "slow news")
	eventually(t, 20*time.Second, "first messages", func() bool { return len(f.copies(0, "slow news")) >= 5 })

	w := p.workers[0]
	start := time.Now()
	if err := w.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if !w.exited(15 * time.Second) {
		t.Fatal("the worker did not exit within SHUTDOWN_TIMEOUT after SIGTERM")
	}
	took := time.Since(start)
	if took > 5*time.Second {
		t.Errorf("graceful shutdown took %s; in-flight sends take 0.7 s and waits must stop at once", took)
	}
	delivered := len(f.copies(0, "slow news"))
	if n := p.query(t, `SELECT count(*) FROM broadcast_recipients WHERE status = 'sent'`); n != delivered {
		t.Errorf("after shutdown: %d recipients recorded sent, Telegram received %d", n, delivered)
	}
	if n := p.query(t, `SELECT count(*) FROM broadcast_recipients WHERE status = 'sending'`); n != 0 {
		t.Errorf("after shutdown: %d recipients left sending", n)
	}
	t.Logf("SIGTERM mid-broadcast: exited in %s with %d/%d delivered and recorded", took, delivered, perBot)

	p.emu.ClearFaults(f.emuIDs[0])
	p.workers = append(p.workers, p.start("worker"))
	eventually(t, 60*time.Second, "broadcast completed", func() bool {
		p.do("GET", "/broadcast/"+bc.ID+"/", f.key, nil, &bc)
		return bc.Status == "completed"
	})
	for _, c := range f.contacts[0] {
		if n := f.copies(0, "slow news")[c.TelegramChatID]; n != 1 {
			t.Errorf("chat %d got %d copies, want 1", c.TelegramChatID, n)
		}
	}

	// A second signal exits at once, even with a send stuck for 20 s.
	p.emu.AddFault(f.emuIDs[0], tgemu.Fault{Kind: tgemu.FaultLatency, Method: "sendMessage", Latency: 20 * time.Second})
	f.broadcast(t, 0, "stuck news")
	time.Sleep(2 * time.Second) // the run starts and its first sends hang for 20 s
	w2 := p.workers[1]
	_ = w2.cmd.Process.Signal(os.Interrupt)
	time.Sleep(300 * time.Millisecond)
	start = time.Now()
	_ = w2.cmd.Process.Signal(os.Interrupt)
	if !w2.exited(3 * time.Second) {
		t.Fatal("a second signal did not stop the worker at once")
	}
	t.Logf("second signal: exited %s after it", time.Since(start).Round(time.Millisecond))
}

// TestWorkerKilledMidProcessing kills one of two workers with SIGKILL while users' /start
// updates are being processed and welcomed, starts a new worker, and checks that nothing is
// lost: every update stored is processed, every user becomes a contact and is welcomed, and
// a user is welcomed twice only for a reply the killed worker had in flight or had sent in
// the last 200 ms before the kill (not yet recorded): each bot sends a welcome every ~33 ms
// and each takes 30 ms, so at most 8 per bot.
func TestWorkerKilledMidProcessing(t *testing.T) {
	const bots, users, sendSlots, perBotBound = 3, 120, 8, 8
	p := newPlatform(t, options{
		workers: 2,
		env: map[string]string{
			"TELEGRAM_RATE_LIMIT": "100000/s", "TELEGRAM_MAX_WAIT": "2s", "TELEGRAM_REQUEST_TIMEOUT": "2s",
			"SWEEP_INTERVAL": "1s", "SHUTDOWN_TIMEOUT": "5s", "WORKER_SEND_CONCURRENCY": fmt.Sprint(sendSlots),
		},
	})
	emuIDs := registerFleet(t, p, "inbound", bots).emuIDs
	for _, id := range emuIDs {
		// Every welcome takes 30 ms, so that replies are in flight at the kill.
		p.emu.AddFault(id, tgemu.Fault{Kind: tgemu.FaultLatency, Method: "sendMessage", Latency: 30 * time.Millisecond})
	}
	userID := func(bot, u int) int64 { return int64(2_000_000*(bot+1) + u) }
	for u := range users {
		for i := range bots {
			if _, err := p.emu.SendCommand(emuIDs[i], tgemu.User{ID: userID(i, u), FirstName: fmt.Sprint("U", u)}, "/start"); err != nil {
				t.Fatal(err)
			}
		}
	}
	welcomed := func() (total, dups int, missing []int64) {
		for i := range bots {
			got := map[int64]int{}
			for _, s := range p.emu.Sent(emuIDs[i]) {
				if strings.HasPrefix(s.Text, "Hi U") {
					got[s.ChatID]++
				}
			}
			for u := range users {
				if n := got[userID(i, u)]; n == 0 {
					missing = append(missing, userID(i, u))
				} else {
					total++
					dups += n - 1
				}
			}
		}
		return total, dups, missing
	}
	eventually(t, 60*time.Second, "a third of the welcomes", func() bool {
		n, _, _ := welcomed()
		return n >= bots*users/3
	})
	p.killAndReplaceWorker(t, 0)

	eventually(t, 90*time.Second, "every user welcomed", func() bool {
		_, _, missing := welcomed()
		return len(missing) == 0
	})
	if n := p.query(t, `SELECT count(*) FROM webhook_events WHERE processed_at IS NULL`); n != 0 {
		t.Errorf("%d stored updates left unprocessed", n)
	}
	if n := p.query(t, `SELECT count(*) FROM contacts`); n != bots*users {
		t.Errorf("%d contacts, want %d", n, bots*users)
	}
	if n := p.query(t, `SELECT count(*) FROM messages WHERE direction = 'outbound'`); n != bots*users {
		t.Errorf("%d reply rows, want one per /start (%d): an update was processed twice", n, bots*users)
	}
	_, dups, _ := welcomed()
	if bound := bots * perBotBound; dups > bound {
		t.Errorf("%d duplicate welcomes, more than the %d sends the killed worker could have had unrecorded", dups, bound)
	}
	t.Logf("killed a worker mid-processing: %d users welcomed, %d duplicates (bound %d)", bots*users, dups, bots*perBotBound)
}
