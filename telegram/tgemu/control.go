package tgemu

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// Control API: JSON over HTTP under /control/, driving the same state as the
// Go API (for curl demos and tests that run the emulator out of process).
// Errors are {"error":"..."} with 400 (bad input) or 404 (unknown bot).
//
//	POST   /control/bots                       {username, first_name} → BotInfo
//	GET    /control/bots                       → {items:[BotInfo]}
//	GET    /control/bots/{bot_id}              → BotInfo + {webhook, violations, commands}
//	POST   /control/bots/{bot_id}/messages     {user:{id,first_name,...}, text} → {update_id}
//	POST   /control/bots/{bot_id}/block        {user:{...}} → {update_id}
//	POST   /control/bots/{bot_id}/unblock      {user:{...}} → {update_id}
//	POST   /control/bots/{bot_id}/updates      raw Update JSON → {update_id}
//	POST   /control/bots/{bot_id}/redeliver    {update_id} → {update_id}
//	GET    /control/bots/{bot_id}/idle?timeout_ms=N → {pending_update_count} (408 on timeout)
//	GET    /control/bots/{bot_id}/sent?chat_id= → {items:[{chat_id,message_id,text,parse_mode,date}]}
//	GET    /control/bots/{bot_id}/calls?method= → {items:[{method,params,status,date}]}
//	POST   /control/bots/{bot_id}/faults       {method,chat_id,kind,retry_after,migrate_to_chat_id,latency_ms,times}
//	DELETE /control/bots/{bot_id}/faults
//	POST   /control/bots/{bot_id}/tokens       → {token} (old tokens keep working)
//	POST   /control/bots/{bot_id}/revoke-token → {token} (every other token answers 401)
//	GET    /control/violations                 → {per_bot, per_chat, bots:{"<id>":{per_bot,per_chat}}}
//	POST   /control/bots/{bot_id}/webhook      {url} → WebhookInfo (set by hand, drift.go)
//	POST   /control/bots/{bot_id}/revoke       → BotInfo with a new token (drift.go)
//	POST   /control/bots/{bot_id}/chat-member  {chat, from, status, rights} → {update_id} (groups.go)
//	GET    /control/                           → {routes:[{method, path, body, returns}]}
func (s *Server) routeControl(mux *http.ServeMux) {
	for _, r := range s.controlRoutes() {
		mux.HandleFunc(r.Method+" "+r.Path, r.handler)
	}
	mux.HandleFunc("GET /control/{$}", s.ctlIndex)
}

// ControlRoute is one route of the control API, as GET /control/ lists it.
type ControlRoute struct {
	Method string `json:"method"`
	Path   string `json:"path"`
	// Body is the JSON request body's shape ("" when none).
	Body string `json:"body,omitempty"`
	// Returns is the shape of the 200 answer.
	Returns string `json:"returns"`

	handler http.HandlerFunc
}

// controlRoutes is the control API's route table: routeControl registers it and GET
// /control/ lists it, so the listing cannot drift from the routes.
func (s *Server) controlRoutes() []ControlRoute {
	return []ControlRoute{
		{"POST", "/control/bots", `{username, first_name}`, "BotInfo {id, token, username, first_name}", s.ctlCreateBot},
		{"GET", "/control/bots", "", "{items:[BotInfo]}", s.ctlListBots},
		{"GET", "/control/bots/{bot_id}", "", "BotInfo + {webhook, violations, commands}", s.withBot(s.ctlGetBot)},
		{"POST", "/control/bots/{bot_id}/messages", `{user:{id, first_name, username}, text}`, "{update_id} (text starting with / is a command)", s.withBot(s.ctlMessage)},
		{"POST", "/control/bots/{bot_id}/block", `{user:{id, first_name}}`, "{update_id} (my_chat_member: kicked)", s.withBot(s.ctlBlock(true))},
		{"POST", "/control/bots/{bot_id}/unblock", `{user:{id, first_name}}`, "{update_id} (my_chat_member: member)", s.withBot(s.ctlBlock(false))},
		{"POST", "/control/bots/{bot_id}/updates", "a raw Update without update_id (e.g. {callback_query:{...}})", "{update_id}", s.withBot(s.ctlPushUpdate)},
		{"POST", "/control/bots/{bot_id}/redeliver", `{update_id}`, "{update_id}", s.withBot(s.ctlRedeliver)},
		{"GET", "/control/bots/{bot_id}/idle", "", "{pending_update_count} once delivered (?timeout_ms=N, 408 on timeout)", s.withBot(s.ctlIdle)},
		{"GET", "/control/bots/{bot_id}/sent", "", "{items:[{chat_id, message_id, text, parse_mode, date, method, photo, document, reply_markup, link_preview_options, disable_notification, protect_content, allow_paid_broadcast}]} (?chat_id=N)", s.withBot(s.ctlSent)},
		{"GET", "/control/bots/{bot_id}/calls", "", "{items:[{method, params, status, date}]} (?method=sendMessage)", s.withBot(s.ctlCalls)},
		{"POST", "/control/bots/{bot_id}/faults", `{method, chat_id, kind, retry_after, migrate_to_chat_id, latency_ms, times}`, "{ok}", s.withBot(s.ctlAddFault)},
		{"DELETE", "/control/bots/{bot_id}/faults", "", "{ok}", s.withBot(s.ctlClearFaults)},
		{"POST", "/control/bots/{bot_id}/tokens", "", "{token} (a new token; the old ones keep working)", s.withBot(s.ctlAddToken)},
		{"POST", "/control/bots/{bot_id}/revoke-token", "", "{token} (@BotFather /revoke: a new token, every other one answers 401)", s.withBot(s.ctlReplaceToken)},
		{"GET", "/control/violations", "", "{per_bot, per_chat, bots:{\"<id>\":{per_bot, per_chat}}}", s.ctlViolations},
		{"POST", "/control/bots/{bot_id}/webhook", `{url}`, "WebhookInfo (the webhook set by hand, no secret; \"\" removes it)", s.withBot(s.ctlSetWebhook)},
		{"POST", "/control/bots/{bot_id}/revoke", "", "BotInfo with the new token (the old one answers 401)", s.withBot(s.ctlRevokeToken)},
		{"POST", "/control/bots/{bot_id}/chat-member", `{chat:{id, type, title, username, is_forum}, from:{id, first_name}, status, rights}`, "{update_id} (my_chat_member of the bot in a group or channel, groups.go)", s.withBot(s.ctlBotChatMember)},
	}
}

// ctlIndex answers GET /control/ with {routes:[ControlRoute]}; it doubles as the
// emulator's health check (botfleet healthcheck --url .../control/).
func (s *Server) ctlIndex(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"routes": s.controlRoutes()})
}

const maxControlBody = 1 << 20

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func ctlError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decodeBody decodes a JSON request body into dst (an empty body is {}).
func decodeBody(r *http.Request, dst any) error {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxControlBody))
	if err != nil {
		return fmt.Errorf("read body: %w", err)
	}
	if len(body) == 0 {
		return nil
	}
	if err := json.Unmarshal(body, dst); err != nil {
		return fmt.Errorf("invalid JSON body: %w", err)
	}
	return nil
}

// withBot resolves {bot_id} and answers 404 for an unknown bot.
func (s *Server) withBot(h func(http.ResponseWriter, *http.Request, *bot)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("bot_id"), 10, 64)
		if err != nil {
			ctlError(w, http.StatusBadRequest, "bot_id must be an integer")
			return
		}
		b := s.bot(id)
		if b == nil {
			ctlError(w, http.StatusNotFound, fmt.Sprintf("unknown bot %d", id))
			return
		}
		h(w, r, b)
	}
}

func (s *Server) ctlCreateBot(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Username  string `json:"username"`
		FirstName string `json:"first_name"`
	}
	if err := decodeBody(r, &req); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s.CreateBot(req.Username, req.FirstName))
}

func (s *Server) ctlListBots(w http.ResponseWriter, _ *http.Request) {
	items := []BotInfo{}
	for _, b := range s.allBots() {
		items = append(items, b.info)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) ctlGetBot(w http.ResponseWriter, _ *http.Request, b *bot) {
	b.mu.Lock()
	resp := struct {
		BotInfo
		Webhook    WebhookInfo  `json:"webhook"`
		Violations Violations   `json:"violations"`
		Commands   []BotCommand `json:"commands"`
	}{BotInfo: b.info, Webhook: b.webhookInfoLocked(), Violations: b.viol,
		Commands: append([]BotCommand{}, b.commands[commandsKey("default", "", "", "")]...)}
	b.mu.Unlock()
	writeJSON(w, http.StatusOK, resp)
}

type updateIDResp struct {
	UpdateID int64 `json:"update_id"`
}

func (s *Server) ctlMessage(w http.ResponseWriter, r *http.Request, b *bot) {
	var req struct {
		User User   `json:"user"`
		Text string `json:"text"`
	}
	if err := decodeBody(r, &req); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	id, err := s.SendText(b.info.ID, req.User, req.Text)
	if err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, updateIDResp{id})
}

func (s *Server) ctlBlock(blocked bool) func(http.ResponseWriter, *http.Request, *bot) {
	return func(w http.ResponseWriter, r *http.Request, b *bot) {
		var req struct {
			User User `json:"user"`
		}
		if err := decodeBody(r, &req); err != nil {
			ctlError(w, http.StatusBadRequest, err.Error())
			return
		}
		id, err := s.setBlocked(b.info.ID, req.User, blocked)
		if err != nil {
			ctlError(w, http.StatusBadRequest, err.Error())
			return
		}
		writeJSON(w, http.StatusOK, updateIDResp{id})
	}
}

func (s *Server) ctlPushUpdate(w http.ResponseWriter, r *http.Request, b *bot) {
	body, err := io.ReadAll(http.MaxBytesReader(nil, r.Body, maxControlBody))
	if err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // keep 64-bit ids exact
	var m map[string]any
	if err := dec.Decode(&m); err != nil || m == nil {
		ctlError(w, http.StatusBadRequest, "body must be a JSON object (an Update)")
		return
	}
	id, err := s.PushUpdate(b.info.ID, m)
	if err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, updateIDResp{id})
}

func (s *Server) ctlRedeliver(w http.ResponseWriter, r *http.Request, b *bot) {
	var req updateIDResp
	if err := decodeBody(r, &req); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := s.Redeliver(b.info.ID, req.UpdateID); err != nil {
		ctlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, req)
}

func (s *Server) ctlIdle(w http.ResponseWriter, r *http.Request, b *bot) {
	timeout := 5 * time.Second
	if v := r.URL.Query().Get("timeout_ms"); v != "" {
		ms, err := strconv.Atoi(v)
		if err != nil || ms < 0 {
			ctlError(w, http.StatusBadRequest, "timeout_ms must be a non-negative integer")
			return
		}
		timeout = time.Duration(ms) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	err := s.WaitIdle(ctx, b.info.ID)
	pending := s.WebhookInfo(b.info.ID).PendingUpdateCount
	if err != nil {
		status := http.StatusRequestTimeout
		if !errors.Is(err, context.DeadlineExceeded) {
			status = http.StatusServiceUnavailable
		}
		writeJSON(w, status, map[string]any{"error": err.Error(), "pending_update_count": pending})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"pending_update_count": pending})
}

type sentItem struct {
	ChatID    int64  `json:"chat_id"`
	MessageID int64  `json:"message_id"`
	Text      string `json:"text"`
	ParseMode string `json:"parse_mode,omitempty"`
	Date      int64  `json:"date"`
	// The send options (SentMessage); reply_markup and link_preview_options
	// are the JSON objects as sent.
	Method              string          `json:"method,omitempty"`
	Photo               string          `json:"photo,omitempty"`
	Document            string          `json:"document,omitempty"`
	ReplyMarkup         json.RawMessage `json:"reply_markup,omitempty"`
	LinkPreviewOptions  json.RawMessage `json:"link_preview_options,omitempty"`
	DisableNotification bool            `json:"disable_notification,omitempty"`
	ProtectContent      bool            `json:"protect_content,omitempty"`
	AllowPaidBroadcast  bool            `json:"allow_paid_broadcast,omitempty"`
}

// rawJSON is s as a JSON value when it is one (nil otherwise).
func rawJSON(s string) json.RawMessage {
	if s == "" || !json.Valid([]byte(s)) {
		return nil
	}
	return json.RawMessage(s)
}

func (s *Server) ctlSent(w http.ResponseWriter, r *http.Request, b *bot) {
	var msgs []SentMessage
	if v := r.URL.Query().Get("chat_id"); v != "" {
		chatID, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			ctlError(w, http.StatusBadRequest, "chat_id must be an integer")
			return
		}
		msgs = s.SentTo(b.info.ID, chatID)
	} else {
		msgs = s.Sent(b.info.ID)
	}
	items := make([]sentItem, 0, len(msgs))
	for _, m := range msgs {
		items = append(items, sentItem{ChatID: m.ChatID, MessageID: m.MessageID, Text: m.Text, ParseMode: m.ParseMode, Date: m.At.Unix(),
			Method: m.Method, Photo: m.Photo, Document: m.Document, ReplyMarkup: rawJSON(m.ReplyMarkup), LinkPreviewOptions: rawJSON(m.LinkPreviewOptions),
			DisableNotification: m.DisableNotification, ProtectContent: m.ProtectContent, AllowPaidBroadcast: m.AllowPaidBroadcast})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

type callItem struct {
	Method string            `json:"method"`
	Params map[string]string `json:"params"`
	Status int               `json:"status"`
	Date   int64             `json:"date"`
	At     time.Time         `json:"at"`
}

func (s *Server) ctlCalls(w http.ResponseWriter, r *http.Request, b *bot) {
	calls := s.Calls(b.info.ID, r.URL.Query().Get("method"))
	items := make([]callItem, 0, len(calls))
	for _, c := range calls {
		items = append(items, callItem{Method: c.Method, Params: c.Params, Status: c.Status, Date: c.At.Unix(), At: c.At})
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

func (s *Server) ctlAddFault(w http.ResponseWriter, r *http.Request, b *bot) {
	var req struct {
		Method          string  `json:"method"`
		ChatID          int64   `json:"chat_id"`
		Kind            string  `json:"kind"`
		RetryAfter      int     `json:"retry_after"`
		MigrateToChatID int64   `json:"migrate_to_chat_id"`
		LatencyMS       int64   `json:"latency_ms"`
		Times           int     `json:"times"`
		Probability     float64 `json:"probability"`
	}
	if err := decodeBody(r, &req); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	if !validKind(FaultKind(req.Kind)) {
		ctlError(w, http.StatusBadRequest, fmt.Sprintf("unknown kind %q", req.Kind))
		return
	}
	if req.Times < 0 || req.LatencyMS < 0 || req.RetryAfter < 0 || req.Probability < 0 || req.Probability > 1 {
		ctlError(w, http.StatusBadRequest, "times, latency_ms and retry_after must not be negative, probability must be in [0, 1]")
		return
	}
	f := Fault{Method: req.Method, ChatID: req.ChatID, Kind: FaultKind(req.Kind), RetryAfter: req.RetryAfter,
		MigrateToChatID: req.MigrateToChatID, Latency: time.Duration(req.LatencyMS) * time.Millisecond, Times: req.Times,
		Probability: req.Probability}
	s.AddFault(b.info.ID, f)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) ctlClearFaults(w http.ResponseWriter, _ *http.Request, b *bot) {
	s.ClearFaults(b.info.ID)
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

func (s *Server) ctlViolations(w http.ResponseWriter, _ *http.Request) {
	resp := struct {
		Violations
		Bots map[string]Violations `json:"bots"`
	}{Bots: map[string]Violations{}}
	for _, b := range s.allBots() {
		b.mu.Lock()
		v := b.viol
		b.mu.Unlock()
		resp.PerBot += v.PerBot
		resp.PerChat += v.PerChat
		resp.PerGroup += v.PerGroup
		resp.Bots[strconv.FormatInt(b.info.ID, 10)] = v
	}
	writeJSON(w, http.StatusOK, resp)
}
