package page

import (
	"errors"
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
