package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/page"
	"github.com/botfleet/botfleet/internal/validate"
	"github.com/botfleet/botfleet/tenant"
)

// readBody reads the whole request body (already capped by the body limit middleware). A
// body over the limit is echo's 413; any other read failure is 400.
func readBody(c echo.Context) ([]byte, error) {
	b, err := io.ReadAll(c.Request().Body)
	if err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) {
			return nil, he
		}
		return nil, apperr.ErrMalformed.WithMessage("the request body could not be read").Wrap(err)
	}
	return b, nil
}

// decodeJSON reads the body and decodes one JSON object into dst with encoding/json, in
// this order of checks:
//   - a Content-Type that is not JSON (application/json or application/*+json, any
//     parameters): 415 unsupported_media_type; no Content-Type is accepted as JSON, and so
//     is application/x-www-form-urlencoded when the body is a JSON object or array (what
//     `curl -d '{...}'` sends without -H; a real form body is the 415);
//   - over the body limit: 413 payload_too_large (bodyLimit);
//   - empty, not valid UTF-8 (RFC 8259 §8.1), invalid JSON, nested deeper than
//     encoding/json's 10000 levels, trailing data, or a value of the wrong type (a number
//     that does not fit the field's integer type included): 400 malformed_request, with
//     details.field when the field is known;
//   - a field that dst does not have: 400 unknown_field, details.field naming it (so that a
//     typo is not silently ignored).
//
// The values themselves are checked by the domain with internal/validate (422 invalid_field).
func decodeJSON(c echo.Context, dst any) error {
	form, err := requireJSON(c)
	if err != nil {
		return err
	}
	body, err := readBody(c)
	if err != nil {
		return err
	}
	trimmed := bytes.TrimSpace(body)
	if form && (len(trimmed) == 0 || trimmed[0] != '{' && trimmed[0] != '[') {
		return errUnsupportedMediaType
	}
	if len(trimmed) == 0 {
		return errEmptyBody
	}
	if !utf8.Valid(body) {
		return apperr.ErrMalformed.WithMessage("the request body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apperr.ErrMalformed.WithMessage("the request body must hold a single JSON value")
	}
	return nil
}

// errUnsupportedMediaType is the 415 of a body that is declared as something other than JSON
// (the error handler gives it the code unsupported_media_type).
var errUnsupportedMediaType = echo.NewHTTPError(http.StatusUnsupportedMediaType,
	"the request body must be JSON: send Content-Type: application/json (curl: -H 'Content-Type: application/json'), or no Content-Type")

// requireJSON accepts a request without Content-Type, or with a JSON media type
// (application/json, application/*+json; parameters such as charset are ignored). form
// reports application/x-www-form-urlencoded, curl's default for -d, which decodeJSON accepts
// only when the body is JSON. Anything else: errUnsupportedMediaType.
func requireJSON(c echo.Context) (form bool, err error) {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if strings.TrimSpace(ct) == "" {
		return false, nil
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return false, errUnsupportedMediaType
	}
	switch {
	case mt == "application/json", strings.HasPrefix(mt, "application/") && strings.HasSuffix(mt, "+json"):
		return false, nil
	case mt == "application/x-www-form-urlencoded":
		return true, nil
	}
	return false, errUnsupportedMediaType
}

// errUnknownField is the 400 of a body field that the route does not take.
var errUnknownField = apperr.New(apperr.KindMalformed, "unknown_field", "unknown field")

// malformed turns a decoding error into a 400 with a message a client can act on.
func malformed(err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
	if name, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		if f, uerr := strconv.Unquote(name); uerr == nil {
			name = f
		}
		return errUnknownField.WithMessage("the request body has an unknown field %q", name).
			WithDetails(map[string]any{"field": name}).Wrap(err)
	}
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return apperr.ErrMalformed.WithMessage("%s must be %s, not %s", typeErr.Field, jsonType(typeErr.Type.Kind().String()), typeErr.Value).
			WithDetails(map[string]any{"field": typeErr.Field}).Wrap(err)
	case errors.As(err, &typeErr):
		return apperr.ErrMalformed.WithMessage("the request body must be a JSON object, not %s", typeErr.Value).Wrap(err)
	case errors.As(err, &syntaxErr):
		return apperr.ErrMalformed.WithMessage("the request body is not valid JSON (offset %d)", syntaxErr.Offset).Wrap(err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return apperr.ErrMalformed.WithMessage("the request body is truncated JSON").Wrap(err)
	}
	return apperr.ErrMalformed.Wrap(err)
}

// jsonType names a Go kind the way a JSON client thinks of it.
func jsonType(kind string) string {
	switch {
	case strings.HasPrefix(kind, "int"), strings.HasPrefix(kind, "uint"):
		return "an integer"
	case strings.HasPrefix(kind, "float"):
		return "a number"
	case kind == "string":
		return "a string"
	case kind == "bool":
		return "a boolean"
	case kind == "slice", kind == "array":
		return "an array"
	}
	return "an object"
}

// tenantID returns the id of the tenant authenticated by tenantAuth.
func tenantID(c echo.Context) (uuid.UUID, error) {
	t, err := tenant.MustFromContext(c.Request().Context())
	if err != nil {
		return uuid.Nil, err
	}
	return t.ID, nil
}

// pathID parses the UUID path parameter name (canonical form, validate.ParseUUID); one that
// does not parse names nothing, so it is notFound (404 with the resource's code), the same
// as an unknown or another tenant's id.
func pathID(c echo.Context, name string, notFound error) (uuid.UUID, error) {
	id, ok := validate.ParseUUID(c.Param(name))
	if !ok {
		return uuid.Nil, notFound
	}
	return id, nil
}

// pageQuery reads ?cursor= (decoded by the domain with internal/page: 422 invalid_cursor)
// and ?limit= (an integer 1..page.MaxLimit, else 422 invalid_field with details.field
// "limit"; absent means page.DefaultLimit, decided by the domain).
func pageQuery(c echo.Context) (cursor string, limit int, err error) {
	cursor = c.QueryParam("cursor")
	raw := c.QueryParam("limit")
	if raw == "" {
		return cursor, 0, nil
	}
	limit, err = strconv.Atoi(raw)
	if err != nil || limit < 1 || limit > page.MaxLimit {
		return "", 0, page.ErrBadLimit
	}
	return cursor, limit, nil
}

// optionalUUIDQuery reads the optional UUID query parameter name (nil when absent; 422
// invalid_field when it does not parse).
func optionalUUIDQuery(c echo.Context, name string) (*uuid.UUID, error) {
	return validate.OptionalUUID(name, c.QueryParam(name))
}

// timeOrNil is t for JSON, or nil (null) when t is zero.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}

// utc is t in UTC for JSON.
func utc(t time.Time) time.Time { return t.UTC() }

// listPage is the list envelope {"items": [...], "next_cursor": "..."}; items is never null.
type listPage[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor"`
}

// newPage converts items with conv into a listPage.
func newPage[S, T any](items []S, next string, conv func(S) T) listPage[T] {
	out := make([]T, 0, len(items))
	for _, it := range items {
		out = append(out, conv(it))
	}
	return listPage[T]{Items: out, NextCursor: next}
}
