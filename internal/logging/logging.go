// Package logging builds botfleet's slog loggers (LOG_FORMAT json or text, LOG_LEVEL) and
// carries the identifiers of the work in hand on the context, so that every log line of a
// request or a task says which one it belongs to: request_id (REST requests), task_id and
// task_type (asynq tasks), tenant_id and bot_app_id once known.
//
// The REST server and the worker start a scope per request or task (NewContext); code
// that learns the tenant or the bot adds it (Add); Handler writes the scope's attributes
// into every record logged with that context (the *Context logging methods, or LogAttrs).
// Errors are logged under one key, KeyError ("error").
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"

	"github.com/hibiken/asynq"
)

// Standard keys (CONVENTIONS.md §12: snake_case, named after the field's standard term).
const (
	KeyError     = "error"
	KeyRequestID = "request_id"
	KeyTaskID    = "task_id"
	KeyTaskType  = "task_type"
	KeyTenantID  = "tenant_id"
	KeyBotAppID  = "bot_app_id"
)

// Formats of LOG_FORMAT.
const (
	FormatJSON = "json"
	FormatText = "text"
)

// New returns a logger writing records of level and above to w in format (FormatJSON or
// FormatText; anything else is text), through Handler.
func New(w io.Writer, format string, level slog.Leveler) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler
	if format == FormatJSON {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	return slog.New(NewHandler(h))
}

// scope is the mutable set of attributes of one request or task.
type scope struct {
	mu    sync.Mutex
	attrs []slog.Attr
}

type scopeKey struct{}

// NewContext returns ctx with a new scope holding attrs: the attributes of one request or
// task. Add puts more into it later, visible to every holder of a context derived from the
// returned one (including the callers up the stack, such as an access log).
func NewContext(ctx context.Context, attrs ...slog.Attr) context.Context {
	return context.WithValue(ctx, scopeKey{}, &scope{attrs: slices.Clone(attrs)})
}

// Add sets attrs in ctx's scope (an attribute replaces one of the same key). Without a scope
// (no NewContext up the chain) it does nothing. The scope's slice is copied on write, so
// that Handler reads it without holding the lock.
func Add(ctx context.Context, attrs ...slog.Attr) {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	next := slices.Clone(s.attrs)
	for _, a := range attrs {
		i := slices.IndexFunc(next, func(b slog.Attr) bool { return b.Key == a.Key })
		if i >= 0 {
			next[i] = a
		} else {
			next = append(next, a)
		}
	}
	s.attrs = next
}

// current returns ctx's scope attributes, not to be modified (nil without a scope).
func current(ctx context.Context) []slog.Attr {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attrs
}

// Attrs returns a copy of ctx's scope attributes (nil without a scope).
func Attrs(ctx context.Context) []slog.Attr {
	s, _ := ctx.Value(scopeKey{}).(*scope)
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.attrs)
}

// Handler adds the attributes of the record's context scope (NewContext, Add) to every
// record, except those whose key the record or the logger (With) already has.
type Handler struct {
	inner slog.Handler
	// keys are the top-level keys the logger carries already (WithAttrs before any group).
	keys    []string
	grouped bool
}

// NewHandler wraps inner.
func NewHandler(inner slog.Handler) *Handler { return &Handler{inner: inner} }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if ctx == nil || h.grouped {
		return h.inner.Handle(ctx, r)
	}
	cloned := false
	for _, a := range current(ctx) {
		if slices.Contains(h.keys, a.Key) || recordHas(r, a.Key) {
			continue
		}
		if !cloned {
			r = r.Clone() // AddAttrs must not write into an array the caller shares
			cloned = true
		}
		r.AddAttrs(a)
	}
	return h.inner.Handle(ctx, r)
}

// recordHas reports whether r has a top-level attribute key.
func recordHas(r slog.Record, key string) bool {
	found := false
	r.Attrs(func(a slog.Attr) bool {
		found = a.Key == key
		return !found
	})
	return found
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	keys := slices.Clone(h.keys)
	if !h.grouped {
		for _, a := range attrs {
			keys = append(keys, a.Key)
		}
	}
	return &Handler{inner: h.inner.WithAttrs(attrs), keys: keys, grouped: h.grouped}
}

// WithGroup implements slog.Handler. Records of a grouped logger carry no scope
// attributes (they would land inside the group).
func (h *Handler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return &Handler{inner: h.inner.WithGroup(name), keys: h.keys, grouped: true}
}

// TaskMiddleware is an asynq middleware that runs each task in a logging scope holding its
// task_id and task_type (asynq.GetTaskID), so that the task's log lines carry them.
func TaskMiddleware(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		ctx = NewContext(ctx, slog.String(KeyTaskID, id), slog.String(KeyTaskType, t.Type()))
		return next.ProcessTask(ctx, t)
	})
}

// ParseLevel parses LOG_LEVEL: debug, info, warn or error (any case, with an optional
// offset such as "info+2", as slog.Level.UnmarshalText accepts).
func ParseLevel(s string) (slog.Level, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return 0, fmt.Errorf("want debug, info, warn or error, got %q", s)
	}
	return l, nil
}
