package api

import (
	"errors"
	"log/slog"
	"net/http"
	"regexp"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/apperr"
)

// errorBody is the error envelope of every non-2xx answer (DESIGN.md REST conventions).
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
	Details   any    `json:"details,omitempty"`
}

// kindStatus maps apperr kinds to HTTP statuses (DESIGN.md REST conventions).
var kindStatus = map[apperr.Kind]int{
	apperr.KindInternal:     http.StatusInternalServerError,
	apperr.KindInvalid:      http.StatusUnprocessableEntity,
	apperr.KindMalformed:    http.StatusBadRequest,
	apperr.KindUnauthorized: http.StatusUnauthorized,
	apperr.KindNotFound:     http.StatusNotFound,
	apperr.KindConflict:     http.StatusConflict,
	apperr.KindTooLarge:     http.StatusRequestEntityTooLarge,
	apperr.KindRateLimited:  http.StatusTooManyRequests,
	apperr.KindUpstream:     http.StatusBadGateway,
	apperr.KindUnavailable:  http.StatusServiceUnavailable,
	apperr.KindForbidden:    http.StatusForbidden,
}

// httpCodes are the envelope codes of errors raised by echo itself (router, body limit).
var httpCodes = map[int]string{
	http.StatusBadRequest:            "malformed_request",
	http.StatusUnauthorized:          "unauthorized",
	http.StatusForbidden:             "forbidden",
	http.StatusNotFound:              "not_found",
	http.StatusMethodNotAllowed:      "method_not_allowed",
	http.StatusRequestEntityTooLarge: "payload_too_large",
	http.StatusUnsupportedMediaType:  "unsupported_media_type",
	http.StatusUnprocessableEntity:   "invalid_field",
	http.StatusTooManyRequests:       "rate_limited",
	http.StatusInternalServerError:   "internal_error",
	http.StatusBadGateway:            "upstream_error",
	http.StatusServiceUnavailable:    "dependency_unavailable",
}

// genericMessages are what clients read for 5xx: the cause is logged, never returned.
var genericMessages = map[int]string{
	http.StatusInternalServerError: "internal server error",
	http.StatusBadGateway:          "Telegram answered with an error or could not be reached",
	http.StatusServiceUnavailable:  "a dependency is unavailable; retry later",
}

// handleError is echo's HTTPErrorHandler: the only place where errors become statuses.
// *apperr.Error → its Kind's status, Code, Message and Details; connectivity failures
// (apperr.KindOf) → 503; *echo.HTTPError (404 no route, 405, 413 body limit) → its status
// with a snake_case code; anything else → 500. 5xx answers carry a generic message and
// their cause is logged with the request id.
func (s *server) handleError(err error, c echo.Context) {
	if c.Response().Committed {
		return
	}
	status, body := s.toEnvelope(err)
	body.Error.RequestID = reqID(c)
	if status >= 500 {
		attrs := []slog.Attr{
			slog.String("request_id", body.Error.RequestID),
			slog.String("method", c.Request().Method),
			slog.String("route", c.Path()),
			slog.Int("status", status),
			slog.String("code", body.Error.Code),
			slog.String("error", redact(err.Error())),
		}
		var p *panicError
		if errors.As(err, &p) {
			attrs = append(attrs, slog.String("stack", string(p.stack)))
		}
		s.log.LogAttrs(c.Request().Context(), slog.LevelError, "request failed", attrs...)
	}
	var werr error
	if c.Request().Method == http.MethodHead {
		werr = c.NoContent(status)
	} else {
		werr = c.JSON(status, body)
	}
	if werr != nil {
		s.log.Debug("write error response", "request_id", body.Error.RequestID, "error", werr)
	}
}

// toEnvelope classifies err into a status and an envelope (request id not yet set).
func (s *server) toEnvelope(err error) (int, errorBody) {
	var (
		ae *apperr.Error
		he *echo.HTTPError
	)
	switch {
	case errors.As(err, &ae):
		status, ok := kindStatus[ae.Kind]
		if !ok {
			status = http.StatusInternalServerError
		}
		if status >= 500 {
			code := ae.Code
			if ae.Kind == apperr.KindInternal || code == "" {
				code = httpCodes[http.StatusInternalServerError]
			}
			return status, envelope(code, genericMessages[status], nil)
		}
		return status, envelope(ae.Code, ae.Message, ae.Details)
	case errors.As(err, &he):
		if inner, ok := he.Internal.(*echo.HTTPError); ok {
			he = inner
		}
		status := he.Code
		code, ok := httpCodes[status]
		if !ok {
			code = snake(http.StatusText(status))
		}
		if status >= 500 {
			return status, envelope(code, genericOr(status), nil)
		}
		msg := strings.ToLower(http.StatusText(status))
		if m, ok := he.Message.(string); ok && m != "" && m != http.StatusText(status) {
			msg = m
		} else if status == http.StatusRequestEntityTooLarge {
			msg = "the request body is too large"
		}
		return status, envelope(code, msg, nil)
	case apperr.KindOf(err) == apperr.KindUnavailable:
		return http.StatusServiceUnavailable, envelope(apperr.ErrUnavailable.Code, genericMessages[http.StatusServiceUnavailable], nil)
	default:
		return http.StatusInternalServerError, envelope(httpCodes[http.StatusInternalServerError], genericMessages[http.StatusInternalServerError], nil)
	}
}

func envelope(code, message string, details any) errorBody {
	return errorBody{Error: errorDetail{Code: code, Message: message, Details: details}}
}

func genericOr(status int) string {
	if m, ok := genericMessages[status]; ok {
		return m
	}
	return strings.ToLower(http.StatusText(status))
}

// snake turns "Request Entity Too Large" into "request_entity_too_large".
func snake(s string) string {
	if s == "" {
		return "error"
	}
	return strings.ReplaceAll(strings.ToLower(s), " ", "_")
}

// botTokenRe matches Telegram bot tokens ("<bot id>:<35 chars>"), also inside Bot API URLs
// ("/bot<token>/method"), so that an error that quotes a request URL cannot log a token.
var botTokenRe = regexp.MustCompile(`[0-9]{3,}:[A-Za-z0-9_-]{20,}`)

// redact removes bot tokens from a log string.
func redact(s string) string { return botTokenRe.ReplaceAllString(s, "[REDACTED]") }

// Errors raised by the api package itself.
var (
	errEmptyBody     = apperr.New(apperr.KindMalformed, "malformed_request", "the request body is empty; send a JSON object")
	errNotConfigured = errors.New("dependency not configured")
)
