package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"

	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/internal/page"
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

// decodeJSON reads the body and decodes one JSON value into dst with encoding/json. The
// Content-Type is not checked (a missing one is fine). Empty body, invalid JSON, trailing
// data or a value of the wrong type: 400 malformed_request, naming the field when known.
// Unknown fields are ignored.
func decodeJSON(c echo.Context, dst any) error {
	body, err := readBody(c)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return errEmptyBody
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(dst); err != nil {
		return malformed(err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return apperr.ErrMalformed.WithMessage("the request body must hold a single JSON value")
	}
	return nil
}

// malformed turns a decoding error into a 400 with a message a client can act on.
func malformed(err error) error {
	var (
		typeErr   *json.UnmarshalTypeError
		syntaxErr *json.SyntaxError
	)
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

// pathID parses the UUID path parameter name; one that does not parse names nothing, so
// it is notFound (404), the same as an unknown or another tenant's id.
func pathID(c echo.Context, name string, notFound error) (uuid.UUID, error) {
	id, err := uuid.Parse(c.Param(name))
	if err != nil {
		return uuid.Nil, notFound
	}
	return id, nil
}

// pageQuery reads ?cursor= and ?limit= (an integer 1..page.MaxLimit, else 422
// invalid_limit; absent means page.DefaultLimit, decided by the domain).
func pageQuery(c echo.Context) (cursor string, limit int, err error) {
	cursor = c.QueryParam("cursor")
	if len(cursor) > 512 {
		return "", 0, page.ErrBadCursor
	}
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

// optionalUUIDQuery reads the optional UUID query parameter name (nil when absent; 422 when
// it does not parse).
func optionalUUIDQuery(c echo.Context, name string) (*uuid.UUID, error) {
	raw := c.QueryParam(name)
	if raw == "" {
		return nil, nil
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return nil, invalidField(name, "%s must be a UUID", name)
	}
	return &id, nil
}

// requiredUUID parses the required UUID body field name.
func requiredUUID(name, raw string) (uuid.UUID, error) {
	if raw == "" {
		return uuid.Nil, invalidField(name, "%s is required", name)
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, invalidField(name, "%s must be a UUID", name)
	}
	return id, nil
}

// optionalUUID parses the optional UUID body field name (nil when absent or empty).
func optionalUUID(name string, raw *string) (*uuid.UUID, error) {
	if raw == nil || *raw == "" {
		return nil, nil
	}
	id, err := uuid.Parse(*raw)
	if err != nil {
		return nil, invalidField(name, "%s must be a UUID", name)
	}
	return &id, nil
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
