package api

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/callbacks"
)

// Event callbacks (issue 9): the tenant's webhook endpoints and their deliveries. The
// service is the telegram Service's (telegram.Deps.Callbacks).

// createWebhookEndpointRequest is the body of POST /webhook-endpoints/.
type createWebhookEndpointRequest struct {
	URL         string   `json:"url"`
	Events      []string `json:"events"`
	Description string   `json:"description"`
}

// updateWebhookEndpointRequest is the body of PATCH (or PUT) /webhook-endpoints/{id}/:
// fields absent (or null) are left as they are.
type updateWebhookEndpointRequest struct {
	URL         *string  `json:"url"`
	Events      []string `json:"events"`
	Description *string  `json:"description"`
	Enabled     *bool    `json:"enabled"`
}

// webhookEndpointResponse is an endpoint: never its secret, except Secret in the answer
// to its creation and to rotate-secret (shown once).
type webhookEndpointResponse struct {
	ID                      uuid.UUID  `json:"id"`
	URL                     string     `json:"url"`
	Events                  []string   `json:"events"`
	Description             string     `json:"description"`
	Enabled                 bool       `json:"enabled"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
	Secret                  string     `json:"secret,omitempty"`
}

func toWebhookEndpointResponse(e callbacks.Endpoint) webhookEndpointResponse {
	r := webhookEndpointResponse{ID: e.ID, URL: e.URL, Events: e.Events, Description: e.Description, Enabled: e.Enabled,
		CreatedAt: utc(e.CreatedAt), UpdatedAt: utc(e.UpdatedAt)}
	if len(e.PreviousSecretSealed) > 0 && time.Now().Before(e.PreviousSecretExpiresAt) {
		r.PreviousSecretExpiresAt = timeOrNil(e.PreviousSecretExpiresAt)
	}
	if r.Events == nil {
		r.Events = []string{}
	}
	return r
}

// webhookAttemptResponse is one POST of a delivery.
type webhookAttemptResponse struct {
	AttemptedAt  time.Time `json:"attempted_at"`
	Status       string    `json:"status"`
	ResponseCode *int      `json:"response_code"`
	Error        string    `json:"error"`
	DurationMS   int64     `json:"duration_ms"`
}

// webhookDeliveryResponse is one event sent to one endpoint, with its attempts.
type webhookDeliveryResponse struct {
	ID            uuid.UUID                `json:"id"`
	EventID       uuid.UUID                `json:"event_id"`
	EventType     string                   `json:"event_type"`
	Data          json.RawMessage          `json:"data"`
	Status        string                   `json:"status"`
	AttemptCount  int                      `json:"attempt_count"`
	NextAttemptAt *time.Time               `json:"next_attempt_at"`
	CreatedAt     time.Time                `json:"created_at"`
	CompletedAt   *time.Time               `json:"completed_at"`
	Attempts      []webhookAttemptResponse `json:"attempts"`
}

func toWebhookDeliveryResponse(d callbacks.Delivery) webhookDeliveryResponse {
	r := webhookDeliveryResponse{ID: d.ID, EventID: d.EventID, EventType: d.EventType, Data: d.Data, Status: d.Status,
		AttemptCount: d.Attempts, CreatedAt: utc(d.CreatedAt), CompletedAt: timeOrNil(d.CompletedAt),
		Attempts: make([]webhookAttemptResponse, 0, len(d.AttemptList))}
	if d.Status == callbacks.StatusPending {
		r.NextAttemptAt = timeOrNil(d.NextAttemptAt)
	}
	for _, a := range d.AttemptList {
		ar := webhookAttemptResponse{AttemptedAt: utc(a.AttemptedAt), Status: callbacks.StatusFailed, Error: a.Error, DurationMS: a.DurationMS}
		if a.Succeeded {
			ar.Status = callbacks.StatusSucceeded
		}
		if a.ResponseCode != 0 {
			code := a.ResponseCode
			ar.ResponseCode = &code
		}
		r.Attempts = append(r.Attempts, ar)
	}
	return r
}

// createWebhookEndpoint stores an endpoint: 201 with its signing secret, shown this once
// (Cache-Control: no-store). 422 invalid_field (url: not http(s), or a private address
// unless ALLOW_PRIVATE_CALLBACKS; events; description); 409 too_many_webhook_endpoints.
func (s *server) createWebhookEndpoint(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	var req createWebhookEndpointRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ep, secret, err := s.d.Telegram.Callbacks().Create(c.Request().Context(), tid,
		callbacks.NewEndpoint{URL: req.URL, Events: req.Events, Description: req.Description})
	if err != nil {
		return err
	}
	r := toWebhookEndpointResponse(ep)
	r.Secret = secret
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusCreated, r)
}

// listWebhookEndpoints answers one page of the tenant's endpoints, newest first.
func (s *server) listWebhookEndpoints(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	eps, next, err := s.d.Telegram.Callbacks().List(c.Request().Context(), tid, callbacks.ListFilter{Cursor: cursor, Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(eps, next, toWebhookEndpointResponse))
}

// getWebhookEndpoint answers one endpoint; another tenant's is 404.
func (s *server) getWebhookEndpoint(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", callbacks.ErrNotFound)
	if err != nil {
		return err
	}
	ep, err := s.d.Telegram.Callbacks().Get(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toWebhookEndpointResponse(ep))
}

// updateWebhookEndpoint changes the fields given (PATCH and PUT alike): 200 with the endpoint.
func (s *server) updateWebhookEndpoint(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", callbacks.ErrNotFound)
	if err != nil {
		return err
	}
	var req updateWebhookEndpointRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	ep, err := s.d.Telegram.Callbacks().Update(c.Request().Context(), tid, id,
		callbacks.UpdateEndpoint{URL: req.URL, Events: req.Events, Description: req.Description, Enabled: req.Enabled})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, toWebhookEndpointResponse(ep))
}

// deleteWebhookEndpoint deletes an endpoint and its deliveries: 204.
func (s *server) deleteWebhookEndpoint(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", callbacks.ErrNotFound)
	if err != nil {
		return err
	}
	if err := s.d.Telegram.Callbacks().Delete(c.Request().Context(), tid, id); err != nil {
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// rotateWebhookSecret gives the endpoint a new secret: 200 with it, shown this once; the
// old one still signs (a second v1= entry) for 24 h.
func (s *server) rotateWebhookSecret(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", callbacks.ErrNotFound)
	if err != nil {
		return err
	}
	ep, secret, err := s.d.Telegram.Callbacks().RotateSecret(c.Request().Context(), tid, id)
	if err != nil {
		return err
	}
	r := toWebhookEndpointResponse(ep)
	r.Secret = secret
	c.Response().Header().Set(echo.HeaderCacheControl, "no-store")
	return c.JSON(http.StatusOK, r)
}

// listWebhookDeliveries answers one page of an endpoint's deliveries, newest first, each
// with its attempts.
func (s *server) listWebhookDeliveries(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", callbacks.ErrNotFound)
	if err != nil {
		return err
	}
	cursor, limit, err := pageQuery(c)
	if err != nil {
		return err
	}
	ds, next, err := s.d.Telegram.Callbacks().ListDeliveries(c.Request().Context(), tid, id, callbacks.ListFilter{Cursor: cursor, Limit: limit})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, newPage(ds, next, toWebhookDeliveryResponse))
}

// retryWebhookDelivery makes a delivery due now: 202 with it (the worker POSTs it).
func (s *server) retryWebhookDelivery(c echo.Context) error {
	tid, err := tenantID(c)
	if err != nil {
		return err
	}
	id, err := pathID(c, "id", callbacks.ErrNotFound)
	if err != nil {
		return err
	}
	did, err := pathID(c, "delivery_id", callbacks.ErrDeliveryNotFound)
	if err != nil {
		return err
	}
	d, err := s.d.Telegram.Callbacks().Retry(c.Request().Context(), tid, id, did)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusAccepted, toWebhookDeliveryResponse(d))
}
