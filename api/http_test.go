package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/tenant"
)

func TestAdmin_CreateTenant(t *testing.T) {
	te := newEnv(t)
	body := map[string]string{"name": "Acme"}

	t.Run("401 missing token", func(t *testing.T) {
		r := te.do(http.MethodPost, "/admin/v1/tenants/", "", body)
		mustStatus(t, r, http.StatusUnauthorized)
		if r.errorCode(t) != "unauthorized" || r.Header.Get(echo.HeaderWWWAuthenticate) == "" {
			t.Fatalf("%s %v", r.Body, r.Header)
		}
	})
	t.Run("401 wrong token", func(t *testing.T) {
		for _, tok := range []string{"wrong", testAdminToken + "x", testAdminToken[:len(testAdminToken)-1]} {
			r := te.do(http.MethodPost, "/admin/v1/tenants/", tok, body)
			mustStatus(t, r, http.StatusUnauthorized)
		}
	})
	t.Run("401 other scheme", func(t *testing.T) {
		req := request(t, http.MethodPost, "/admin/v1/tenants/", "", body)
		req.Header.Set("Authorization", "Basic "+testAdminToken)
		mustStatus(t, te.serve(req), http.StatusUnauthorized)
	})
	t.Run("403 tenant key", func(t *testing.T) {
		_, key := te.newTenant("someone")
		r := te.do(http.MethodPost, "/admin/v1/tenants/", key, body)
		if r.Code != http.StatusForbidden || r.errorCode(t) != "forbidden" {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
		// A key of the right shape that is not a tenant's stays 401.
		r = te.do(http.MethodPost, "/admin/v1/tenants/", tenant.KeyPrefix+strings.Repeat("A", 43), body)
		if r.Code != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
	})
	t.Run("201", func(t *testing.T) {
		r := te.do(http.MethodPost, "/admin/v1/tenants", testAdminToken, body) // no trailing slash
		mustStatus(t, r, http.StatusCreated)
		var got tenantResponse
		r.decode(t, &got)
		if got.ID == uuid.Nil || got.Name != "Acme" || !strings.HasPrefix(got.APIKey, "bf_") || got.CreatedAt.IsZero() {
			t.Fatalf("%+v", got)
		}
		if r.Header.Get(echo.HeaderCacheControl) != "no-store" {
			t.Error("the API key response must not be cached")
		}
		// The new key works.
		mustStatus(t, te.do(http.MethodGet, "/contacts/", got.APIKey, nil), http.StatusOK)
		te.assertNotLogged(got.APIKey, testAdminToken)
	})
	t.Run("422 name", func(t *testing.T) {
		for _, b := range []any{map[string]string{}, map[string]string{"name": "  "}, map[string]string{"name": strings.Repeat("x", 201)}} {
			r := te.do(http.MethodPost, "/admin/v1/tenants/", testAdminToken, b)
			mustStatus(t, r, http.StatusUnprocessableEntity)
			if code := r.errorCode(t); code != "invalid_field" {
				t.Fatalf("code %s", code)
			}
		}
	})
}

func TestTenantAuth(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("Acme")
	id := uuid.NewString()
	routes := []struct{ method, path string }{
		{http.MethodPost, "/telegram/v1/bots/"},
		{http.MethodGet, "/telegram/v1/bots/"},
		{http.MethodGet, "/telegram/v1/bots/" + id + "/"},
		{http.MethodPut, "/telegram/v1/bots/" + id + "/"},
		{http.MethodDelete, "/telegram/v1/bots/" + id + "/"},
		{http.MethodGet, "/telegram/v1/webhook-events/"},
		{http.MethodGet, "/contacts/"},
		{http.MethodGet, "/contacts/" + id + "/"},
		{http.MethodPost, "/messages/"},
		{http.MethodGet, "/messages/" + id + "/"},
		{http.MethodPost, "/broadcast/"},
		{http.MethodGet, "/broadcast/"},
		{http.MethodGet, "/broadcast/" + id + "/"},
		{http.MethodPost, "/broadcast/" + id + "/cancel/"},
	}
	for _, rt := range routes {
		for name, k := range map[string]string{"none": "", "wrong": "bf_" + strings.Repeat("A", 43), "garbage": "x", "admin": testAdminToken, "truncated": key[:len(key)-1]} {
			r := te.do(rt.method, rt.path, k, "{}")
			if r.Code != http.StatusUnauthorized || r.errorCode(t) != "unauthorized" {
				t.Errorf("%s %s with %s key: %d %s", rt.method, rt.path, name, r.Code, r.Body)
			}
		}
	}
	req := request(t, http.MethodGet, "/contacts/", "", nil)
	req.Header.Set("Authorization", "bearer "+key) // the scheme is case-insensitive
	mustStatus(t, te.serve(req), http.StatusOK)
}

func TestMalformedJSON(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("Acme")
	id := uuid.NewString()
	routes := []struct{ method, path, key string }{
		{http.MethodPost, "/admin/v1/tenants/", testAdminToken},
		{http.MethodPost, "/telegram/v1/bots/", key},
		{http.MethodPut, "/telegram/v1/bots/" + id + "/", key},
		{http.MethodPost, "/messages/", key},
		{http.MethodPost, "/broadcast/", key},
	}
	bodies := map[string]string{
		"syntax":   `{"name": `,
		"not json": `name=x`,
		"empty":    ``,
		"array":    `[]`,
		"string":   `"x"`,
		"trailing": `{} {}`,
	}
	// A value of the wrong type, in a field each route takes (an unknown field is 400 unknown_field).
	wrongTypes := map[string]string{
		"/admin/v1/tenants/": `{"name": 1}`,
		"/telegram/v1/bots/": `{"name": "x", "bot_token": 2, "daily_limit": "x"}`,
		"/messages/":         `{"text": 3, "bot_app_id": 5}`,
		"/broadcast/":        `{"recipients": "x", "platform": []}`,
	}
	for _, rt := range routes {
		bodies["wrong types"] = wrongTypes[rt.path]
		if bodies["wrong types"] == "" {
			bodies["wrong types"] = `{"daily_limit": "x"}` // PUT /telegram/v1/bots/{id}/
		}
		for name, body := range bodies {
			r := te.do(rt.method, rt.path, rt.key, body)
			if r.Code != http.StatusBadRequest || r.errorCode(t) != "malformed_request" {
				t.Errorf("%s %s, %s body: %d %s", rt.method, rt.path, name, r.Code, r.Body)
			}
		}
	}
	// Missing Content-Type is fine when the body is JSON.
	req := request(t, http.MethodPost, "/admin/v1/tenants/", testAdminToken, `{"name":"x"}`)
	req.Header.Del("Content-Type")
	mustStatus(t, te.serve(req), http.StatusCreated)
}

func TestRouting(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("Acme")

	t.Run("404 unknown route", func(t *testing.T) {
		for _, p := range []string{"/nope", "/nope/", "/telegram/v1/", "/contacts/a/b/c/", "/admin/v1/tenants/x/"} {
			r := te.do(http.MethodGet, p, key, nil)
			if r.Code != http.StatusNotFound || r.errorCode(t) != "not_found" {
				t.Errorf("GET %s: %d %s", p, r.Code, r.Body)
			}
		}
	})
	t.Run("405", func(t *testing.T) {
		r := te.do(http.MethodDelete, "/contacts/", key, nil)
		if r.Code != http.StatusMethodNotAllowed || r.errorCode(t) != "method_not_allowed" {
			t.Fatalf("%d %s", r.Code, r.Body)
		}
	})
	t.Run("without trailing slash", func(t *testing.T) {
		for _, p := range []string{"/contacts", "/contacts?limit=5", "/telegram/v1/webhook-events", "/broadcast", "/telegram/v1/bots", "/healthz", "/healthz/"} {
			r := te.do(http.MethodGet, p, key, nil)
			if r.Code != http.StatusOK {
				t.Errorf("GET %s: %d %s", p, r.Code, r.Body)
			}
		}
		r := te.do(http.MethodGet, "/contacts/"+uuid.NewString(), key, nil)
		if r.Code != http.StatusNotFound || r.errorCode(t) != "contact_not_found" {
			t.Errorf("%d %s", r.Code, r.Body)
		}
	})
	t.Run("404 path id not a uuid", func(t *testing.T) {
		for _, p := range []string{"/contacts/nope/", "/messages/nope/", "/broadcast/nope/", "/telegram/v1/bots/nope/", "/telegram/v1/bots/1/"} {
			r := te.do(http.MethodGet, p, key, nil)
			if r.Code != http.StatusNotFound {
				t.Errorf("GET %s: %d %s", p, r.Code, r.Body)
			}
		}
		for _, p := range []string{"/broadcast/nope/cancel/", "/telegram/v1/webhooks/nope/"} {
			r := te.do(http.MethodPost, p, key, "{}")
			if r.Code != http.StatusNotFound {
				t.Errorf("POST %s: %d %s", p, r.Code, r.Body)
			}
		}
	})
	t.Run("422 query", func(t *testing.T) {
		cases := map[string]string{
			"/contacts/?limit=0":                            "invalid_field",
			"/contacts/?limit=201":                          "invalid_field",
			"/contacts/?limit=abc":                          "invalid_field",
			"/contacts/?limit=-1":                           "invalid_field",
			"/contacts/?bot_app_id=nope":                    "invalid_field",
			"/contacts/?cursor=nope":                        "invalid_cursor",
			"/telegram/v1/webhook-events/?bot_app_id=1":     "invalid_field",
			"/telegram/v1/webhook-events/?limit=1000":       "invalid_field",
			"/broadcast/?limit=0":                           "invalid_field",
			"/telegram/v1/bots/?limit=x":                    "invalid_field",
			"/contacts/?cursor=" + strings.Repeat("a", 600): "invalid_cursor",
		}
		for p, code := range cases {
			r := te.do(http.MethodGet, p, key, nil)
			if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != code {
				t.Errorf("GET %s: %d %s, want 422 %s", p, r.Code, r.Body, code)
			}
		}
		mustStatus(t, te.do(http.MethodGet, "/contacts/?limit=200", key, nil), http.StatusOK)
	})
	t.Run("request id", func(t *testing.T) {
		req := request(t, http.MethodGet, "/nope", "", nil)
		req.Header.Set(echo.HeaderXRequestID, "abc-123")
		r := te.serve(req)
		if r.Header.Get(echo.HeaderXRequestID) != "abc-123" || r.errorCode(t) != "not_found" {
			t.Fatalf("%v %s", r.Header, r.Body)
		}
		req = request(t, http.MethodGet, "/healthz", "", nil)
		req.Header.Set(echo.HeaderXRequestID, "bad id\twith spaces")
		r = te.serve(req)
		if _, err := uuid.Parse(r.Header.Get(echo.HeaderXRequestID)); err != nil {
			t.Fatalf("request id %q", r.Header.Get(echo.HeaderXRequestID))
		}
	})
}

func TestPanicRecovered(t *testing.T) {
	logs := &syncBuffer{}
	e := New(Deps{Log: slogTo(logs)})
	e.GET("/boom/", func(echo.Context) error { panic("kaboom with a secret 123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") })
	rec := httptestServe(e, request(t, http.MethodGet, "/boom", "", nil))
	r := response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	mustStatus(t, r, http.StatusInternalServerError)
	if code := r.errorCode(t); code != "internal_error" || strings.Contains(string(r.Body), "kaboom") {
		t.Fatalf("%s", r.Body)
	}
	l := logs.String()
	if !strings.Contains(l, "kaboom") || !strings.Contains(l, r.Header.Get(echo.HeaderXRequestID)) || !strings.Contains(l, "stack") {
		t.Fatalf("panic not logged with its request id: %s", l)
	}
	if strings.Contains(l, "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA") {
		t.Fatal("a bot token was logged")
	}
}
