package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/database"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/tenant"
)

func TestToEnvelope(t *testing.T) {
	s := &server{log: discardLog()}
	cause := errors.New("secret cause 123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	cases := []struct {
		name    string
		err     error
		status  int
		code    string
		message string // "" = not checked
	}{
		{"invalid", apperr.Invalid("invalid_field", "name must be 1-200 characters"), 422, "invalid_field", "name must be 1-200 characters"},
		{"malformed", apperr.ErrMalformed, 400, "malformed_request", ""},
		{"unauthorized", apperr.ErrUnauthorized, 401, "unauthorized", ""},
		{"not found wrapped", fmt.Errorf("get: %w", telegram.ErrBotNotFound), 404, "bot_not_found", "bot not found"},
		{"conflict", telegram.ErrBotExists, 409, "bot_already_registered", ""},
		{"too large", apperr.New(apperr.KindTooLarge, "too_large", "too large"), 413, "too_large", ""},
		{"rate limited", apperr.New(apperr.KindRateLimited, "rate_limited", "slow down"), 429, "rate_limited", ""},
		{"upstream", telegram.ErrTelegramDown.Wrap(cause), 502, "telegram_unavailable", genericMessages[502]},
		{"unavailable", apperr.ErrUnavailable.Wrap(cause), 503, "dependency_unavailable", genericMessages[503]},
		{"internal kind", apperr.New(apperr.KindInternal, "boom", "details of the boom"), 500, "internal_error", genericMessages[500]},
		{"raw connectivity", fmt.Errorf("query: %w", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}), 503, "dependency_unavailable", genericMessages[503]},
		{"raw error", cause, 500, "internal_error", genericMessages[500]},
		{"echo 404", echo.ErrNotFound, 404, "not_found", "not found"},
		{"echo 405", echo.ErrMethodNotAllowed, 405, "method_not_allowed", "method not allowed"},
		{"echo 413", echo.ErrStatusRequestEntityTooLarge, 413, "payload_too_large", "the request body is too large"},
		{"echo 500 internal", echo.NewHTTPError(500, "leaky").SetInternal(cause), 500, "internal_error", genericMessages[500]},
		{"panic", &panicError{err: cause}, 500, "internal_error", genericMessages[500]},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, body := s.toEnvelope(tc.err)
			if status != tc.status || body.Error.Code != tc.code || (tc.message != "" && body.Error.Message != tc.message) {
				t.Fatalf("got %d %+v", status, body.Error)
			}
			if strings.Contains(body.Error.Message, "secret cause") {
				t.Fatal("the cause leaked to the client")
			}
		})
	}
	_, body := s.toEnvelope(apperr.Invalid("unknown_recipients", "x").WithDetails(map[string]any{"contact_ids": []string{"a"}}))
	if body.Error.Details == nil {
		t.Fatal("details dropped")
	}
	if got := redact("Post \"http://x/bot123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/getMe\""); strings.Contains(got, "AAAA") {
		t.Fatalf("not redacted: %s", got)
	}
}

// TestDatabaseDown: with PostgreSQL unreachable, authentication answers 503, not 401 or 500.
func TestDatabaseDown(t *testing.T) {
	down, err := database.Open("postgres://postgres@" + closedAddr(t) + "/botfleet?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	e := New(Deps{Tenants: tenant.New(down), Log: discardLog()})
	rec := httptestServe(e, request(t, http.MethodGet, "/contacts/", "bf_"+strings.Repeat("A", 43), nil))
	r := response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	if r.Code != http.StatusServiceUnavailable || r.errorCode(t) != "dependency_unavailable" {
		t.Fatalf("%d %s", r.Code, r.Body)
	}
}
