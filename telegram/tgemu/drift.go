package tgemu

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"
)

// Drift and revocation: what happens to a bot outside the platform (someone calls
// setWebhook by hand, the owner revokes the token in @BotFather), for the health checks'
// tests and demos.

// SetWebhookByHand sets the bot's webhook to rawURL as a setWebhook call made by someone
// else would (no secret_token, max_connections 40, allowed_updates kept): deliveries go to
// rawURL from now on. An empty rawURL removes the webhook (deleteWebhook). Errors: unknown
// bot, a URL that is not http(s).
func (s *Server) SetWebhookByHand(botID int64, rawURL string) (WebhookInfo, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return WebhookInfo{}, err
	}
	if rawURL != "" {
		u, err := url.Parse(rawURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return WebhookInfo{}, fmt.Errorf("tgemu: %q is not an http(s) URL", rawURL)
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.hookURL, b.hookSecret, b.hookMaxConn = rawURL, "", 40
	if rawURL == "" {
		b.hookMaxConn = 0
	}
	b.hookGen++
	b.backoff, b.nextAttempt = 0, time.Time{}
	b.lastErrDate, b.lastErrMsg = 0, ""
	b.notifyLocked()
	s.log.Info("tgemu: webhook set by hand", "bot_id", botID)
	return b.webhookInfoLocked(), nil
}

// RevokeBotToken revokes the bot's token as @BotFather's /revoke does: the old token answers
// 401 Unauthorized from now on, and the returned BotInfo carries the new token, which works.
// The bot's webhook, chats and commands are kept. (The token-rotation work adds
// ReplaceToken with the same effect; once both are merged one of them can go.)
func (s *Server) RevokeBotToken(botID int64) (BotInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.bots[botID]
	if b == nil {
		return BotInfo{}, fmt.Errorf("tgemu: unknown bot %d", botID)
	}
	delete(s.byToken, b.info.Token)
	b.info.Token = fmt.Sprintf("%d:%s", botID, randomSecret(35))
	if s.opts.OnSecret != nil {
		s.opts.OnSecret("bot_token", b.info.Token)
	}
	s.byToken[b.info.Token] = b
	s.log.Info("tgemu: token revoked", "bot_id", botID)
	return b.info, nil
}

// webhookIP is getWebhookInfo's ip_address: the webhook host when it is an IP address (the
// emulator resolves no names).
func webhookIP(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(u.Hostname()); ip != nil {
		return ip.String()
	}
	return ""
}

// ctlSetWebhook: POST /control/bots/{bot_id}/webhook {url} (SetWebhookByHand).
func (s *Server) ctlSetWebhook(w http.ResponseWriter, r *http.Request, b *bot) {
	var req struct {
		URL string `json:"url"`
	}
	if err := decodeBody(r, &req); err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	wi, err := s.SetWebhookByHand(b.info.ID, req.URL)
	if err != nil {
		ctlError(w, http.StatusBadRequest, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, wi)
}

// ctlRevokeToken: POST /control/bots/{bot_id}/revoke (RevokeBotToken).
func (s *Server) ctlRevokeToken(w http.ResponseWriter, _ *http.Request, b *bot) {
	info, err := s.RevokeBotToken(b.info.ID)
	if err != nil {
		ctlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, info)
}
