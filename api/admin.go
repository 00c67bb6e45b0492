package api

import (
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/tenant"
)

// createTenantRequest is the body of POST /admin/v1/tenants/.
type createTenantRequest struct {
	Name string `json:"name"`
}

// tenantResponse is a new tenant with its API key, shown this once.
type tenantResponse struct {
	ID        uuid.UUID `json:"id"`
	Name      string    `json:"name"`
	APIKey    string    `json:"api_key"`
	CreatedAt time.Time `json:"created_at"`
}

// createTenant creates a tenant and its first API key: 201. tenant.Create validates the
// name (422 invalid_field, details.field "name").
func (s *server) createTenant(c echo.Context) error {
	var req createTenantRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	t, key, err := s.d.Tenants.Create(c.Request().Context(), req.Name)
	if err != nil {
		return err
	}
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store") // the key is shown once
	return c.JSON(http.StatusCreated, toTenantResponse(t, key))
}

func toTenantResponse(t tenant.Tenant, key string) tenantResponse {
	return tenantResponse{ID: t.ID, Name: t.Name, APIKey: key, CreatedAt: utc(t.CreatedAt)}
}
