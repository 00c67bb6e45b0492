package telegram

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"

	"github.com/PaulSonOfLars/gotgbot/v2"
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
	token, err := s.openToken(b.TokenSealed)
	if err != nil {
		return nil, err
	}
	return s.apiBot(token)
}

// sealToken encrypts a bot token with AES-256-GCM: nonce || ciphertext.
func (s *Service) sealToken(token string) ([]byte, error) {
	block, err := aes.NewCipher(s.cfg.EncryptionKey)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := io.ReadFull(rand.Reader, nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(nonce, nonce, []byte(token), nil), nil
}

// openToken decrypts a token sealed by sealToken.
func (s *Service) openToken(sealed []byte) (string, error) {
	block, err := aes.NewCipher(s.cfg.EncryptionKey)
	if err != nil {
		return "", err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return "", err
	}
	if len(sealed) < gcm.NonceSize() {
		return "", errors.New("sealed token too short")
	}
	plain, err := gcm.Open(nil, sealed[:gcm.NonceSize()], sealed[gcm.NonceSize():], nil)
	if err != nil {
		return "", fmt.Errorf("open token (wrong ENCRYPTION_KEY?): %w", err)
	}
	return string(plain), nil
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
