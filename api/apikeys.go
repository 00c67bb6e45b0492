package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/tenant"
)

// createAPIKeyRequest is the body of POST /api-keys/.
type createAPIKeyRequest struct {
	Name   string   `json:"name"`
	Scopes []string `json:"scopes"`
}

// apiKeyResponse is an API key as listed: never the key nor its hash. Prefix ("bf_" and 6
// characters) is there to recognise a key; Key is set only in the answer to its creation.
type apiKeyResponse struct {
	ID         uuid.UUID  `json:"id"`
	Name       string     `json:"name"`
	Scopes     []string   `json:"scopes"`
	Prefix     string     `json:"prefix"`
	CreatedAt  time.Time  `json:"created_at"`
	LastUsedAt *time.Time `json:"last_used_at"`
	Key        string     `json:"key,omitempty"`
}

func toAPIKeyResponse(k tenant.APIKey) apiKeyResponse {
	r := apiKeyResponse{ID: k.ID, Name: k.Name, Scopes: k.Scopes, Prefix: k.Prefix, CreatedAt: utc(k.CreatedAt)}
	if !k.LastUsedAt.IsZero() {
		t := utc(k.LastUsedAt)
		r.LastUsedAt = &t
	}
	if r.Scopes == nil {
		r.Scopes = []string{}
	}
	return r
}

// listAPIKeys answers one page of the tenant's live keys, newest first.
func (s *server) listAPIKeys(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	keys, next, err := s.d.Tenants.ListKeys(c.Request().Context(), tid, tenant.KeyFilter{Cursor: cursor, Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(keys, next, toAPIKeyResponse))
}

// createAPIKey issues a key: 201 with the key, shown this once (Cache-Control: no-store).
// tenant.CreateKey validates name and scopes (422) and refuses a live name (409).
func (s *server) createAPIKey(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req createAPIKeyRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	k, key, err := s.d.Tenants.CreateKey(c.Request().Context(), tid, tenant.NewAPIKey{Name: req.Name, Scopes: req.Scopes})
	if err != nil {
		return err
	}
	r := toAPIKeyResponse(k)
	r.Key = key
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, r)
}

// getAPIKey answers one live key; another tenant's or a revoked one is 404.
func (s *server) getAPIKey(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", tenant.ErrKeyNotFound)
	if err != nil {
		return err
	}
	k, err := s.d.Tenants.GetKey(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toAPIKeyResponse(k))
}

// revokeAPIKey revokes a key: 204. The calling key may revoke itself (its next request is
// a 401); the tenant's last admin key cannot be revoked (409 last_admin_key).
func (s *server) revokeAPIKey(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", tenant.ErrKeyNotFound)
	if err != nil {
		return err
	}
	if err := s.d.Tenants.RevokeKey(c.Request().Context(), tid, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}
