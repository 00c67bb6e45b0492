package api

import (
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/telegram"
)

// createLinkTokenRequest is the body of POST /contacts/link-tokens/.
type createLinkTokenRequest struct {
	ExternalID string `json:"external_id"`
	BotAppID   string `json:"bot_app_id"`
	// TTLSeconds is the token's lifetime, 60-604800 (default 900).
	TTLSeconds *int64 `json:"ttl_seconds"`
}

// linkTokenResponse is a created link token (shown once).
type linkTokenResponse struct {
	Token     string    `json:"token"`
	DeepLink  string    `json:"deep_link"`
	ExpiresAt time.Time `json:"expires_at"`
}

// createLinkToken creates a single-use link token: 201 {token, deep_link, expires_at}.
func (s *server) createLinkToken(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req createLinkTokenRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	botID, err := validate.UUID("bot_app_id", req.BotAppID)
	if err != nil {
		return err
	}
	nl := telegram.NewLinkToken{ExternalID: req.ExternalID, BotID: botID}
	if req.TTLSeconds != nil {
		if err := validate.IntRange("ttl_seconds", *req.TTLSeconds, int64(telegram.MinLinkTokenTTL.Seconds()), int64(telegram.MaxLinkTokenTTL.Seconds())); err != nil {
			return err
		}
		nl.TTL = time.Duration(*req.TTLSeconds) * time.Second
	}
	lt, err := s.d.Telegram.CreateLinkToken(c.Request().Context(), tid, nl)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, linkTokenResponse{Token: lt.Token, DeepLink: lt.DeepLink, ExpiresAt: lt.ExpiresAt.UTC()})
}

// verificationCodeRequest is the body of POST /contacts/verification-codes/.
type verificationCodeRequest struct {
	ExternalID string `json:"external_id"`
	BotAppID   string `json:"bot_app_id"`
	Username   string `json:"username"`
}

// verificationCodeResponse answers a sent code (never the code itself).
type verificationCodeResponse struct {
	ExpiresAt time.Time `json:"expires_at"`
}

// createVerificationCode sends a 6-digit code to the contact: 201 {expires_at}.
func (s *server) createVerificationCode(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req verificationCodeRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	botID, err := validate.UUID("bot_app_id", req.BotAppID)
	if err != nil {
		return err
	}
	exp, err := s.d.Telegram.RequestVerificationCode(c.Request().Context(), tid,
		telegram.VerificationRequest{ExternalID: req.ExternalID, BotID: botID, Username: req.Username})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, verificationCodeResponse{ExpiresAt: exp.UTC()})
}

// verifyRequest is the body of POST /contacts/verify/.
type verifyRequest struct {
	ExternalID string `json:"external_id"`
	Code       string `json:"code"`
}

// verifyCode checks a code: 200 with the contact, now carrying external_id.
func (s *server) verifyCode(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req verifyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ct, err := s.d.Telegram.VerifyCode(c.Request().Context(), tid, req.ExternalID, req.Code)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toContactResponse(ct))
}
