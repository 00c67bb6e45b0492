package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/botfleet/botfleet/internal/testenv"
)

// TestReadyz_RedisWarnings checks that GET /readyz stays 200 "ready" and lists warnings when
// Redis would evict or lose keys, and has no "warnings" key when Redis is safe.
func TestReadyz_RedisWarnings(t *testing.T) {
	db := testenv.DB(t)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"safe", []string{"--appendonly", "yes", "--maxmemory-policy", "noeviction"}, nil},
		{"evicting without persistence", []string{"--maxmemory-policy", "allkeys-lru"},
			[]string{"redis: maxmemory-policy is allkeys-lru", "redis: no persistence"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.StartRedis(t, tc.args...)
			e := New(Deps{DB: db, Redis: r.Client(), Log: discardLog()})
			rec := httptestServe(e, request(t, http.MethodGet, "/readyz", "", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("%d %s", rec.Code, rec.Body)
			}
			var got readyResponse
			response{Body: rec.Body.Bytes()}.decode(t, &got)
			if got.Status != "ready" || got.Checks["redis"] != "ok" || len(got.Warnings) != len(tc.want) {
				t.Fatalf("%s", rec.Body)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(got.Warnings[i], w) {
					t.Errorf("warning %d = %q, want prefix %q", i, got.Warnings[i], w)
				}
			}
			if tc.want == nil && strings.Contains(rec.Body.String(), "warnings") {
				t.Errorf("body %s has warnings", rec.Body)
			}
		})
	}
}
