package api

import (
	"bufio"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"

	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/tenant"
)

// createdKey is the answer to POST /api-keys/.
type createdKey struct {
	apiKeyResponse
	Key string `json:"key"`
}

// newKey creates a key through the API with admin key admin; it fails the test unless 201.
func (te *testEnv) newKey(admin, name string, scopes ...string) createdKey {
	te.t.Helper()
	r := te.do(http.MethodPost, "/api-keys/", admin, map[string]any{"name": name, "scopes": scopes})
	mustStatus(te.t, r, http.StatusCreated)
	var k createdKey
	r.decode(te.t, &k)
	testlog.RecordSecret("api_key", k.Key)
	return k
}

// scopeDetails is the details of a 403 insufficient_scope.
type scopeDetails struct {
	Error struct {
		Code    string `json:"code"`
		Details struct {
			RequiredScope string   `json:"required_scope"`
			Scopes        []string `json:"scopes"`
		} `json:"details"`
	} `json:"error"`
}

// wantScope checks that r is a 403 insufficient_scope naming scope.
func wantScope(t *testing.T, desc string, r response, scope string) {
	t.Helper()
	var d scopeDetails
	_ = json.Unmarshal(r.Body, &d)
	if r.Code != http.StatusForbidden || d.Error.Code != "insufficient_scope" || d.Error.Details.RequiredScope != scope || len(d.Error.Details.Scopes) == 0 {
		t.Errorf("%s: %d %s, want 403 insufficient_scope needing %q", desc, r.Code, r.Body, scope)
	}
}

func TestAPIKeys_Lifecycle(t *testing.T) {
	te := newEnv(t)
	_, def := te.newTenant("acme")

	// The tenant's key: "default", every scope, never its secret in a list.
	var pg listPage[apiKeyResponse]
	r := te.do(http.MethodGet, "/api-keys/", def, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &pg)
	if len(pg.Items) != 1 || pg.Items[0].Name != "default" || !slices.Equal(pg.Items[0].Scopes, tenant.AllScopes) ||
		pg.Items[0].Prefix != def[:9] || pg.Items[0].LastUsedAt == nil {
		t.Fatalf("default key: %s", r.Body)
	}
	defID := pg.Items[0].ID

	// Create: 201 with the key, once; no-store.
	r = te.do(http.MethodPost, "/api-keys/", def, map[string]any{"name": "dashboard", "scopes": []string{"read"}})
	mustStatus(t, r, http.StatusCreated)
	if cc := r.Header.Get(echo.HeaderCacheControl); cc != "no-store" {
		t.Errorf("Cache-Control %q", cc)
	}
	var reader createdKey
	r.decode(t, &reader)
	testlog.RecordSecret("api_key", reader.Key)
	if !strings.HasPrefix(reader.Key, tenant.KeyPrefix) || reader.Prefix != reader.Key[:9] || !slices.Equal(reader.Scopes, []string{"read"}) || reader.LastUsedAt != nil {
		t.Fatalf("created: %s", r.Body)
	}
	writer := te.newKey(def, "ci", "write")
	if !slices.Equal(writer.Scopes, []string{"read", "write"}) {
		t.Fatalf("write key scopes: %v", writer.Scopes)
	}

	// Bad input.
	for _, c := range []struct {
		name  string
		body  any
		want  int
		code  string
		field string
	}{
		{"taken name", map[string]any{"name": "dashboard", "scopes": []string{"read"}}, http.StatusConflict, "api_key_name_taken", "name"},
		{"empty name", map[string]any{"name": "", "scopes": []string{"read"}}, http.StatusUnprocessableEntity, "invalid_field", "name"},
		{"201 characters", map[string]any{"name": strings.Repeat("n", 201), "scopes": []string{"read"}}, http.StatusUnprocessableEntity, "invalid_field", "name"},
		{"no scopes", map[string]any{"name": "x"}, http.StatusUnprocessableEntity, "invalid_field", "scopes"},
		{"empty scopes", map[string]any{"name": "x", "scopes": []string{}}, http.StatusUnprocessableEntity, "invalid_field", "scopes"},
		{"unknown scope", map[string]any{"name": "x", "scopes": []string{"root"}}, http.StatusUnprocessableEntity, "invalid_field", "scopes"},
		{"unknown field", map[string]any{"name": "x", "scopes": []string{"read"}, "expires_at": "2030-01-01T00:00:00Z"}, http.StatusBadRequest, "unknown_field", "expires_at"},
		{"scopes not an array", map[string]any{"name": "x", "scopes": "read"}, http.StatusBadRequest, "malformed_request", "scopes"},
	} {
		r := te.do(http.MethodPost, "/api-keys/", def, c.body)
		var env struct {
			Error struct {
				Code    string         `json:"code"`
				Details map[string]any `json:"details"`
			} `json:"error"`
		}
		_ = json.Unmarshal(r.Body, &env)
		if r.Code != c.want || env.Error.Code != c.code || env.Error.Details["field"] != c.field {
			t.Errorf("%s: %d %s, want %d %s field %s", c.name, r.Code, r.Body, c.want, c.code, c.field)
		}
	}

	// Get; list shows three keys and no secret.
	r = te.do(http.MethodGet, "/api-keys/"+reader.ID.String()+"/", def, nil)
	mustStatus(t, r, http.StatusOK)
	r = te.do(http.MethodGet, "/api-keys/?limit=2", def, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &pg)
	if len(pg.Items) != 2 || pg.NextCursor == "" || pg.Items[0].Name != "ci" {
		t.Fatalf("first page: %s", r.Body)
	}
	r2 := te.do(http.MethodGet, "/api-keys/?limit=2&cursor="+pg.NextCursor, def, nil)
	mustStatus(t, r2, http.StatusOK)
	for _, body := range [][]byte{r.Body, r2.Body} {
		for _, secret := range []string{def, reader.Key, writer.Key, `"key"`, "hash"} {
			if strings.Contains(string(body), secret) {
				t.Fatalf("a list shows %q: %s", secret, body)
			}
		}
	}

	// Scopes: a read key reads and is refused writes; a write key writes but does not
	// manage keys.
	mustStatus(t, te.do(http.MethodGet, "/telegram/v1/bots/", reader.Key, nil), http.StatusOK)
	wantScope(t, "read key, POST /telegram/v1/bots/", te.do(http.MethodPost, "/telegram/v1/bots/", reader.Key, map[string]any{"name": "x", "bot_token": "1:x"}), tenant.ScopeWrite)
	wantScope(t, "read key, GET /api-keys/", te.do(http.MethodGet, "/api-keys/", reader.Key, nil), tenant.ScopeAdmin)
	wantScope(t, "write key, POST /api-keys/", te.do(http.MethodPost, "/api-keys/", writer.Key, map[string]any{"name": "mine", "scopes": []string{"admin"}}), tenant.ScopeAdmin)
	wantScope(t, "write key, DELETE /api-keys/{id}/", te.do(http.MethodDelete, "/api-keys/"+writer.ID.String()+"/", writer.Key, nil), tenant.ScopeAdmin)
	r = te.do(http.MethodPost, "/contacts/bulk-tags/", writer.Key, map[string]any{"filter": map[string]any{}, "add": []string{"vip"}})
	mustStatus(t, r, http.StatusOK)

	// Revoke: 204, then 401 for the key, 404 for its id.
	mustStatus(t, te.do(http.MethodDelete, "/api-keys/"+reader.ID.String()+"/", def, nil), http.StatusNoContent)
	if r := te.do(http.MethodGet, "/telegram/v1/bots/", reader.Key, nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("revoked key: %d %s", r.Code, r.Body)
	}
	for _, m := range []string{http.MethodGet, http.MethodDelete} {
		r := te.do(m, "/api-keys/"+reader.ID.String()+"/", def, nil)
		if r.Code != http.StatusNotFound || r.errorCode(t) != "api_key_not_found" {
			t.Fatalf("%s revoked key: %d %s", m, r.Code, r.Body)
		}
	}
	if r := te.do(http.MethodGet, "/api-keys/not-a-uuid/", def, nil); r.Code != http.StatusNotFound {
		t.Fatalf("bad id: %d", r.Code)
	}

	// The last admin key cannot be revoked; with a second one, a key may revoke itself.
	r = te.do(http.MethodDelete, "/api-keys/"+defID.String()+"/", def, nil)
	if r.Code != http.StatusConflict || r.errorCode(t) != "last_admin_key" {
		t.Fatalf("last admin key: %d %s", r.Code, r.Body)
	}
	admin2 := te.newKey(def, "ops", "admin")
	mustStatus(t, te.do(http.MethodDelete, "/api-keys/"+defID.String()+"/", def, nil), http.StatusNoContent)
	if r := te.do(http.MethodGet, "/api-keys/", def, nil); r.Code != http.StatusUnauthorized {
		t.Fatalf("self-revoked key: %d %s", r.Code, r.Body)
	}
	r = te.do(http.MethodGet, "/api-keys/", admin2.Key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &pg)
	names := []string{}
	for _, k := range pg.Items {
		names = append(names, k.Name)
	}
	if !slices.Equal(names, []string{"ops", "ci"}) {
		t.Fatalf("live keys: %v", names)
	}
	r = te.do(http.MethodDelete, "/api-keys/"+admin2.ID.String()+"/", admin2.Key, nil)
	if r.Code != http.StatusConflict || r.errorCode(t) != "last_admin_key" {
		t.Fatalf("last admin key revoking itself: %d %s", r.Code, r.Body)
	}
	te.assertNotLogged(def, reader.Key, writer.Key, admin2.Key)
}

// nonTenantRoutes are the routes not under tenantRoute (no API key scopes): operations,
// the operator's, and Telegram's webhook. A new route outside the tenant API must be
// added here, or TestScopes_EveryRoute fails.
var nonTenantRoutes = []string{"/healthz", "/readyz", "/openapi.yaml", "/metrics", "/admin/", "/telegram/v1/webhooks/"}

func isTenantRoute(path string) bool {
	for _, p := range nonTenantRoutes {
		if path == p || strings.HasPrefix(path, p) && strings.HasSuffix(p, "/") {
			return false
		}
	}
	return true
}

// fillParams replaces the route's :params with random UUIDs.
func fillParams(path string) string {
	parts := strings.Split(path, "/")
	for i, p := range parts {
		if strings.HasPrefix(p, ":") {
			parts[i] = uuid.NewString()
		}
	}
	return strings.Join(parts, "/")
}

// TestScopes_EveryRoute walks the router: a read key is refused (403 insufficient_scope,
// "write") on every tenant route that is not GET/HEAD, before its handler runs (the empty
// body would otherwise be a 400/404/422); a write key is refused ("admin") on every route
// of /api-keys/; both pass the scope check of the routes their scope allows.
func TestScopes_EveryRoute(t *testing.T) {
	te := newEnv(t) // every answer is checked against openapi.yaml: the 403 is documented
	_, admin := te.newTenant("acme")
	read := te.newKey(admin, "reader", "read")
	write := te.newKey(admin, "writer", "write")

	checked := 0
	for _, route := range routeKeys(te.e) {
		method, path, _ := strings.Cut(route, " ")
		if !isTenantRoute(path) {
			continue
		}
		p := fillParams(path)
		keyRoute := strings.HasPrefix(path, keyAdminPrefix)
		call := func(key string) response {
			return te.serve(request(t, method, p, key, map[string]any{}))
		}
		switch {
		case keyRoute:
			wantScope(t, "read key, "+route, call(read.Key), tenant.ScopeAdmin)
			wantScope(t, "write key, "+route, call(write.Key), tenant.ScopeAdmin)
		case method == http.MethodGet || method == http.MethodHead:
			for _, k := range []string{read.Key, write.Key} {
				if r := call(k); r.Code == http.StatusForbidden || r.Code == http.StatusUnauthorized {
					t.Errorf("%s: a readable route answers %d to a read key: %s", route, r.Code, r.Body)
				}
			}
		default:
			wantScope(t, "read key, "+route, call(read.Key), tenant.ScopeWrite)
			if r := call(write.Key); r.Code == http.StatusForbidden || r.Code == http.StatusUnauthorized {
				t.Errorf("%s: answers %d to a write key: %s", route, r.Code, r.Body)
			}
		}
		checked++
	}
	if checked < 20 {
		t.Fatalf("only %d tenant routes checked", checked)
	}
	t.Logf("checked %d tenant routes", checked)
}

// TestOpenAPI_InsufficientScopeDocumented: every tenant operation that a key may lack the
// scope for (any method but GET and HEAD, and everything under /api-keys/) lists the 403
// InsufficientScope response in openapi.yaml.
func TestOpenAPI_InsufficientScopeDocumented(t *testing.T) {
	doc := loadSpec(t)
	e := New(Deps{Log: discardLog()})
	for _, route := range routeKeys(e) {
		method, path, _ := strings.Cut(route, " ")
		if !isTenantRoute(path) || (method == http.MethodGet || method == http.MethodHead) && !strings.HasPrefix(path, keyAdminPrefix) {
			continue
		}
		pi := doc.Paths.Value(echoToOpenAPI(path))
		if pi == nil || pi.GetOperation(method) == nil {
			t.Errorf("%s: not in openapi.yaml", route)
			continue
		}
		r := pi.GetOperation(method).Responses.Value("403")
		if r == nil || r.Ref != "#/components/responses/InsufficientScope" {
			t.Errorf("%s: openapi.yaml does not list 403 InsufficientScope", route)
		}
	}
}

// TestScopes_WalkFindsNewRoutes proves the walk covers routes added later: a new POST
// route under tenantRoute refuses a read key without any code of its own.
func TestScopes_WalkFindsNewRoutes(t *testing.T) {
	te := newEnv(t)
	te.validate = false
	_, admin := te.newTenant("acme")
	read := te.newKey(admin, "reader", "read")
	s := &server{d: Deps{Tenants: te.tenants}, log: discardLog()}
	reached := false
	te.e.POST("/contacts/:id/notes/", func(c echo.Context) error { reached = true; return c.NoContent(http.StatusNoContent) }, s.tenantRoute)
	wantScope(t, "read key, new route", te.do(http.MethodPost, "/contacts/"+uuid.NewString()+"/notes/", read.Key, nil), tenant.ScopeWrite)
	if reached {
		t.Fatal("the handler ran")
	}
	mustStatus(t, te.do(http.MethodPost, "/contacts/"+uuid.NewString()+"/notes/", admin, nil), http.StatusNoContent)
}

// TestAPIKeys_RevokeAcrossServers: two API servers (two echo instances, each with its own
// tenant.Service, as two processes) on one PostgreSQL and Redis. Server B caches the key;
// revoking it on A makes B refuse it within a second. A third server whose Redis is
// unreachable refuses it within a second too (its cache lives 1 s).
func TestAPIKeys_RevokeAcrossServers(t *testing.T) {
	te := newEnv(t) // server A
	te.validate = false
	newServer := func(rdb redis.UniversalClient) http.Handler {
		svc := tenant.New(te.db, tenant.WithRedis(rdb), tenant.WithLogger(discardLog()))
		t.Cleanup(svc.Close)
		return New(Deps{Tenants: svc, DB: te.db, Log: discardLog()})
	}
	b := newServer(te.rdb)
	dead := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { dead.Close() })
	c := newServer(dead)
	get := func(h http.Handler, key string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, request(t, http.MethodGet, "/api-keys/", key, nil))
		return rec.Code
	}
	_, admin := te.newTenant("acme")
	k := te.newKey(admin, "laptop", "admin")
	// Warm both caches; B's subscription is up within milliseconds, after which its entries
	// live 10 s: only the pub/sub message can make B refuse within a second.
	for _, h := range []http.Handler{b, c} {
		if code := get(h, k.Key); code != http.StatusOK {
			t.Fatalf("before: %d", code)
		}
	}
	time.Sleep(300 * time.Millisecond)
	for _, h := range []http.Handler{b, c} {
		if code := get(h, k.Key); code != http.StatusOK {
			t.Fatalf("before: %d", code)
		}
	}
	mustStatus(t, te.do(http.MethodDelete, "/api-keys/"+k.ID.String()+"/", admin, nil), http.StatusNoContent)
	revoked := time.Now()
	pending := map[string]http.Handler{"B": b, "C (Redis down)": c}
	for len(pending) > 0 {
		for name, h := range pending {
			if code := get(h, k.Key); code == http.StatusUnauthorized {
				t.Logf("server %s refuses the key %v after the revocation", name, time.Since(revoked))
				delete(pending, name)
			} else if code != http.StatusOK {
				t.Fatalf("server %s: %d", name, code)
			}
		}
		if time.Since(revoked) > time.Second+100*time.Millisecond {
			t.Fatalf("still accepted %v after the revocation by %v", time.Since(revoked), pending)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code := get(te.e, k.Key); code != http.StatusUnauthorized {
		t.Fatalf("server A: %d", code)
	}
}

// TestAccessLog_KeyName: the access log names the request's API key (its name, never the
// key).
func TestAccessLog_KeyName(t *testing.T) {
	te := newEnv(t)
	_, admin := te.newTenant("acme")
	k := te.newKey(admin, "grafana-reader", "read")
	te.logs.reset()
	mustStatus(t, te.do(http.MethodGet, "/contacts/", k.Key, nil), http.StatusOK)
	found := false
	sc := bufio.NewScanner(strings.NewReader(te.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if json.Unmarshal(sc.Bytes(), &line) != nil || line["msg"] != "http request" {
			continue
		}
		if line["api_key_name"] == "grafana-reader" && line["route"] == "/contacts/" {
			found = true
		}
	}
	if !found {
		t.Fatalf("no access log line with api_key_name: %s", te.logs.String())
	}
	te.assertNotLogged(k.Key, admin)
}
