package tgemu

import (
	"fmt"
	"net/http"
)

// Token management, as @BotFather does it (core.telegram.org/bots/features#botfather:
// /token, /revoke). A bot may have several valid tokens in the emulator, so that tests can
// rotate a token while the old one still works, then revoke the old one.

// AddToken issues a new token for bot botID and returns it; the bot's other tokens keep
// working until RevokeToken. BotInfo.Token (Bot, control API) becomes the new token.
func (s *Server) AddToken(botID int64) (string, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return "", err
	}
	token := fmt.Sprintf("%d:%s", botID, randomSecret(35))
	if s.opts.OnSecret != nil {
		s.opts.OnSecret("bot_token", token)
	}
	s.mu.Lock()
	s.byToken[token] = b
	s.mu.Unlock()
	b.mu.Lock()
	b.info.Token = token
	b.mu.Unlock()
	return token, nil
}

// RevokeToken makes token invalid: every Bot API call with it is answered 401
// "Unauthorized", as Telegram does for a token revoked in @BotFather. It fails for a token
// the emulator does not know (or already revoked).
func (s *Server) RevokeToken(token string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.byToken[token]; !ok {
		return fmt.Errorf("tgemu: unknown token")
	}
	delete(s.byToken, token)
	return nil
}

// ReplaceToken is @BotFather's /revoke: it issues a new token for bot botID and revokes
// every other token of the bot at once. It returns the new token.
func (s *Server) ReplaceToken(botID int64) (string, error) {
	b, err := s.botOrErr(botID)
	if err != nil {
		return "", err
	}
	token, err := s.AddToken(botID)
	if err != nil {
		return "", err
	}
	s.mu.Lock()
	for t, tb := range s.byToken {
		if tb == b && t != token {
			delete(s.byToken, t)
		}
	}
	s.mu.Unlock()
	return token, nil
}

// ctlReplaceToken answers POST /control/bots/{bot_id}/revoke-token: ReplaceToken.
func (s *Server) ctlReplaceToken(w http.ResponseWriter, _ *http.Request, b *bot) {
	token, err := s.ReplaceToken(b.info.ID)
	if err != nil {
		ctlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token})
}

// ctlAddToken answers POST /control/bots/{bot_id}/tokens: AddToken.
func (s *Server) ctlAddToken(w http.ResponseWriter, _ *http.Request, b *bot) {
	token, err := s.AddToken(b.info.ID)
	if err != nil {
		ctlError(w, http.StatusNotFound, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": token})
}
