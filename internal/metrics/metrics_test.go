package metrics

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func value(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func TestWebhookBatch(t *testing.T) {
	stored, dup := WebhookUpdates.WithLabelValues(UpdateStored), WebhookUpdates.WithLabelValues(UpdateDuplicate)
	s0, d0 := value(t, stored), value(t, dup)
	WebhookBatch(3, 5, nil)
	WebhookBatch(7, 7, errors.New("insert failed")) // counted by outcome where returned
	if s, d := value(t, stored)-s0, value(t, dup)-d0; s != 3 || d != 2 {
		t.Fatalf("stored +%v, duplicate +%v; want +3, +2", s, d)
	}
}

func TestHandler(t *testing.T) {
	ObserveHTTP(http.MethodGet, "", 404, time.Millisecond)
	ObserveHTTP("X-SCAN-1234", "", 405, time.Millisecond)
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`botfleet_http_request_duration_seconds_count{code="4xx",method="GET",route="unmatched"}`,
		`botfleet_http_request_duration_seconds_count{code="4xx",method="other",route="unmatched"}`, "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// BenchmarkObserveHTTP is the cost the REST server pays per request for its histogram.
func BenchmarkObserveHTTP(b *testing.B) {
	for b.Loop() {
		ObserveHTTP(http.MethodGet, "/contacts/:id/", 200, 3*time.Millisecond)
	}
}
