package page

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

type row struct {
	at time.Time
	id uuid.UUID
}

func TestTrimThenParse(t *testing.T) {
	base := time.Date(2026, 11, 21, 12, 0, 0, 123456789, time.UTC)
	rows := []row{{base, uuid.New()}, {base.Add(-time.Second), uuid.New()}, {base.Add(-2 * time.Second), uuid.New()}}
	key := func(r row) (time.Time, uuid.UUID) { return r.at, r.id }

	got, next := Trim(rows, 3, key)
	if len(got) != 3 || next != "" {
		t.Fatalf("Trim(3 rows, limit 3) = %d rows, cursor %q; want 3 and no cursor", len(got), next)
	}
	got, next = Trim(rows, 2, key)
	if len(got) != 2 || next == "" {
		t.Fatalf("Trim(3 rows, limit 2) = %d rows, cursor %q; want 2 and a cursor", len(got), next)
	}
	after, limit, err := Parse(next, 2)
	if err != nil || limit != 2 || after == nil || !after.At.Equal(rows[1].at) || after.ID != rows[1].id {
		t.Fatalf("Parse(next) = %+v, %d, %v; want the position of row 1", after, limit, err)
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func TestParse(t *testing.T) {
	tests := []struct {
		name      string
		cursor    string
		limit     int
		wantLimit int
		wantErr   error
	}{
		{"first page, default limit", "", 0, DefaultLimit, nil},
		{"max limit", "", MaxLimit, MaxLimit, nil},
		{"over max", "", MaxLimit + 1, 0, ErrBadLimit},
		{"negative", "", -1, 0, ErrBadLimit},
		{"not base64", "%%%", 10, 0, ErrBadCursor},
		{"no separator", "aGVsbG8", 10, 0, ErrBadCursor},
		{"int cursor", EncodeInt(5), 10, 0, ErrBadCursor},
		{"year 0000 (PostgreSQL has no year 0)", b64("0000-01-01T00:00:00Z|3f1c2a4e-9b7d-4c1e-8f00-0123456789ab"), 10, 0, ErrBadCursor},
		{"offset landing in year 0000", b64("0001-01-01T00:30:00+01:00|3f1c2a4e-9b7d-4c1e-8f00-0123456789ab"), 10, 0, ErrBadCursor},
		{"uuid in braces", b64("2026-01-01T00:00:00Z|{3f1c2a4e-9b7d-4c1e-8f00-0123456789ab}"), 10, 0, ErrBadCursor},
		{"too long", strings.Repeat("A", MaxCursorLen+4), 10, 0, ErrBadCursor},
		{"valid", b64("2026-01-01T00:00:00Z|3f1c2a4e-9b7d-4c1e-8f00-0123456789ab"), 10, 10, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			after, limit, err := Parse(tt.cursor, tt.limit)
			if !errors.Is(err, tt.wantErr) || limit != tt.wantLimit || (tt.cursor == "" && after != nil) {
				t.Fatalf("Parse(%q, %d) = %v, %d, %v; want limit %d, err %v", tt.cursor, tt.limit, after, limit, err, tt.wantLimit, tt.wantErr)
			}
		})
	}
}

func TestUUIDCursor(t *testing.T) {
	id := uuid.New()
	got, err := DecodeUUID(EncodeUUID(id))
	if err != nil || got == nil || *got != id {
		t.Fatalf("round trip: %v %v", got, err)
	}
	if got, err := DecodeUUID(""); got != nil || err != nil {
		t.Fatalf("empty: %v %v", got, err)
	}
	upper := base64.RawURLEncoding.EncodeToString([]byte("u" + strings.ToUpper(id.String())))
	for _, bad := range []string{"x", EncodeInt(5), encodeAfter(time.Now(), id), upper, EncodeUUID(id) + "=", strings.Repeat("A", MaxCursorLen+1)} {
		if _, err := DecodeUUID(bad); err != ErrBadCursor {
			t.Errorf("DecodeUUID(%q): %v", bad, err)
		}
	}
}
