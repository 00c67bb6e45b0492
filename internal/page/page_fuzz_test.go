package page

import (
	"encoding/base64"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"
)

// FuzzCursor fuzzes the cursor decoders (Parse for (created_at, id) lists, DecodeInt for
// webhook events). Nothing may panic; a refused cursor is ErrBadCursor (422 invalid_cursor);
// an accepted one is exactly what this package writes for its position, and its time lies
// in years 1..9999, which PostgreSQL stores (year 0000 answered 500 on every list before).
// Plain `go test` runs the seeds; `make fuzz` runs it longer.
func FuzzCursor(f *testing.F) {
	enc := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	id := "3f1c2a4e-9b7d-4c1e-8f00-0123456789ab"
	for _, seed := range []string{
		encodeAfter(time.Date(2026, 11, 21, 12, 0, 0, 123456000, time.UTC), uuid.MustParse(id)),
		enc("0000-01-01T00:00:00Z|" + id),
		enc("0001-01-01T00:30:00+01:00|" + id),
		enc("9999-12-31T23:59:59.999999999Z|" + id),
		enc("9999-12-31T23:59:59-01:00|" + id),
		enc("2026-01-01T00:00:00Z|{" + id + "}"),
		enc("2026-01-01T00:00:00Z|urn:uuid:" + id),
		enc("2026-01-01T00:00:00Z|" + id + "|x"),
		enc("2026-01-01T00:00:00Z\x00|" + id),
		enc("\xff\xfe|" + id),
		base64.RawURLEncoding.EncodeToString([]byte("2026-01-01T00:00:00Z|"+id)) + "=",
		EncodeInt(42), enc("i-1"), enc("i0"), enc("i+5"), enc("i99999999999999999999"), enc("i1e400"),
		"", "%%%", "\x00", "a", "AAAA", "_-_-",
	} {
		f.Add(seed)
	}
	minTime := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC)
	maxTime := time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, cursor string) {
		after, limit, err := Parse(cursor, 0)
		switch {
		case err != nil:
			if !errors.Is(err, ErrBadCursor) || after != nil {
				t.Fatalf("Parse(%q) = %v, %v; want ErrBadCursor", cursor, after, err)
			}
		case cursor == "":
			if after != nil || limit != DefaultLimit {
				t.Fatalf("Parse(\"\") = %v, %d", after, limit)
			}
		default:
			if after == nil || after.At.Before(minTime) || !after.At.Before(maxTime) {
				t.Fatalf("Parse(%q) accepted %v, which PostgreSQL cannot store", cursor, after)
			}
			if got := encodeAfter(after.At, after.ID); got != cursor {
				t.Fatalf("Parse(%q) accepted a cursor this package would write as %q", cursor, got)
			}
		}

		n, ok, err := DecodeInt(cursor)
		switch {
		case err != nil:
			if !errors.Is(err, ErrBadCursor) || ok {
				t.Fatalf("DecodeInt(%q) = %d, %v, %v", cursor, n, ok, err)
			}
		case cursor == "":
			if ok {
				t.Fatalf("DecodeInt(\"\") = %d, true", n)
			}
		default:
			if !ok || n <= 0 || EncodeInt(n) != cursor {
				t.Fatalf("DecodeInt(%q) accepted %d", cursor, n)
			}
		}
	})
}
