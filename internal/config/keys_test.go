package config

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// strongAdmin passes the production ADMIN_TOKEN check.
var strongAdmin = strings.Repeat("a", 40)

// keyEncodings are every encoding ENCRYPTION_KEY accepts, applied to key.
func keyEncodings(key []byte) map[string]string {
	return map[string]string{
		"hex":         hex.EncodeToString(key),
		"HEX":         strings.ToUpper(hex.EncodeToString(key)),
		"base64 std":  base64.StdEncoding.EncodeToString(key),
		"base64 url":  base64.URLEncoding.EncodeToString(key),
		"base64 raw":  base64.RawStdEncoding.EncodeToString(key),
		"base64 rawu": base64.RawURLEncoding.EncodeToString(key),
		"padded":      "  " + base64.StdEncoding.EncodeToString(key) + "\n",
	}
}

func TestValidate_DevKeyRefusedInProductionInAnyEncoding(t *testing.T) {
	dev := []byte("dev-encryption-key-32-bytes-long")
	if got, err := decodeKey("K", DevEncryptionKey); err != nil || !bytes.Equal(got, dev) {
		t.Fatalf("DevEncryptionKey decodes to %q, %v", got, err)
	}
	strong := hex.EncodeToString([]byte("0123456789abcdefFEDCBA9876543210"))
	for name, enc := range keyEncodings(dev) {
		t.Run("ENCRYPTION_KEY "+name, func(t *testing.T) {
			env := map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": strongAdmin, "ENCRYPTION_KEY": enc}
			if _, err := Load(envOf(env)); err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEY must be set in production") {
				t.Fatalf("Load = %v, want the development key refused", err)
			}
			env["APP_ENV"] = "development"
			if _, err := Load(envOf(env)); err != nil {
				t.Fatalf("development: %v", err)
			}
		})
		t.Run("ENCRYPTION_KEYS "+name, func(t *testing.T) {
			env := map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": strongAdmin, "ENCRYPTION_KEY": strong,
				"ENCRYPTION_KEYS": base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1, 2}, 16)) + "," + enc}
			_, err := Load(envOf(env))
			if err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEYS entry 2: the development key is refused") {
				t.Fatalf("Load = %v, want ENCRYPTION_KEYS entry 2 refused", err)
			}
			if strings.Contains(err.Error(), enc) || strings.Contains(err.Error(), strong) {
				t.Fatalf("error shows a key: %v", err)
			}
		})
	}
	t.Run("one repeated byte", func(t *testing.T) {
		env := map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": strongAdmin, "ENCRYPTION_KEY": strings.Repeat("00", 32)}
		if _, err := Load(envOf(env)); err == nil || !strings.Contains(err.Error(), "ENCRYPTION_KEY") {
			t.Fatalf("Load = %v, want an all-zero key refused", err)
		}
	})
	t.Run("strong keys pass", func(t *testing.T) {
		env := map[string]string{"APP_ENV": "production", "ADMIN_TOKEN": strongAdmin, "ENCRYPTION_KEY": strong,
			"ENCRYPTION_KEYS": base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{1, 2}, 16))}
		if _, err := Load(envOf(env)); err != nil {
			t.Fatal(err)
		}
	})
}

func TestConfig_OldKeys(t *testing.T) {
	a := bytes.Repeat([]byte{0xa1, 0xb2}, 16)
	b := bytes.Repeat([]byte{0xc3, 0xd4}, 16)
	tests := []struct {
		name    string
		value   string
		want    [][]byte
		wantErr string
	}{
		{"empty", "", nil, ""},
		{"one hex", hex.EncodeToString(a), [][]byte{a}, ""},
		{"two, spaces and empty entries", " " + hex.EncodeToString(a) + " ,, " + base64.URLEncoding.EncodeToString(b) + ",", [][]byte{a, b}, ""},
		{"short", hex.EncodeToString(a) + ",abcd", nil, "ENCRYPTION_KEYS entry 2 must be 32 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Load(envOf(map[string]string{"ENCRYPTION_KEYS": tt.value}))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Load = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := cfg.OldKeys()
			if err != nil || len(got) != len(tt.want) {
				t.Fatalf("OldKeys = %x, %v; want %x", got, err, tt.want)
			}
			for i := range got {
				if !bytes.Equal(got[i], tt.want[i]) {
					t.Fatalf("OldKeys[%d] = %x, want %x", i, got[i], tt.want[i])
				}
			}
			if fps := cfg.OldKeyFingerprints(); len(fps) != len(tt.want) {
				t.Fatalf("OldKeyFingerprints = %v", fps)
			}
		})
	}
}
