package telegram

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"
)

// apiBot returns a gotgbot.Bot for token that calls s.cfg.APIURL with s.cfg.RequestTimeout.
// No network call is made (DisableTokenCheck): User.Id is parsed from the token.
func (s *Service) apiBot(token string) (*gotgbot.Bot, error) {
	return gotgbot.NewBot(token, &gotgbot.BotOpts{
		DisableTokenCheck: true,
		BotClient: &gotgbot.BaseBotClient{
			Client: *s.http,
			DefaultRequestOpts: &gotgbot.RequestOpts{
				APIURL:  s.cfg.APIURL,
				Timeout: s.cfg.RequestTimeout,
			},
		},
	})
}

// apiBotFor decrypts b's token and returns its gotgbot.Bot.
func (s *Service) apiBotFor(b Bot) (*gotgbot.Bot, error) {
	token, err := s.openToken(b.ID, b.TokenSealed)
	if err != nil {
		return nil, err
	}
	return s.apiBot(token)
}

// sealToken seals a bot token for bot botID with the current key (seal.go).
func (s *Service) sealToken(botID uuid.UUID, token string) ([]byte, error) {
	return s.keys.Seal(botID, token)
}

// openToken decrypts a token sealed for bot botID with any known key (seal.go).
func (s *Service) openToken(botID uuid.UUID, sealed []byte) (string, error) {
	return s.keys.Open(botID, sealed)
}

// newWebhookSecret returns a random secret_token (43 characters of A-Za-z0-9_-, within
// Telegram's 1-256, core.telegram.org/bots/api#setwebhook) and its SHA-256.
func newWebhookSecret() (string, []byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", nil, err
	}
	secret := base64.RawURLEncoding.EncodeToString(b)
	h := sha256.Sum256([]byte(secret))
	return secret, h[:], nil
}
