package tgemu

import (
	"context"
	"encoding/json"
	"errors"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// respParams is ResponseParameters (core.telegram.org/bots/api#responseparameters).
type respParams struct {
	MigrateToChatID int64 `json:"migrate_to_chat_id,omitempty"`
	RetryAfter      int   `json:"retry_after,omitempty"`
}

// envelope is the Bot API response object
// (core.telegram.org/bots/api#making-requests).
type envelope struct {
	OK          bool        `json:"ok"`
	Result      any         `json:"result,omitempty"`
	ErrorCode   int         `json:"error_code,omitempty"`
	Description string      `json:"description,omitempty"`
	Parameters  *respParams `json:"parameters,omitempty"`
}

// apiResult is the answer of one Bot API method.
type apiResult struct {
	status      int // 200 on success, error_code otherwise
	result      any
	description string
	params      *respParams
	rawBody     []byte // non-JSON answer (bad_gateway_html)
	rawType     string
}

func ok(result any) apiResult { return apiResult{status: http.StatusOK, result: result} }

func okDesc(result any, desc string) apiResult {
	return apiResult{status: http.StatusOK, result: result, description: desc}
}

func apiError(code int, desc string) apiResult { return apiResult{status: code, description: desc} }

func badRequest(desc string) apiResult { return apiError(http.StatusBadRequest, "Bad Request: "+desc) }

func (r apiResult) write(w http.ResponseWriter) {
	if r.rawBody != nil {
		w.Header().Set("Content-Type", r.rawType)
		w.WriteHeader(r.status)
		_, _ = w.Write(r.rawBody)
		return
	}
	env := envelope{OK: r.status == http.StatusOK, Description: r.description, Parameters: r.params}
	if env.OK {
		env.Result = r.result
	} else {
		env.ErrorCode = r.status
	}
	body, err := json.Marshal(env)
	if err != nil {
		body = []byte(`{"ok":false,"error_code":500,"description":"Internal Server Error"}`)
		r.status = http.StatusInternalServerError
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(r.status)
	_, _ = w.Write(body)
}

// methodFunc implements one Bot API method.
type methodFunc func(b *bot, ctx context.Context, p params) apiResult

// methods maps lower-cased method names to implementations: the Bot API
// matches method names case-insensitively.
var methods map[string]methodFunc

func init() {
	methods = map[string]methodFunc{
		"getme":               (*bot).getMe,
		"setwebhook":          (*bot).setWebhook,
		"deletewebhook":       (*bot).deleteWebhook,
		"getwebhookinfo":      (*bot).getWebhookInfo,
		"setmycommands":       (*bot).setMyCommands,
		"getmycommands":       (*bot).getMyCommands,
		"deletemycommands":    (*bot).deleteMyCommands,
		"sendmessage":         (*bot).sendMessage,
		"sendphoto":           (*bot).sendPhoto,
		"senddocument":        (*bot).sendDocument,
		"sendchataction":      (*bot).sendChatAction,
		"answercallbackquery": (*bot).answerCallbackQuery,
		"getupdates":          (*bot).getUpdates,
		// chats.go
		"getchat":            (*bot).getChat,
		"getchatmember":      (*bot).getChatMember,
		"getchatmembercount": (*bot).getChatMemberCount,
		// edit.go
		"editmessagereplymarkup": (*bot).editMessageReplyMarkup,
		// files.go
		"getfile": (*bot).getFile,
	}
}

// tokenRe is the shape of a bot token: "<bot id>:<secret>".
var tokenRe = regexp.MustCompile(`^[0-9]+:[A-Za-z0-9_-]+$`)

// serveBotAPI handles `/bot<token>/<method>`; anything else is 404.
func (s *Server) serveBotAPI(w http.ResponseWriter, r *http.Request) {
	rest, found := strings.CutPrefix(r.URL.Path, "/bot")
	token, method, found2 := strings.Cut(rest, "/")
	if !found || !found2 || !tokenRe.MatchString(token) || method == "" || strings.Contains(method, "/") {
		apiError(http.StatusNotFound, "Not Found").write(w)
		return
	}
	b := s.botByToken(token)
	if b == nil {
		s.log.Debug("tgemu: unknown token", "method", method)
		apiError(http.StatusUnauthorized, "Unauthorized").write(w)
		return
	}
	at := time.Now()
	p, perr := parseParams(r)
	fn := methods[strings.ToLower(method)]
	var res apiResult
	switch {
	case fn == nil:
		res = apiError(http.StatusNotFound, "Not Found")
	case perr != nil:
		res = badRequest("can't parse request body")
	default:
		res = s.invoke(r.Context(), b, method, fn, p)
	}
	b.recordCall(method, p.copyVals(), res.status, at)
	s.log.Debug("tgemu: bot api call", "bot_id", b.info.ID, "method", method, "status", res.status)
	res.write(w)
}

// invoke applies injected faults, then runs the method.
func (s *Server) invoke(ctx context.Context, b *bot, method string, fn methodFunc, p params) apiResult {
	if f, hit := b.takeFault(method, p.str("chat_id")); hit {
		if f.Latency > 0 {
			t := time.NewTimer(f.Latency)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return apiError(http.StatusInternalServerError, "Internal Server Error")
			case <-s.ctx.Done():
				t.Stop()
				return apiError(http.StatusInternalServerError, "Internal Server Error")
			}
		}
		if f.Kind != FaultLatency {
			s.log.Debug("tgemu: fault injected", "bot_id", b.info.ID, "method", method, "kind", string(f.Kind))
			return faultResult(f, p.str("chat_id"))
		}
	}
	return fn(b, ctx, p)
}

// getMe: core.telegram.org/bots/api#getme.
func (b *bot) getMe(context.Context, params) apiResult {
	t, f := true, false
	u := b.botUser()
	u.CanJoinGroups, u.CanReadAllGroupMessages, u.SupportsInlineQueries = &t, &f, &f
	return ok(u)
}

// secretTokenRe: "1-256 characters. Only characters A-Z, a-z, 0-9, _ and -
// are allowed" (core.telegram.org/bots/api#setwebhook).
var secretTokenRe = regexp.MustCompile(`^[A-Za-z0-9_-]*$`)

// setWebhook: core.telegram.org/bots/api#setwebhook. An empty or missing
// url removes the webhook, as on Telegram. Any http(s) URL is accepted (the
// emulator does not enforce HTTPS or ports 443/80/88/8443). max_connections
// is clamped to 1..100 (default 40) like the Bot API server does; an
// allowed_updates value that is not a JSON array keeps the previous setting.
func (b *bot) setWebhook(_ context.Context, p params) apiResult {
	rawURL := strings.TrimSpace(p.str("url"))
	drop, _ := p.bool("drop_pending_updates")
	if rawURL == "" {
		return b.removeWebhook(drop)
	}
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return badRequest("bad webhook: Wrong HTTP URL specified")
	}
	// certificate (a self-signed certificate, or "null" from gotgbot) is
	// accepted and ignored: has_custom_certificate stays false.
	secret := p.str("secret_token")
	if len(secret) > 256 {
		return badRequest("secret token is too long")
	}
	if !secretTokenRe.MatchString(secret) {
		return badRequest("secret token contains unallowed characters")
	}
	if b.s.opts.OnSecret != nil {
		b.s.opts.OnSecret("secret_token", secret)
	}
	maxConn := 40
	if p.has("max_connections") {
		n, _ := strconv.Atoi(strings.TrimSpace(p.str("max_connections")))
		maxConn = min(max(n, 1), 100)
	}
	var list []string
	listOK, _ := p.json("allowed_updates", &list)

	b.mu.Lock()
	defer b.mu.Unlock()
	changedAllowed := false
	if listOK {
		na := normalizeAllowed(list)
		changedAllowed = !slices.Equal(na, b.allowed)
		b.allowed = na
	}
	same := b.hookURL == rawURL && b.hookSecret == secret && b.hookMaxConn == maxConn
	if drop {
		b.queue = nil
	}
	if same {
		if changedAllowed || drop {
			b.notifyLocked()
		}
		return okDesc(true, "Webhook is already set")
	}
	b.hookURL, b.hookSecret, b.hookMaxConn = rawURL, secret, maxConn
	b.hookGen++
	b.backoff, b.nextAttempt = 0, time.Time{}
	b.lastErrDate, b.lastErrMsg = 0, ""
	b.notifyLocked()
	b.s.log.Info("tgemu: webhook set", "bot_id", b.info.ID, "max_connections", maxConn, "allowed_updates", b.allowed)
	return okDesc(true, "Webhook was set")
}

// deleteWebhook: core.telegram.org/bots/api#deletewebhook.
func (b *bot) deleteWebhook(_ context.Context, p params) apiResult {
	drop, _ := p.bool("drop_pending_updates")
	return b.removeWebhook(drop)
}

func (b *bot) removeWebhook(drop bool) apiResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	if drop {
		b.queue = nil
	}
	if b.hookURL == "" {
		if drop {
			b.notifyLocked()
		}
		return okDesc(true, "Webhook is already deleted")
	}
	b.hookURL, b.hookSecret, b.hookMaxConn = "", "", 0
	b.hookGen++
	b.backoff, b.nextAttempt = 0, time.Time{}
	b.lastErrDate, b.lastErrMsg = 0, ""
	b.notifyLocked()
	b.s.log.Info("tgemu: webhook deleted", "bot_id", b.info.ID)
	return okDesc(true, "Webhook was deleted")
}

// getWebhookInfo: core.telegram.org/bots/api#getwebhookinfo. Optional
// fields are omitted when empty, as Telegram does; the secret is never
// returned.
func (b *bot) getWebhookInfo(context.Context, params) apiResult {
	b.mu.Lock()
	wi := b.webhookInfoLocked()
	b.mu.Unlock()
	wi.SecretToken = ""
	return ok(wi)
}

// commandRe: "Text of the command; 1-32 characters. Can contain only
// lowercase English letters, digits and underscores"
// (core.telegram.org/bots/api#botcommand).
var commandRe = regexp.MustCompile(`^[a-z0-9_]{1,32}$`)

var scopeTypes = []string{"default", "all_private_chats", "all_group_chats",
	"all_chat_administrators", "chat", "chat_administrators", "chat_member"}

// langRe is a two-letter ISO 639-1 code.
var langRe = regexp.MustCompile(`^[a-z]{2}$`)

func commandsKey(scope, chatID, userID, lang string) string {
	return scope + "|" + chatID + "|" + userID + "|" + lang
}

// commandScopeKey parses the scope and language_code parameters
// (core.telegram.org/bots/api#botcommandscope) into a storage key.
func commandScopeKey(p params) (string, *apiResult) {
	var sc struct {
		Type   string          `json:"type"`
		ChatID json.RawMessage `json:"chat_id"`
		UserID int64           `json:"user_id"`
	}
	present, err := p.json("scope", &sc)
	if err != nil {
		r := badRequest("can't parse BotCommandScope JSON object")
		return "", &r
	}
	if !present {
		sc.Type = "default"
	}
	if !slices.Contains(scopeTypes, sc.Type) {
		r := badRequest("unsupported bot command scope type specified")
		return "", &r
	}
	chatID := strings.Trim(string(sc.ChatID), `"`)
	if (sc.Type == "chat" || sc.Type == "chat_administrators" || sc.Type == "chat_member") && chatID == "" {
		r := badRequest("chat not found")
		return "", &r
	}
	if sc.Type == "chat_member" && sc.UserID == 0 {
		r := badRequest("user not found")
		return "", &r
	}
	lang := p.str("language_code")
	if lang != "" && !langRe.MatchString(lang) {
		r := badRequest("invalid language code specified")
		return "", &r
	}
	uid := ""
	if sc.UserID != 0 {
		uid = strconv.FormatInt(sc.UserID, 10)
	}
	return commandsKey(sc.Type, chatID, uid, lang), nil
}

// setMyCommands: core.telegram.org/bots/api#setmycommands. At most 100
// commands; each command 1-32 of [a-z0-9_], description 1-256 characters.
// Commands are stored per scope and language_code.
func (b *bot) setMyCommands(_ context.Context, p params) apiResult {
	var cmds []BotCommand
	present, err := p.json("commands", &cmds)
	if err != nil {
		return badRequest("can't parse commands JSON object")
	}
	if !present {
		return badRequest("parameter \"commands\" is required")
	}
	if len(cmds) > 100 {
		return badRequest("too many commands specified")
	}
	for _, c := range cmds {
		if !commandRe.MatchString(c.Command) {
			return badRequest("BOT_COMMAND_INVALID")
		}
		if n := utf8.RuneCountInString(strings.TrimSpace(c.Description)); n < 1 || n > 256 {
			return badRequest("BOT_COMMAND_DESCRIPTION_INVALID")
		}
	}
	key, bad := commandScopeKey(p)
	if bad != nil {
		return *bad
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(cmds) == 0 {
		delete(b.commands, key)
	} else {
		b.commands[key] = append([]BotCommand(nil), cmds...)
	}
	return ok(true)
}

// getMyCommands: core.telegram.org/bots/api#getmycommands. Returns the list
// of exactly the given scope and language ([] when none).
func (b *bot) getMyCommands(_ context.Context, p params) apiResult {
	key, bad := commandScopeKey(p)
	if bad != nil {
		return *bad
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	cmds := b.commands[key]
	if cmds == nil {
		cmds = []BotCommand{}
	}
	return ok(append([]BotCommand(nil), cmds...))
}

// deleteMyCommands: core.telegram.org/bots/api#deletemycommands.
func (b *bot) deleteMyCommands(_ context.Context, p params) apiResult {
	key, bad := commandScopeKey(p)
	if bad != nil {
		return *bad
	}
	b.mu.Lock()
	delete(b.commands, key)
	b.mu.Unlock()
	return ok(true)
}

// htmlTagRe matches tags of Telegram's HTML subset.
var htmlTagRe = regexp.MustCompile(`<[^>]*>`)

// plainText approximates the text Telegram stores after parsing entities:
// for HTML the tags are removed and entities unescaped; other modes are kept
// as sent.
func plainText(text, parseMode string) string {
	if strings.EqualFold(parseMode, "HTML") {
		return html.UnescapeString(htmlTagRe.ReplaceAllString(text, ""))
	}
	return text
}

// parseChatID parses a private-chat id. Telegram also accepts "@username"
// for channels; the emulator has no channels, so those are "chat not found".
func parseChatID(p params) (int64, *apiResult) {
	raw := strings.TrimSpace(p.str("chat_id"))
	if raw == "" {
		r := badRequest("chat_id is empty")
		return 0, &r
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id == 0 {
		r := badRequest("chat not found")
		return 0, &r
	}
	return id, nil
}

// sendMessage: core.telegram.org/bots/api#sendmessage.
//
// Checks, in order: chat_id present; text non-empty after trimming ("message
// text is empty") and at most 4096 characters after entity parsing (counted
// in runes; "message is too long"); parse_mode in HTML/Markdown/MarkdownV2
// (any case); JSON of reply_markup, link_preview_options, reply_parameters
// and entities; the chat exists (a simulated user messaged the bot) and has
// not blocked it; then the rate limits of the Bot FAQ (429 with
// parameters.retry_after, counted in Violations).
func (b *bot) sendMessage(_ context.Context, p params) apiResult {
	chatID, bad := parseChatID(p)
	if bad != nil {
		return *bad
	}
	text := p.str("text")
	if strings.TrimSpace(text) == "" {
		return badRequest("message text is empty")
	}
	parseMode := p.str("parse_mode")
	switch strings.ToLower(parseMode) {
	case "", "html", "markdown", "markdownv2":
	default:
		return badRequest("unsupported parse_mode")
	}
	plain := plainText(text, parseMode)
	if utf8.RuneCountInString(plain) > 4096 {
		return badRequest("message is too long")
	}
	var markup map[string]json.RawMessage
	if _, err := p.json("reply_markup", &markup); err != nil {
		return badRequest("can't parse reply keyboard markup JSON object")
	}
	var any1 any
	if _, err := p.json("link_preview_options", &any1); err != nil {
		return badRequest("can't parse link preview options JSON object")
	}
	if _, err := p.json("reply_parameters", &any1); err != nil {
		return badRequest("can't parse reply parameters JSON object")
	}
	var ents []jsEntity
	if _, err := p.json("entities", &ents); err != nil {
		return badRequest("can't parse entities JSON object")
	}

	now := time.Now()
	sm := SentMessage{BotID: b.info.ID, ChatID: chatID, Text: text, ParseMode: parseMode, At: now, Method: "sendMessage"}
	msgID, chat, res, accepted := b.acceptSend(sm, p)
	if !accepted {
		return res
	}
	from := b.botUser()
	msg := jsMessage{MessageID: msgID, From: &from, Chat: chat, Date: now.Unix(), Text: plain, Entities: ents}
	if raw, has := markup["inline_keyboard"]; has {
		msg.ReplyMarkup, _ = json.Marshal(map[string]json.RawMessage{"inline_keyboard": raw})
	}
	return ok(msg)
}

// sendChatAction: core.telegram.org/bots/api#sendchataction.
func (b *bot) sendChatAction(_ context.Context, p params) apiResult {
	chatID, bad := parseChatID(p)
	if bad != nil {
		return *bad
	}
	if p.str("action") == "" {
		return badRequest("action is empty")
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	c := b.chats[chatID]
	if c == nil {
		return badRequest("chat not found")
	}
	if c.blocked {
		return apiError(http.StatusForbidden, "Forbidden: bot was blocked by the user")
	}
	return ok(true)
}

// answerCallbackQuery: core.telegram.org/bots/api#answercallbackquery. Any
// non-empty callback_query_id is accepted.
func (b *bot) answerCallbackQuery(_ context.Context, p params) apiResult {
	if strings.TrimSpace(p.str("callback_query_id")) == "" {
		return badRequest("query is too old and response timeout expired or query ID is invalid")
	}
	return ok(true)
}

// getUpdates: core.telegram.org/bots/api#getupdates. 409 while a webhook is
// set. offset confirms (forgets) every update with a smaller id; a negative
// offset keeps only the last -offset updates. limit 1..100 (default 100);
// timeout (seconds, capped at 50) long-polls while nothing is pending;
// allowed_updates is stored like setWebhook's.
func (b *bot) getUpdates(ctx context.Context, p params) apiResult {
	const conflict = "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first"
	offset, _, _ := p.int64("offset")
	limit, hasLimit, _ := p.int64("limit")
	if !hasLimit || limit > 100 {
		limit = 100
	}
	limit = max(limit, 1)
	timeout, _, _ := p.int64("timeout")
	timeout = min(max(timeout, 0), 50)
	var list []string
	listOK, _ := p.json("allowed_updates", &list)

	b.mu.Lock()
	if b.hookURL != "" {
		b.mu.Unlock()
		return apiError(http.StatusConflict, conflict)
	}
	if listOK {
		b.allowed = normalizeAllowed(list)
	}
	switch {
	case offset > 0:
		b.queue = slices.DeleteFunc(b.queue, func(u *update) bool { return u.id < offset })
		b.notifyLocked()
	case offset < 0:
		if keep := int(-offset); keep < len(b.queue) {
			b.queue = b.queue[len(b.queue)-keep:]
			b.notifyLocked()
		}
	}
	b.mu.Unlock()

	if timeout > 0 {
		wctx, cancel := context.WithTimeout(ctx, time.Duration(timeout)*time.Second)
		err := b.waitFor(wctx, func() bool { return len(b.queue) > 0 || b.hookURL != "" })
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return apiError(http.StatusInternalServerError, "Internal Server Error")
		}
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	if b.hookURL != "" {
		return apiError(http.StatusConflict, conflict)
	}
	out := []json.RawMessage{}
	for _, u := range b.queue {
		if int64(len(out)) >= limit {
			break
		}
		if b.allowedLocked(u.kind) {
			out = append(out, u.raw)
		}
	}
	return ok(out)
}

// acceptSend admits one outgoing message sm (ChatID, At and what was sent filled in) as
// Telegram would: the chat must be known and must not have blocked the bot (403), and
// checkSendLocked keeps Telegram's limits (allow_paid_broadcast read from p). An accepted
// message gets the chat's next message_id and is recorded with the options of p
// (sentOptions). It returns the message_id and the chat as Telegram answers it, or
// accepted false with the error answer.
func (b *bot) acceptSend(sm SentMessage, p params) (msgID int64, chat jsChat, res apiResult, accepted bool) {
	b.mu.Lock()
	c := b.chats[sm.ChatID]
	if c == nil {
		b.mu.Unlock()
		return 0, jsChat{}, badRequest("chat not found"), false
	}
	if c.blocked {
		b.mu.Unlock()
		return 0, jsChat{}, apiError(http.StatusForbidden, "Forbidden: bot was blocked by the user"), false
	}
	paid, _ := p.bool("allow_paid_broadcast")
	if res, allowed := b.checkSendLocked(sm.ChatID, sm.At, paid); !allowed {
		b.mu.Unlock()
		return 0, jsChat{}, res, false
	}
	c.lastMsgID++
	sm.MessageID = c.lastMsgID
	user, group := c.user, c.group
	b.sent = append(b.sent, sentOptions(sm, p))
	b.notifyLocked()
	b.mu.Unlock()

	chat = privateChat(user)
	if group != "" {
		chat = jsChat{ID: sm.ChatID, Type: "group", Title: group}
	}
	return sm.MessageID, chat, apiResult{}, true
}
