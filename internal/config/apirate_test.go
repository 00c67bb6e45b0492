package config

import (
	"strings"
	"testing"
	"time"
)

func TestLoad_APIRate(t *testing.T) {
	cfg, err := Load(envOf(nil))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIRateLimit != (Rate{20, time.Second}) || cfg.APIRateBurst != 40 {
		t.Fatalf("defaults: API_RATE_LIMIT %v, API_RATE_BURST %d; want 20/s, 40", cfg.APIRateLimit, cfg.APIRateBurst)
	}
	cfg, err = Load(envOf(map[string]string{"API_RATE_LIMIT": "600/min", "API_RATE_BURST": "5"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.APIRateLimit != (Rate{600, time.Minute}) || cfg.APIRateBurst != 5 {
		t.Fatalf("set: %v, %d", cfg.APIRateLimit, cfg.APIRateBurst)
	}
	for _, bad := range []map[string]string{
		{"API_RATE_LIMIT": "0/s"},
		{"API_RATE_LIMIT": "fast"},
		{"API_RATE_BURST": "0"},
		{"API_RATE_BURST": "-3"},
	} {
		_, err := Load(envOf(bad))
		for name := range bad {
			if err == nil || !strings.Contains(err.Error(), name) {
				t.Errorf("%v: error %v, want one naming %s", bad, err, name)
			}
		}
	}
}
