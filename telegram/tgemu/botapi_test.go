package tgemu

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// fastOpts keeps webhook retries quick in tests.
var fastOpts = Options{RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 50 * time.Millisecond}

func newGotBot(t *testing.T, s *Server, token string) *gotgbot.Bot {
	t.Helper()
	b, err := gotgbot.NewBot(token, &gotgbot.BotOpts{BotClient: &gotgbot.BaseBotClient{
		Client:             http.Client{},
		DefaultRequestOpts: &gotgbot.RequestOpts{APIURL: s.URL(), Timeout: 5 * time.Second},
	}})
	if err != nil {
		t.Fatalf("gotgbot.NewBot: %v", err)
	}
	return b
}

func asTelegramError(t *testing.T, err error) *gotgbot.TelegramError {
	t.Helper()
	var te *gotgbot.TelegramError
	if !errors.As(err, &te) {
		t.Fatalf("want *gotgbot.TelegramError, got %T: %v", err, err)
	}
	return te
}

// rawCall performs an HTTP request and decodes the envelope.
func rawCall(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL.Path, err)
	}
	defer resp.Body.Close()
	var env map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		t.Fatalf("decode: %v", err)
	}
	return resp.StatusCode, env
}

func TestGetMe(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("echo_bot", "Echo")
	b := newGotBot(t, s, info.Token) // NewBot calls getMe
	if b.Id != info.ID || b.Username != "echo_bot" || b.FirstName != "Echo" || !b.IsBot || !b.CanJoinGroups {
		t.Fatalf("getMe user = %+v", b.User)
	}
	if !tokenRe.MatchString(info.Token) || len(strings.SplitN(info.Token, ":", 2)[1]) != 35 {
		t.Fatalf("token shape: %q", info.Token)
	}
	calls := s.Calls(info.ID, "getMe")
	if len(calls) != 1 || calls[0].Status != 200 || calls[0].Params["_empty"] != "" {
		t.Fatalf("calls = %+v", calls)
	}
}

func TestAuthAndRouting(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("a_bot", "A")
	cases := []struct {
		path   string
		status int
		desc   string
	}{
		{"/bot" + info.Token + "/getMe", 200, ""},
		{"/bot" + info.Token + "/GETME", 200, ""}, // case-insensitive
		{"/bot123:wrongsecret/getMe", 401, "Unauthorized"},
		{"/botnot-a-token/getMe", 404, "Not Found"},
		{"/bot" + info.Token + "/noSuchMethod", 404, "Not Found"},
		{"/whatever", 404, "Not Found"},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+c.path, nil)
		status, env := rawCall(t, req)
		if status != c.status {
			t.Errorf("%s: status %d, want %d (%v)", c.path, status, c.status, env)
		}
		if c.desc != "" && (env["description"] != c.desc || env["ok"] != false || env["error_code"] != float64(c.status)) {
			t.Errorf("%s: envelope %v", c.path, env)
		}
	}
}

func TestWebhookSettingsGotgbot(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("hook_bot", "Hook")
	b := newGotBot(t, s, info.Token)

	_, err := b.SetWebhook("http://127.0.0.1:1/hook", &gotgbot.SetWebhookOpts{SecretToken: "bad secret!"})
	if te := asTelegramError(t, err); te.Code != 400 || te.Description != "Bad Request: secret token contains unallowed characters" {
		t.Fatalf("bad secret: %+v", te)
	}

	ok, err := b.SetWebhook("http://127.0.0.1:1/hook", &gotgbot.SetWebhookOpts{
		SecretToken: "s3cr3t_-X", AllowedUpdates: []string{"message", "callback_query"}, MaxConnections: 7,
	})
	if err != nil || !ok {
		t.Fatalf("SetWebhook: %v %v", ok, err)
	}
	wi, err := b.GetWebhookInfo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if wi.Url != "http://127.0.0.1:1/hook" || wi.MaxConnections != 7 || strings.Join(wi.AllowedUpdates, ",") != "message,callback_query" || wi.HasCustomCertificate {
		t.Fatalf("webhook info = %+v", wi)
	}
	if got := s.WebhookInfo(info.ID); got.SecretToken != "s3cr3t_-X" {
		t.Fatalf("secret not stored: %+v", got)
	}
	// gotgbot sends certificate="null": must be treated as absent.
	if c := s.Calls(info.ID, "setWebhook"); c[len(c)-1].Params["certificate"] != "null" {
		t.Fatalf("expected gotgbot to send certificate=null, params %v", c[len(c)-1].Params)
	}

	_, err = b.GetUpdates(nil)
	if te := asTelegramError(t, err); te.Code != 409 || !strings.HasPrefix(te.Description, "Conflict: can't use getUpdates method while webhook is active") {
		t.Fatalf("getUpdates with webhook: %+v", te)
	}

	if ok, err := b.DeleteWebhook(&gotgbot.DeleteWebhookOpts{DropPendingUpdates: true}); err != nil || !ok {
		t.Fatalf("DeleteWebhook: %v %v", ok, err)
	}
	wi, _ = b.GetWebhookInfo(nil)
	if wi.Url != "" || wi.MaxConnections != 0 {
		t.Fatalf("after delete: %+v", wi)
	}
	// allowed_updates is kept across webhook changes, as on Telegram.
	if strings.Join(wi.AllowedUpdates, ",") != "message,callback_query" {
		t.Fatalf("allowed updates after delete: %v", wi.AllowedUpdates)
	}
	// Defaults: max_connections 40; [] resets allowed_updates to the default set.
	if _, err := b.SetWebhook("http://127.0.0.1:1/x", &gotgbot.SetWebhookOpts{AllowedUpdates: []string{}}); err != nil {
		t.Fatal(err)
	}
	wi, _ = b.GetWebhookInfo(nil)
	if wi.MaxConnections != 40 || wi.AllowedUpdates != nil {
		t.Fatalf("defaults: %+v", wi)
	}
}

func TestWebhookDescriptions(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("d_bot", "D")
	call := func(method string, q url.Values) map[string]any {
		req, _ := http.NewRequest(http.MethodGet, s.URL()+"/bot"+info.Token+"/"+method+"?"+q.Encode(), nil)
		_, env := rawCall(t, req)
		return env
	}
	want := []struct {
		method, url, desc string
	}{
		{"setWebhook", "http://127.0.0.1:1/h", "Webhook was set"},
		{"setWebhook", "http://127.0.0.1:1/h", "Webhook is already set"},
		{"deleteWebhook", "", "Webhook was deleted"},
		{"deleteWebhook", "", "Webhook is already deleted"},
	}
	for _, w := range want {
		q := url.Values{}
		if w.url != "" {
			q.Set("url", w.url)
		}
		env := call(w.method, q)
		if env["ok"] != true || env["result"] != true || env["description"] != w.desc {
			t.Errorf("%s(%s) = %v, want %q", w.method, w.url, env, w.desc)
		}
	}
	env := call("getWebhookInfo", nil)
	res := env["result"].(map[string]any)
	for _, k := range []string{"last_error_date", "last_error_message", "max_connections", "allowed_updates", "secret_token"} {
		if _, has := res[k]; has {
			t.Errorf("getWebhookInfo without webhook has %q: %v", k, res)
		}
	}
}

func TestCommandsGotgbot(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("cmd_bot", "Cmd")
	b := newGotBot(t, s, info.Token)

	cmds := []gotgbot.BotCommand{{Command: "start", Description: "Start"}, {Command: "help_me2", Description: "Help"}}
	if ok, err := b.SetMyCommands(cmds, &gotgbot.SetMyCommandsOpts{}); err != nil || !ok { // scope sent as "null"
		t.Fatalf("SetMyCommands: %v %v", ok, err)
	}
	got, err := b.GetMyCommands(nil)
	if err != nil || len(got) != 2 || got[1].Command != "help_me2" {
		t.Fatalf("GetMyCommands = %+v, %v", got, err)
	}
	if c := s.Commands(info.ID); len(c) != 2 || c[0] != (BotCommand{"start", "Start"}) {
		t.Fatalf("Commands = %+v", c)
	}
	// Per scope and language.
	if _, err := b.SetMyCommands([]gotgbot.BotCommand{{Command: "hallo", Description: "Hallo"}},
		&gotgbot.SetMyCommandsOpts{Scope: gotgbot.BotCommandScopeAllPrivateChats{}, LanguageCode: "de"}); err != nil {
		t.Fatal(err)
	}
	got, _ = b.GetMyCommands(&gotgbot.GetMyCommandsOpts{Scope: gotgbot.BotCommandScopeAllPrivateChats{}, LanguageCode: "de"})
	if len(got) != 1 || got[0].Command != "hallo" {
		t.Fatalf("scoped commands = %+v", got)
	}
	if got, _ = b.GetMyCommands(&gotgbot.GetMyCommandsOpts{LanguageCode: "fr"}); len(got) != 0 {
		t.Fatalf("fr commands = %+v", got)
	}
	_, err = b.SetMyCommands([]gotgbot.BotCommand{{Command: "Start", Description: "x"}}, nil)
	if te := asTelegramError(t, err); te.Code != 400 || te.Description != "Bad Request: BOT_COMMAND_INVALID" {
		t.Fatalf("invalid command: %+v", te)
	}
}

func TestSendMessageGotgbot(t *testing.T) {
	s := NewTest(t, Options{PerChatInterval: -1})
	info := s.CreateBot("send_bot", "Send")
	b := newGotBot(t, s, info.Token)
	alice := User{ID: 1001, FirstName: "Alice", Username: "alice"}

	// Never started the bot.
	_, err := b.SendMessage(alice.ID, "hi", nil)
	if te := asTelegramError(t, err); te.Code != 400 || te.Description != "Bad Request: chat not found" {
		t.Fatalf("chat not found: %+v", te)
	}

	if _, err := s.SendCommand(info.ID, alice, "/start"); err != nil {
		t.Fatal(err)
	}
	msg, err := b.SendMessage(alice.ID, "<b>Hello</b> &amp; welcome", &gotgbot.SendMessageOpts{
		ParseMode:          gotgbot.ParseModeHTML,
		LinkPreviewOptions: &gotgbot.LinkPreviewOptions{IsDisabled: true},
		ReplyMarkup: gotgbot.InlineKeyboardMarkup{InlineKeyboard: [][]gotgbot.InlineKeyboardButton{{
			{Text: "Go", CallbackData: "go"}}}},
		ProtectContent: true,
	})
	if err != nil {
		t.Fatalf("SendMessage: %v", err)
	}
	if msg.Chat.Id != alice.ID || msg.Chat.Type != "private" || msg.From.Id != info.ID || msg.Text != "Hello & welcome" ||
		msg.MessageId != 2 || msg.Date == 0 || msg.Chat.Username != "alice" || msg.ReplyMarkup == nil {
		t.Fatalf("message = %+v chat=%+v", msg, msg.Chat)
	}
	sent := s.SentTo(info.ID, alice.ID)
	if len(sent) != 1 || sent[0].Text != "<b>Hello</b> &amp; welcome" || sent[0].ParseMode != "HTML" || sent[0].MessageID != 2 {
		t.Fatalf("sent = %+v", sent)
	}

	// Validation errors.
	for _, c := range []struct {
		text, mode, want string
	}{
		{"   ", "", "Bad Request: message text is empty"},
		{strings.Repeat("я", 4097), "", "Bad Request: message is too long"},
		{"x", "BBCode", "Bad Request: unsupported parse_mode"},
	} {
		_, err := b.SendMessage(alice.ID, c.text, &gotgbot.SendMessageOpts{ParseMode: c.mode})
		if te := asTelegramError(t, err); te.Code != 400 || te.Description != c.want {
			t.Errorf("text %.10q mode %q: %+v", c.text, c.mode, te)
		}
	}

	// Blocked: 403 until unblocked.
	if _, err := s.Block(info.ID, alice); err != nil {
		t.Fatal(err)
	}
	_, err = b.SendMessage(alice.ID, "still there?", nil)
	if te := asTelegramError(t, err); te.Code != 403 || te.Description != "Forbidden: bot was blocked by the user" {
		t.Fatalf("blocked: %+v", te)
	}
	if _, err := s.Unblock(info.ID, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := b.SendMessage(alice.ID, "welcome back", nil); err != nil {
		t.Fatalf("after unblock: %v", err)
	}
	if n := len(s.Sent(info.ID)); n != 2 {
		t.Fatalf("sent %d, want 2", n)
	}
}

func TestFaultsGotgbot(t *testing.T) {
	s := NewTest(t, Options{PerChatInterval: -1})
	info := s.CreateBot("fault_bot", "Fault")
	b := newGotBot(t, s, info.Token)
	bob := User{ID: 2002, FirstName: "Bob"}
	if _, err := s.SendText(info.ID, bob, "hi"); err != nil {
		t.Fatal(err)
	}

	s.AddFault(info.ID, Fault{Kind: FaultTooManyRequests, RetryAfter: 7, Times: 1})
	s.AddFault(info.ID, Fault{Kind: FaultMigrate, ChatID: bob.ID, MigrateToChatID: -1009, Times: 1})
	s.AddFault(info.ID, Fault{Kind: FaultServerError, Times: 1})
	s.AddFault(info.ID, Fault{Kind: FaultBadGatewayHTML, Times: 1})
	s.AddFault(info.ID, Fault{Kind: FaultBlocked, ChatID: 999, Times: 1}) // other chat: never matches here

	_, err := b.SendMessage(bob.ID, "1", nil)
	te := asTelegramError(t, err)
	if te.Code != 429 || te.ResponseParams == nil || te.ResponseParams.RetryAfter != 7 || te.Description != "Too Many Requests: retry after 7" {
		t.Fatalf("429 fault: %+v", te)
	}
	_, err = b.SendMessage(bob.ID, "2", nil)
	if te := asTelegramError(t, err); te.Code != 400 || te.ResponseParams == nil || te.ResponseParams.MigrateToChatId != -1009 {
		t.Fatalf("migrate fault: %+v", te)
	}
	_, err = b.SendMessage(bob.ID, "3", nil)
	if te := asTelegramError(t, err); te.Code != 500 || te.Description != "Internal Server Error" {
		t.Fatalf("500 fault: %+v", te)
	}
	_, err = b.SendMessage(bob.ID, "4", nil)
	var te2 *gotgbot.TelegramError
	if err == nil || errors.As(err, &te2) || !strings.Contains(err.Error(), "failed to decode") {
		t.Fatalf("502 html fault: %v", err)
	}
	if _, err := b.SendMessage(bob.ID, "5", nil); err != nil {
		t.Fatalf("after faults: %v", err)
	}
	// Faults only apply to their method (default sendMessage).
	if _, err := b.GetMe(nil); err != nil {
		t.Fatal(err)
	}

	// Latency, then normal processing.
	s.ClearFaults(info.ID)
	s.AddFault(info.ID, Fault{Method: "*", Kind: FaultLatency, Latency: 150 * time.Millisecond, Times: 1})
	start := time.Now()
	if _, err := b.GetMe(nil); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("latency fault took %v", d)
	}

	// Until cleared (Times 0).
	s.AddFault(info.ID, Fault{Kind: FaultBlocked})
	for range 3 {
		if _, err := b.SendMessage(bob.ID, "x", nil); asTelegramError(t, err).Code != 403 {
			t.Fatal("want 403")
		}
	}
	s.ClearFaults(info.ID)
	if _, err := b.SendMessage(bob.ID, "6", nil); err != nil {
		t.Fatal(err)
	}

	statuses := []int{}
	for _, c := range s.Calls(info.ID, "sendMessage") {
		statuses = append(statuses, c.Status)
	}
	want := []int{429, 400, 500, 502, 200, 403, 403, 403, 200}
	if len(statuses) != len(want) {
		t.Fatalf("call statuses %v, want %v", statuses, want)
	}
	for i := range want {
		if statuses[i] != want[i] {
			t.Fatalf("call statuses %v, want %v", statuses, want)
		}
	}
	if got := len(s.Sent(info.ID)); got != 2 {
		t.Fatalf("sent %d, want 2", got)
	}
	if v := s.Violations(info.ID); v != (Violations{}) {
		t.Fatalf("faults counted as violations: %+v", v)
	}
}

func TestEncodings(t *testing.T) {
	s := NewTest(t, Options{PerChatInterval: -1})
	info := s.CreateBot("enc_bot", "Enc")
	carol := User{ID: 3003, FirstName: "Carol"}
	if _, err := s.SendText(info.ID, carol, "hello"); err != nil {
		t.Fatal(err)
	}
	base := s.URL() + "/bot" + info.Token + "/"

	// application/json, chat_id as a number, reply_markup as an object.
	req, _ := http.NewRequest(http.MethodPost, base+"sendMessage", strings.NewReader(
		`{"chat_id":3003,"text":"json","reply_markup":{"inline_keyboard":[[{"text":"a","callback_data":"b"}]]},"disable_notification":true}`))
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	if status, env := rawCall(t, req); status != 200 || env["ok"] != true {
		t.Fatalf("json: %d %v", status, env)
	}

	// application/x-www-form-urlencoded, chat_id as a string, JSON in a field.
	form := url.Values{"chat_id": {"3003"}, "text": {"form"}, "parse_mode": {"MarkdownV2"},
		"reply_markup": {`{"inline_keyboard":[[{"text":"a","callback_data":"b"}]]}`}}
	req, _ = http.NewRequest(http.MethodPost, base+"sendMessage", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, env := rawCall(t, req); status != 200 || env["ok"] != true {
		t.Fatalf("form: %d %v", status, env)
	}

	// Query string.
	req, _ = http.NewRequest(http.MethodGet, base+"sendMessage?chat_id=3003&text=query", nil)
	if status, env := rawCall(t, req); status != 200 || env["ok"] != true {
		t.Fatalf("query: %d %v", status, env)
	}

	// Broken JSON in a field.
	form = url.Values{"chat_id": {"3003"}, "text": {"x"}, "reply_markup": {`{"inline_keyboard":`}}
	req, _ = http.NewRequest(http.MethodPost, base+"sendMessage", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if status, _ := rawCall(t, req); status != 400 {
		t.Fatalf("bad reply_markup: %d", status)
	}

	// JSON body for setWebhook with allowed_updates as a real array.
	req, _ = http.NewRequest(http.MethodPost, base+"setWebhook", strings.NewReader(
		`{"url":"http://127.0.0.1:1/h","allowed_updates":["message"],"max_connections":"500","secret_token":"abc"}`))
	req.Header.Set("Content-Type", "application/json")
	if status, env := rawCall(t, req); status != 200 || env["description"] != "Webhook was set" {
		t.Fatalf("json setWebhook: %d %v", status, env)
	}
	wi := s.WebhookInfo(info.ID)
	if wi.MaxConnections != 100 || len(wi.AllowedUpdates) != 1 || wi.SecretToken != "abc" {
		t.Fatalf("webhook info: %+v", wi)
	}

	texts := []string{}
	for _, m := range s.Sent(info.ID) {
		texts = append(texts, m.Text)
	}
	if strings.Join(texts, ",") != "json,form,query" {
		t.Fatalf("sent texts %v", texts)
	}
	calls := s.Calls(info.ID, "sendMessage")
	if calls[0].Params["chat_id"] != "3003" || calls[0].Params["disable_notification"] != "true" || !strings.HasPrefix(calls[0].Params["reply_markup"], "{") {
		t.Fatalf("json params: %v", calls[0].Params)
	}
}

func TestGetUpdates(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("poll_bot", "Poll")
	b := newGotBot(t, s, info.Token)
	u := User{ID: 4004, FirstName: "Dan"}
	id1, _ := s.SendText(info.ID, u, "one")
	id2, _ := s.SendText(info.ID, u, "two")
	if id2 != id1+1 || id1 <= 0 {
		t.Fatalf("update ids %d %d", id1, id2)
	}
	ups, err := b.GetUpdates(&gotgbot.GetUpdatesOpts{Limit: 1})
	if err != nil || len(ups) != 1 || ups[0].UpdateId != id1 || ups[0].Message.Text != "one" {
		t.Fatalf("getUpdates: %+v %v", ups, err)
	}
	ups, err = b.GetUpdates(&gotgbot.GetUpdatesOpts{Offset: id1 + 1})
	if err != nil || len(ups) != 1 || ups[0].UpdateId != id2 {
		t.Fatalf("getUpdates offset: %+v %v", ups, err)
	}
	// Long poll wakes up on a new update.
	go func() {
		time.Sleep(100 * time.Millisecond)
		_, _ = s.SendText(info.ID, u, "three")
	}()
	ups, err = b.GetUpdates(&gotgbot.GetUpdatesOpts{Offset: id2 + 1, Timeout: 3,
		RequestOpts: &gotgbot.RequestOpts{Timeout: 5 * time.Second}})
	if err != nil || len(ups) != 1 || ups[0].Message.Text != "three" {
		t.Fatalf("long poll: %+v %v", ups, err)
	}
}
