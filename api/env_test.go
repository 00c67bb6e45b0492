package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/google/uuid"
	"github.com/hibiken/asynq"
	"github.com/labstack/echo/v4"
	"github.com/redis/go-redis/v9"
	"github.com/uptrace/bun"

	"github.com/botfleet/botfleet/broadcast"
	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/logging"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

const testAdminToken = "test-admin-token-0123456789abcdef"

// testEnv is the REST server on real PostgreSQL and Redis, with tgemu as Telegram, built
// the way cmd builds it.
type testEnv struct {
	t        testing.TB
	e        *echo.Echo
	emu      *tgemu.Server
	db       *bun.DB
	rdb      *redis.Client
	tenants  *tenant.Service
	tg       *telegram.Service
	contacts *contacts.Service
	bc       *broadcast.Service
	logs     *syncBuffer
	// validate checks every response against openapi.yaml (status documented, body schema).
	validate bool
}

// syncBuffer collects logs written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// reset empties the buffer (FuzzRouter reads the logs of one request at a time).
func (s *syncBuffer) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.b.Reset()
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newEnv builds the services and the server. Logs go to a buffer (see assertNotLogged).
func newEnv(t testing.TB) *testEnv {
	t.Helper()
	db := testenv.DB(t)
	rdb := testenv.Redis(t)
	emu := tgemu.NewTest(t, tgemu.Options{})
	logs := &syncBuffer{}
	log := slogTo(io.MultiWriter(logs, testlog.Writer()))
	queue := asynq.NewClientFromRedisClient(rdb)
	cs := contacts.New(db)
	tg, err := telegram.New(telegram.Deps{
		DB: db, Redis: rdb, Queue: queue, Contacts: cs, Log: log,
		Cfg: telegram.Config{
			APIURL: emu.URL(), PublicBaseURL: "http://127.0.0.1:1", RequestTimeout: 5 * time.Second, MaxRetries: 3,
			GlobalRate: config.Rate{N: 100, Per: time.Second}, BotRate: config.Rate{N: 25, Per: time.Second},
			ChatInterval: time.Second, EncryptionKey: make([]byte, 32),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	bc := broadcast.New(broadcast.Deps{DB: db, Queue: queue, Telegram: tg, Contacts: cs, Log: log, MaxRetries: 3})
	te := &testEnv{
		t: t, emu: emu, db: db, rdb: rdb, tenants: tenant.New(db, tenant.WithRedis(rdb), tenant.WithLogger(log)), tg: tg, contacts: cs, bc: bc, logs: logs,
		validate: true,
	}
	t.Cleanup(te.tenants.Close)
	te.e = New(Deps{
		Tenants: te.tenants, Telegram: tg, Contacts: cs, Broadcasts: bc, DB: db, Redis: rdb,
		AdminToken: testAdminToken, Log: log,
	})
	te.e.Use(exposeRoute)
	testlog.RecordSecret("admin_token", testAdminToken)
	return te
}

// routeHeader carries the matched route (c.Path()) to the test's spec validation.
const routeHeader = "X-Test-Route"

// exposeRoute is added by tests only: it reports the matched route in a response header.
func exposeRoute(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		c.Response().Header().Set(routeHeader, c.Path())
		return next(c)
	}
}

// response is a recorded answer.
type response struct {
	Code   int
	Header http.Header
	Body   []byte
}

// decode unmarshals the body into v.
func (r response) decode(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %s: %v", r.Body, err)
	}
}

// errorCode returns the envelope's code (failing when the body is not an envelope).
func (r response) errorCode(t testing.TB) string {
	t.Helper()
	var env errorBody
	if err := json.Unmarshal(r.Body, &env); err != nil || env.Error.Code == "" {
		t.Fatalf("not an error envelope (%d): %s", r.Code, r.Body)
	}
	if env.Error.RequestID == "" || env.Error.RequestID != r.Header.Get(echo.HeaderXRequestID) {
		t.Fatalf("envelope request_id %q, X-Request-ID %q", env.Error.RequestID, r.Header.Get(echo.HeaderXRequestID))
	}
	return env.Error.Code
}

// request builds a request; body is nil, a string or []byte (sent as is) or a value
// marshalled to JSON. key is sent as a Bearer token when not empty.
func request(t testing.TB, method, path, key string, body any) *http.Request {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	}
	if key != "" {
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+key)
	}
	return req
}

// do serves one request and validates the answer against the spec.
func (te *testEnv) do(method, path, key string, body any) response {
	te.t.Helper()
	return te.serve(request(te.t, method, path, key, body))
}

// serve serves req and validates the answer against the spec.
func (te *testEnv) serve(req *http.Request) response {
	te.t.Helper()
	rec := httptest.NewRecorder()
	method := req.Method
	te.e.ServeHTTP(rec, req)
	r := response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	if te.validate {
		checkAgainstSpec(te.t, method, req, r)
	}
	return r
}

// mustStatus fails unless r has status want.
func mustStatus(t testing.TB, r response, want int) {
	t.Helper()
	if r.Code != want {
		t.Fatalf("status %d, want %d: %s", r.Code, want, r.Body)
	}
}

// newTenant creates a tenant through the admin API and returns its id and API key.
func (te *testEnv) newTenant(name string) (uuid.UUID, string) {
	te.t.Helper()
	r := te.do(http.MethodPost, "/admin/v1/tenants/", testAdminToken, map[string]string{"name": name})
	mustStatus(te.t, r, http.StatusCreated)
	var tr tenantResponse
	r.decode(te.t, &tr)
	testlog.RecordSecret("api_key", tr.APIKey)
	return tr.ID, tr.APIKey
}

// newBot creates a bot in the emulator and registers it through the API for key.
func (te *testEnv) newBot(key, name string) (botResponse, tgemu.BotInfo) {
	te.t.Helper()
	info := te.emu.CreateBot("", name)
	r := te.do(http.MethodPost, "/telegram/v1/bots/", key, map[string]any{"name": name, "bot_token": info.Token, "daily_limit": 0})
	mustStatus(te.t, r, http.StatusCreated)
	var b botResponse
	r.decode(te.t, &b)
	return b, info
}

// newContact stores a contact of bot (as an inbound update would) through the contacts service.
func (te *testEnv) newContact(tenantID, botID uuid.UUID, chatID int64) contacts.Contact {
	te.t.Helper()
	c, err := te.contacts.UpsertFromTelegram(context.Background(), te.db, tenantID, botID,
		contacts.Identity{ChatID: chatID, UserID: chatID, Username: "user", FirstName: "Ann", LanguageCode: "en"}, time.Now())
	if err != nil {
		te.t.Fatal(err)
	}
	return c
}

// assertNotLogged fails when any of secrets appears in the logs.
func (te *testEnv) assertNotLogged(secrets ...string) {
	te.t.Helper()
	logs := te.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			te.t.Errorf("a secret was logged: %q", s)
		}
	}
}

// closedAddr returns a loopback address nothing listens on.
func closedAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

var (
	specOnce sync.Once
	specDoc  *openapi3.T
	specErr  error
)

// loadSpec parses and validates the embedded openapi.yaml once.
func loadSpec(t testing.TB) *openapi3.T {
	t.Helper()
	specOnce.Do(func() {
		loader := openapi3.NewLoader()
		specDoc, specErr = loader.LoadFromData(OpenAPISpec)
		if specErr == nil {
			specErr = specDoc.Validate(context.Background())
		}
	})
	if specErr != nil {
		t.Fatalf("openapi.yaml: %v", specErr)
	}
	return specDoc
}

// echoToOpenAPI turns an echo route path ("/bots/:id/") into an OpenAPI one ("/bots/{id}/").
func echoToOpenAPI(p string) string {
	parts := strings.Split(p, "/")
	for i, s := range parts {
		if strings.HasPrefix(s, ":") {
			parts[i] = "{" + s[1:] + "}"
		}
		if s == "*" { // a wildcard route (the asynq web UI): one {path} parameter in the spec
			parts[i] = "{path}"
		}
	}
	return strings.Join(parts, "/")
}

// checkAgainstSpec validates a response against openapi.yaml: the status must be
// documented for the operation and the body must match its schema. Answers without a
// matched route (404/405 from the router) must be error envelopes.
func checkAgainstSpec(t testing.TB, method string, req *http.Request, r response) {
	t.Helper()
	doc := loadSpec(t)
	route := r.Header.Get(routeHeader)
	r.Header.Del(routeHeader)
	if r.Code >= 400 && method != http.MethodHead {
		var env errorBody
		if err := json.Unmarshal(r.Body, &env); err != nil || env.Error.Code == "" || env.Error.Message == "" || env.Error.RequestID == "" {
			t.Errorf("%s %s: %d is not an error envelope: %s", method, req.URL.Path, r.Code, r.Body)
		}
		// One details shape: every 422 names its field (internal/validate).
		if d, _ := env.Error.Details.(map[string]any); r.Code == http.StatusUnprocessableEntity && (d == nil || d["field"] == nil || d["field"] == "") {
			t.Errorf("%s %s: 422 without details.field: %s", method, req.URL.Path, r.Body)
		}
	}
	if route == "" || doc.Paths.Value(echoToOpenAPI(route)) == nil {
		return // no route matched (404/405 from the router)
	}
	pi := doc.Paths.Value(echoToOpenAPI(route))
	op := pi.GetOperation(method)
	if op == nil {
		if r.Code != http.StatusMethodNotAllowed {
			t.Errorf("spec has no %s %s", method, route)
		}
		return
	}
	in := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{
			Request: req,
			Route:   &routers.Route{Spec: doc, Path: echoToOpenAPI(route), PathItem: pi, Method: method, Operation: op},
			Options: &openapi3filter.Options{IncludeResponseStatus: true},
		},
		Status:  r.Code,
		Header:  r.Header,
		Body:    io.NopCloser(bytes.NewReader(r.Body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), in); err != nil {
		t.Errorf("%s %s: response %d does not match openapi.yaml: %v\nbody: %s", method, route, r.Code, err, r.Body)
	}
}

// httptestServe serves req on h without spec validation.
func httptestServe(h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

// discardLog is the logger of tests that do not read their logs: it writes only to
// testlog's file, which `make test` scans for secrets (nowhere when BOTFLEET_TEST_LOG_DIR
// is unset).
func discardLog() *slog.Logger { return testlog.Logger(nil) }

// slogTo is a debug-level JSON logger writing to w.
func slogTo(w io.Writer) *slog.Logger {
	return slog.New(logging.NewHandler(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})))
}
