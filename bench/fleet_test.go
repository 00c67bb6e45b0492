package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/botfleet/botfleet/telegram/tgemu"
)

// hookRecorder is the transport tgemu uses to deliver updates to the platform's webhooks.
// It keeps connections alive (tgemu delivers for every bot at once) and records, per
// webhook URL and chat, when the first update of that chat was posted, so that the reply's
// arrival at tgemu gives the user's /start → welcome latency.
type hookRecorder struct {
	base http.RoundTripper

	mu        sync.Mutex
	firstPost map[chatKey]time.Time
	acks      []time.Duration // post → 2xx answer
	failures  int
}

type chatKey struct {
	hook string // webhook URL
	chat int64
}

func newHookRecorder() *hookRecorder {
	return &hookRecorder{
		base: &http.Transport{
			MaxIdleConns: 4096, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 90 * time.Second,
		},
		firstPost: map[chatKey]time.Time{},
	}
}

func (h *hookRecorder) RoundTrip(req *http.Request) (*http.Response, error) {
	var upd struct {
		Message *struct {
			Chat struct {
				ID int64 `json:"id"`
			} `json:"chat"`
		} `json:"message"`
	}
	if req.GetBody != nil {
		if rc, err := req.GetBody(); err == nil {
			_ = json.NewDecoder(rc).Decode(&upd)
			rc.Close()
		}
	}
	start := time.Now()
	if upd.Message != nil {
		k := chatKey{req.URL.String(), upd.Message.Chat.ID}
		h.mu.Lock()
		if _, ok := h.firstPost[k]; !ok {
			h.firstPost[k] = start
		}
		h.mu.Unlock()
	}
	resp, err := h.base.RoundTrip(req)
	h.mu.Lock()
	if err == nil && resp.StatusCode/100 == 2 {
		h.acks = append(h.acks, time.Since(start))
	} else {
		h.failures++
	}
	h.mu.Unlock()
	return resp, err
}

func (h *hookRecorder) first(hook string, chat int64) (time.Time, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	t, ok := h.firstPost[chatKey{hook, chat}]
	return t, ok
}

func (h *hookRecorder) stats() (acks []time.Duration, failures int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return sortedDurations(h.acks), h.failures
}

// fleetBot is one bot of a scenario: in tgemu, on the platform, its users and broadcast.
type fleetBot struct {
	idx       int
	tg        tgemu.BotInfo
	name      string
	appID     string
	apiKey    string
	hookURL   string
	hookToken string
	users     []tgemu.User
	nextID    atomic.Int64 // next update_id when the harness posts updates itself
	nextMsg   atomic.Int64

	contacts   []contact
	baseline   int // tgemu sent count before the broadcast
	bcText     string
	bcID       string
	bcRequest  time.Time // when POST /broadcast/ was sent
	bcAccepted time.Duration
}

type contact struct {
	ID             string `json:"id"`
	BotAppID       string `json:"bot_app_id"`
	TelegramChatID int64  `json:"telegram_chat_id"`
	Blocked        bool   `json:"blocked"`
	OptedOut       bool   `json:"opted_out"` // /stop: broadcasts skip it too
}

// userID is the Telegram id of user j of bot i (unique across bots, so a chat id names
// one bot's contact).
func userID(bot, j int) int64 { return int64(bot+1)*10_000_000 + int64(j) + 1 }

// forEach runs fn(i) for i in [0, n) with par goroutines and returns the first error.
func forEach(ctx context.Context, n, par int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		next     atomic.Int64
		once     sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(par, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					once.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return firstErr
}

// registerBots creates n bots in tgemu and registers them through the API (getMe,
// setWebhook, setMyCommands), botsPerTenant to a tenant created by the admin API.
func (p *platform) registerBots(ctx context.Context, n, botsPerTenant int) ([]*fleetBot, error) {
	start := time.Now()
	tenants := (n + botsPerTenant - 1) / botsPerTenant
	keys := make([]string, tenants)
	err := forEach(ctx, tenants, 8, func(ctx context.Context, i int) error {
		var t struct {
			APIKey string `json:"api_key"`
		}
		if err := p.do(ctx, http.MethodPost, "/admin/v1/tenants/", adminToken, map[string]any{"name": fmt.Sprintf("bench tenant %d", i)}, &t); err != nil {
			return err
		}
		keys[i] = t.APIKey
		return nil
	})
	if err != nil {
		return nil, err
	}
	bots := make([]*fleetBot, n)
	for i := range bots {
		bots[i] = &fleetBot{idx: i, name: fmt.Sprintf("Bench Bot %d", i), apiKey: keys[i/botsPerTenant]}
		bots[i].tg = p.emu.CreateBot(fmt.Sprintf("bench%d_bot", i), bots[i].name)
		bots[i].nextID.Store(100_000_000)
	}
	err = forEach(ctx, n, 8, func(ctx context.Context, i int) error {
		fb := bots[i]
		var resp struct {
			BotAppID string `json:"bot_app_id"`
		}
		if err := p.do(ctx, http.MethodPost, "/telegram/v1/bots/", fb.apiKey, map[string]any{"name": fb.name, "bot_token": fb.tg.Token}, &resp); err != nil {
			return err
		}
		fb.appID = resp.BotAppID
		wi := p.emu.WebhookInfo(fb.tg.ID)
		fb.hookURL, fb.hookToken = wi.URL, wi.SecretToken
		if fb.hookURL == "" {
			return fmt.Errorf("bot %d registered but tgemu has no webhook for it", i)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	p.r.logf("registered %d bots for %d tenants in %s", n, tenants, secs(time.Since(start)))
	return bots, nil
}

// makeUsers gives every bot its n simulated users.
func makeUsers(bots []*fleetBot, n int) {
	for _, fb := range bots {
		fb.users = make([]tgemu.User, n)
		for j := range fb.users {
			fb.users[j] = tgemu.User{ID: userID(fb.idx, j), FirstName: fmt.Sprintf("User%d", j), LanguageCode: "en"}
		}
	}
}

// userMessages makes every user of every bot send text through tgemu (delivered to the
// webhook as Telegram would: one bot's updates in order, every bot at once). Users are
// interleaved across bots.
func (p *platform) userMessages(bots []*fleetBot, text string) error {
	most := 0
	for _, fb := range bots {
		most = max(most, len(fb.users))
	}
	for j := range most {
		for _, fb := range bots {
			if j < len(fb.users) {
				if _, err := p.emu.SendText(fb.tg.ID, fb.users[j], text); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// countContacts is the number of contacts in the scenario's database.
func (p *platform) countContacts(ctx context.Context) (int, error) {
	var n int
	err := p.db.QueryRow(ctx, "SELECT count(*) FROM contacts").Scan(&n)
	return n, err
}

// waitFor polls cond every 200 ms until it reports done, ctx ends or timeout passes
// (errTimeout). progress, when non-nil, is printed every cfg.progress.
func (p *platform) waitFor(ctx context.Context, timeout time.Duration, cond func(ctx context.Context) (bool, error), progress func()) error {
	deadline := time.Now().Add(timeout)
	lastLog := time.Now()
	for {
		done, err := cond(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if err := p.checkAlive(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return errTimeout
		}
		if progress != nil && time.Since(lastLog) >= p.r.cfg.progress {
			progress()
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// sentTotal sums tgemu's successful sendMessage counts over bots.
func (p *platform) sentTotal(bots []*fleetBot) int {
	n := 0
	for _, fb := range bots {
		n += p.emu.SentCount(fb.tg.ID)
	}
	return n
}

// listContacts pages through GET /contacts/?bot_app_id= for every bot.
func (p *platform) listContacts(ctx context.Context, bots []*fleetBot) error {
	return forEach(ctx, len(bots), 8, func(ctx context.Context, i int) error {
		fb := bots[i]
		fb.contacts = fb.contacts[:0]
		cursor := ""
		for {
			q := url.Values{"bot_app_id": {fb.appID}, "limit": {"200"}}
			if cursor != "" {
				q.Set("cursor", cursor)
			}
			var page struct {
				Items      []contact `json:"items"`
				NextCursor string    `json:"next_cursor"`
			}
			if err := p.do(ctx, http.MethodGet, "/contacts/?"+q.Encode(), fb.apiKey, nil, &page); err != nil {
				return err
			}
			for _, c := range page.Items {
				if c.BotAppID == fb.appID && !c.Blocked && !c.OptedOut {
					fb.contacts = append(fb.contacts, c)
				}
			}
			if page.NextCursor == "" || len(page.Items) == 0 {
				return nil
			}
			cursor = page.NextCursor
		}
	})
}

// createBroadcasts posts one broadcast per bot to all its contacts, par at a time, with a
// text unique to the bot and scenario. It records each bot's sent-count baseline first.
func (p *platform) createBroadcasts(ctx context.Context, bots []*fleetBot, par int) error {
	for _, fb := range bots {
		fb.baseline = p.emu.SentCount(fb.tg.ID)
		fb.bcText = fmt.Sprintf("Bench s%d broadcast for bot %d (%s): spring sale, 20%% off everything.", p.r.id, fb.idx, fb.tg.Username)
	}
	return forEach(ctx, len(bots), par, func(ctx context.Context, i int) error {
		fb := bots[i]
		if len(fb.contacts) == 0 {
			return nil
		}
		ids := make([]string, len(fb.contacts))
		for j, c := range fb.contacts {
			ids[j] = c.ID
		}
		var resp struct {
			ID string `json:"id"`
		}
		fb.bcRequest = time.Now()
		err := p.do(ctx, http.MethodPost, "/broadcast/", fb.apiKey, map[string]any{
			"name": fmt.Sprintf("bench s%d bot %d", p.r.id, fb.idx), "platform": "TELEGRAM",
			"message_text": fb.bcText, "recipients": ids, "bot_app_id": fb.appID,
		}, &resp)
		fb.bcAccepted = time.Since(fb.bcRequest)
		if err != nil {
			return err
		}
		fb.bcID = resp.ID
		return nil
	})
}

// broadcastsOpen is the number of broadcasts not yet completed, failed or cancelled.
func (p *platform) broadcastsOpen(ctx context.Context) (int, error) {
	var n int
	err := p.db.QueryRow(ctx, "SELECT count(*) FROM broadcasts WHERE status NOT IN ('completed', 'failed', 'cancelled')").Scan(&n)
	return n, err
}
