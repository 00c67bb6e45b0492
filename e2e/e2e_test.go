package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/botfleet/botfleet/telegram/tgemu"
)

type tenantResp struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	APIKey string `json:"api_key"`
}

type botResp struct {
	BotAppID      string `json:"bot_app_id"`
	Name          string `json:"name"`
	Username      string `json:"username"`
	TelegramBotID int64  `json:"telegram_bot_id"`
	DailyLimit    int    `json:"daily_limit"`
	WebhookURL    string `json:"webhook_url"`
	WebhookStatus string `json:"webhook_status"`
	CreatedAt     string `json:"created_at"`
}

type contactResp struct {
	ID             string `json:"id"`
	TelegramChatID int64  `json:"telegram_chat_id"`
	FirstName      string `json:"first_name"`
	Blocked        bool   `json:"blocked"`
}

type broadcastResp struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Total    int    `json:"total"`
	Sent     int    `json:"sent"`
	Failed   int    `json:"failed"`
	Pending  int    `json:"pending"`
	Deferred int    `json:"deferred"`
}

type errorResp struct {
	Error struct {
		Code      string `json:"code"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
	} `json:"error"`
}

var secretTokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]{1,256}$`)

// TestEndToEnd is the walking skeleton: tenant → bot → users → contacts → broadcast, with
// the webhook's secret check, update_id dedup and tenant isolation, all through the binary.
func TestEndToEnd(t *testing.T) {
	p := newPlatform(t, options{})

	// A tenant from the CLI, another from the admin API.
	out, err := p.cmd("tenant", "create", "--name", "Acme").Output()
	if err != nil {
		t.Fatalf("tenant create: %v", err)
	}
	var acme tenantResp
	if err := json.Unmarshal(out, &acme); err != nil || acme.APIKey == "" || acme.ID == "" || acme.Name != "Acme" {
		t.Fatalf("tenant create printed %q (%v)", out, err)
	}
	var other tenantResp
	if code := p.do("POST", "/admin/v1/tenants/", p.admin, map[string]any{"name": "Other"}, &other); code != http.StatusCreated {
		t.Fatalf("admin create tenant: %d", code)
	}
	if code := p.do("POST", "/admin/v1/tenants/", "wrong", map[string]any{"name": "X"}, nil); code != http.StatusUnauthorized {
		t.Fatalf("admin with a wrong token: %d, want 401", code)
	}
	if code := p.do("GET", "/contacts/", "", nil, nil); code != http.StatusUnauthorized {
		t.Fatalf("no api key: %d, want 401", code)
	}

	// Register the bot: getMe, setWebhook with our URL and a valid secret_token, setMyCommands.
	tg := p.emu.CreateBot("acme_bot", "Acme Bot")
	var bot botResp
	raw := map[string]any{}
	if code := p.do("POST", "/telegram/v1/bots/", acme.APIKey, map[string]any{"name": "Acme support", "bot_token": tg.Token, "daily_limit": 0}, &raw); code != http.StatusCreated {
		t.Fatalf("register bot: %d %v", code, raw)
	}
	b, _ := json.Marshal(raw)
	_ = json.Unmarshal(b, &bot)
	if strings.Contains(string(b), tg.Token) || strings.Contains(string(b), strings.SplitN(tg.Token, ":", 2)[1]) {
		t.Fatalf("bot response leaks the token: %s", b)
	}
	if bot.BotAppID == "" || bot.Username != "acme_bot" || bot.TelegramBotID != tg.ID || bot.WebhookStatus != "active" {
		t.Fatalf("bot = %+v", bot)
	}
	wantURL := p.base + "/telegram/v1/webhooks/" + bot.BotAppID + "/"
	if bot.WebhookURL != wantURL {
		t.Fatalf("webhook_url = %q, want %q", bot.WebhookURL, wantURL)
	}
	if n := len(p.emu.Calls(tg.ID, "getMe")); n == 0 {
		t.Fatal("the emulator saw no getMe")
	}
	sw := p.emu.Calls(tg.ID, "setWebhook")
	if len(sw) != 1 {
		t.Fatalf("setWebhook calls = %d, want 1", len(sw))
	}
	if sw[0].Params["url"] != wantURL {
		t.Fatalf("setWebhook url = %q, want %q", sw[0].Params["url"], wantURL)
	}
	if !secretTokenRe.MatchString(sw[0].Params["secret_token"]) {
		t.Fatalf("setWebhook secret_token %q is not 1-256 of A-Za-z0-9_-", sw[0].Params["secret_token"])
	}
	if len(p.emu.Calls(tg.ID, "setMyCommands")) == 0 {
		t.Fatal("the emulator saw no setMyCommands")
	}
	if code := p.do("POST", "/telegram/v1/bots/", acme.APIKey, map[string]any{"name": "again", "bot_token": tg.Token}, nil); code != http.StatusConflict {
		t.Fatalf("same bot twice: %d, want 409", code)
	}

	// Three users send /start; each gets a welcome with their first name.
	users := []tgemu.User{
		{ID: 1001, FirstName: "Alice", Username: "alice", LanguageCode: "en"},
		{ID: 1002, FirstName: "Bob", LastName: "Builder"},
		{ID: 1003, FirstName: "Chloé", LanguageCode: "fr"},
	}
	var firstUpdate int64
	for i, u := range users {
		id, err := p.emu.SendCommand(tg.ID, u, "/start")
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			firstUpdate = id
		}
	}
	for _, u := range users {
		u := u
		eventually(t, 20*time.Second, "welcome to "+u.FirstName, func() bool { return len(p.emu.SentTo(tg.ID, u.ID)) >= 1 })
		got := p.emu.SentTo(tg.ID, u.ID)
		if len(got) != 1 || !strings.Contains(got[0].Text, u.FirstName) {
			t.Fatalf("%s got %+v, want one welcome naming them", u.FirstName, got)
		}
	}

	// GET /contacts/ lists the three.
	var contacts struct {
		Items      []contactResp `json:"items"`
		NextCursor string        `json:"next_cursor"`
	}
	if code := p.do("GET", "/contacts/", acme.APIKey, nil, &contacts); code != 200 {
		t.Fatalf("list contacts: %d", code)
	}
	if len(contacts.Items) != 3 {
		t.Fatalf("contacts = %+v, want 3", contacts.Items)
	}
	var chats []int64
	var ids []string
	for _, c := range contacts.Items {
		chats = append(chats, c.TelegramChatID)
		ids = append(ids, c.ID)
	}
	sort.Slice(chats, func(i, j int) bool { return chats[i] < chats[j] })
	if fmt.Sprint(chats) != "[1001 1002 1003]" {
		t.Fatalf("contact chat ids = %v", chats)
	}

	// A wrong secret is refused and stores nothing; a repeated update_id is stored once.
	countEvents := func() int {
		var page struct {
			Items []map[string]any `json:"items"`
		}
		if code := p.do("GET", "/telegram/v1/webhook-events/?bot_app_id="+bot.BotAppID+"&limit=200", acme.APIKey, nil, &page); code != 200 {
			t.Fatalf("webhook events: %d", code)
		}
		return len(page.Items)
	}
	before := countEvents()
	if before != 3 {
		t.Fatalf("webhook events = %d, want 3", before)
	}
	req, _ := http.NewRequest("POST", wantURL, strings.NewReader(`{"update_id": 999999, "message": {"message_id": 1, "date": 1, "chat": {"id": 5, "type": "private"}, "text": "hi"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Telegram-Bot-Api-Secret-Token", "wrong-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("wrong secret: %d, want 401", resp.StatusCode)
	}
	if err := p.emu.Redeliver(tg.ID, firstUpdate); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, "redelivery", func() bool { return p.emu.WebhookInfo(tg.ID).PendingUpdateCount == 0 })
	time.Sleep(500 * time.Millisecond) // a duplicate processed by mistake would send a second welcome now
	if n := countEvents(); n != before {
		t.Fatalf("webhook events after a wrong secret and a repeated update_id = %d, want %d", n, before)
	}
	if got := p.emu.SentTo(tg.ID, users[0].ID); len(got) != 1 {
		t.Fatalf("after a repeated update_id %s got %d messages, want 1", users[0].FirstName, len(got))
	}

	// A broadcast to the three completes with sent=3 and one copy each.
	var bc broadcastResp
	text := "Spring sale: 20% off everything"
	if code := p.do("POST", "/broadcast/", acme.APIKey, map[string]any{
		"name": "spring", "platform": "TELEGRAM", "message_text": text, "recipients": ids, "bot_app_id": bot.BotAppID,
	}, &bc); code != http.StatusAccepted {
		t.Fatalf("create broadcast: %d", code)
	}
	eventually(t, 30*time.Second, "broadcast completed", func() bool {
		p.do("GET", "/broadcast/"+bc.ID+"/", acme.APIKey, nil, &bc)
		return bc.Status == "completed"
	})
	if bc.Total != 3 || bc.Sent != 3 || bc.Failed != 0 || bc.Pending != 0 || bc.Deferred != 0 {
		t.Fatalf("broadcast = %+v, want total=3 sent=3", bc)
	}
	for _, u := range users {
		n := 0
		for _, m := range p.emu.SentTo(tg.ID, u.ID) {
			if m.Text == text {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("%s got %d copies of the broadcast, want 1", u.FirstName, n)
		}
	}

	// The other tenant sees none of it.
	for _, path := range []string{
		"/telegram/v1/bots/" + bot.BotAppID + "/",
		"/contacts/" + ids[0] + "/",
		"/broadcast/" + bc.ID + "/",
	} {
		var e errorResp
		if code := p.do("GET", path, other.APIKey, nil, &e); code != http.StatusNotFound {
			t.Fatalf("other tenant GET %s: %d, want 404", path, code)
		}
		if e.Error.Code == "" || e.Error.RequestID == "" {
			t.Fatalf("404 envelope for %s: %+v", path, e)
		}
	}
	var otherContacts struct {
		Items []contactResp `json:"items"`
	}
	if code := p.do("GET", "/contacts/", other.APIKey, nil, &otherContacts); code != 200 || len(otherContacts.Items) != 0 {
		t.Fatalf("other tenant contacts: %d %+v", code, otherContacts.Items)
	}
	if p.emu.TotalViolations() != (tgemu.Violations{}) {
		t.Fatalf("Telegram limits violated: %+v", p.emu.TotalViolations())
	}
}

// TestTwoWorkersShareRateLimit runs two worker processes against one broadcast and checks
// that together they keep TELEGRAM_RATE_LIMIT: the emulator, configured with Telegram-style
// per-bot limit of 10/s, counts no violation, while each worker alone could send faster.
func TestTwoWorkersShareRateLimit(t *testing.T) {
	const rate = 8 // TELEGRAM_RATE_LIMIT=8/s, below the emulator's 10/s
	p := newPlatform(t, options{
		workers: 2,
		emu:     tgemu.Options{PerBotPerSecond: 10},
		env:     map[string]string{"TELEGRAM_RATE_LIMIT": fmt.Sprintf("%d/s", rate), "WORKER_CONCURRENCY": "10"},
	})
	var acme tenantResp
	if code := p.do("POST", "/admin/v1/tenants/", p.admin, map[string]any{"name": "Acme"}, &acme); code != 201 {
		t.Fatalf("create tenant: %d", code)
	}
	tg := p.emu.CreateBot("rate_bot", "Rate Bot")
	var bot botResp
	if code := p.do("POST", "/telegram/v1/bots/", acme.APIKey, map[string]any{"name": "rate", "bot_token": tg.Token}, &bot); code != 201 {
		t.Fatalf("register bot: %d", code)
	}
	const n = 24
	for i := 0; i < n; i++ {
		if _, err := p.emu.SendText(tg.ID, tgemu.User{ID: int64(5000 + i), FirstName: fmt.Sprint("U", i)}, "hello"); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	eventually(t, 20*time.Second, "contacts", func() bool {
		var page struct {
			Items []contactResp `json:"items"`
		}
		p.do("GET", "/contacts/?limit=200", acme.APIKey, nil, &page)
		ids = ids[:0]
		for _, c := range page.Items {
			ids = append(ids, c.ID)
		}
		return len(ids) == n
	})
	// Two broadcasts, so that both workers have work at the same time.
	var bcs [2]broadcastResp
	for i := range bcs {
		if code := p.do("POST", "/broadcast/", acme.APIKey, map[string]any{
			"name": fmt.Sprint("b", i), "platform": "TELEGRAM", "message_text": fmt.Sprint("news ", i), "recipients": ids,
		}, &bcs[i]); code != 202 {
			t.Fatalf("create broadcast: %d", code)
		}
	}
	eventually(t, 60*time.Second, "both broadcasts completed", func() bool {
		for i := range bcs {
			p.do("GET", "/broadcast/"+bcs[i].ID+"/", acme.APIKey, nil, &bcs[i])
			if bcs[i].Status != "completed" {
				return false
			}
		}
		return true
	})
	for i, bc := range bcs {
		if bc.Sent != n {
			t.Fatalf("broadcast %d sent=%d, want %d (%+v)", i, bc.Sent, n, bc)
		}
	}
	if v := p.emu.Violations(tg.ID); v != (tgemu.Violations{}) {
		t.Fatalf("emulator counted violations %+v", v)
	}
	sent := p.emu.Sent(tg.ID)
	if len(sent) != 2*n {
		t.Fatalf("emulator got %d messages, want %d", len(sent), 2*n)
	}
	// 48 sends paced at 8/s cannot take less than 47/8 s; two unshared workers would take half.
	span := sent[len(sent)-1].At.Sub(sent[0].At)
	if min := time.Duration(2*n-1) * time.Second / rate * 9 / 10; span < min {
		t.Fatalf("%d sends took %s, faster than TELEGRAM_RATE_LIMIT=%d/s allows (>= %s)", 2*n, span, rate, min)
	}
	t.Logf("%d sends in %s (%.1f/s, limit %d/s)", 2*n, span, float64(2*n-1)/span.Seconds(), rate)
}
