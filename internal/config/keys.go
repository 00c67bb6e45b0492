package config

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// devKeyBytes is DevEncryptionKey decoded: the development key, whatever its encoding.
var devKeyBytes = []byte("dev-encryption-key-32-bytes-long")

// decodeKey decodes one AES-256 key: 32 bytes as 64 hex characters (either case) or as
// standard or URL-safe base64, padded or not. name is the variable named in errors; the
// value itself never appears in them.
func decodeKey(name, s string) ([]byte, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, fmt.Errorf("%s must be set: 32 bytes as base64 or 64 hex characters", name)
	}
	if b, err := hex.DecodeString(s); err == nil && len(b) == 32 {
		return b, nil
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) == 32 {
			return b, nil
		}
	}
	return nil, fmt.Errorf("%s must be 32 bytes as base64 or 64 hex characters", name)
}

// decodeKeys decodes ENCRYPTION_KEYS: keys separated by commas (spaces around them and
// empty entries ignored), each in an encoding decodeKey accepts.
func decodeKeys(s string) ([][]byte, error) {
	var keys [][]byte
	var errs []error
	n := 0
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		n++
		k, err := decodeKey(fmt.Sprintf("ENCRYPTION_KEYS entry %d", n), part)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		keys = append(keys, k)
	}
	return keys, errors.Join(errs...)
}

// OldKeys decodes ENCRYPTION_KEYS: the keys that bot tokens sealed before a key rotation
// may still be sealed with. They open tokens but never seal new ones (ENCRYPTION_KEY
// does); `botfleet rotate-encryption-key` re-seals every token with ENCRYPTION_KEY, after
// which they can be removed. Nil when ENCRYPTION_KEYS is empty. The error names the
// position of a malformed entry, never its value.
func (c Config) OldKeys() ([][]byte, error) {
	return decodeKeys(c.EncryptionKeys.Reveal())
}

// keyFingerprint is the first 4 bytes of SHA-256 of key, in hex: the key id that
// telegram stores with every sealed token (telegram.KeyIDOf).
func keyFingerprint(key []byte) string {
	h := sha256.Sum256(key)
	return hex.EncodeToString(h[:4])
}

// OldKeyFingerprints are the fingerprints (see KeyFingerprint) of the ENCRYPTION_KEYS
// entries that decode, in order; nil when there are none.
func (c Config) OldKeyFingerprints() []string {
	keys, _ := c.OldKeys()
	var out []string
	for _, k := range keys {
		out = append(out, keyFingerprint(k))
	}
	return out
}

// weakKey reports why key must not be used in production ("" when it may): the
// development key in any encoding, or a key of one repeated byte (all zeros, say).
func weakKey(key []byte) string {
	if bytes.Equal(key, devKeyBytes) {
		return "the development key is refused in production"
	}
	if len(key) > 0 && bytes.Count(key, key[:1]) == len(key) {
		return "a key of one repeated byte is refused in production"
	}
	return ""
}

// validateKeys checks ENCRYPTION_KEY and ENCRYPTION_KEYS: both must decode; in production
// neither may hold the development key (compared as decoded bytes, so no encoding of it
// passes) or a key of one repeated byte.
func (c Config) validateKeys() []error {
	var errs []error
	key, err := c.Key()
	if err != nil {
		errs = append(errs, err)
	} else if why := weakKey(key); why != "" && c.Production() {
		errs = append(errs, fmt.Errorf("ENCRYPTION_KEY must be set in production (%s)", why))
	}
	old, err := c.OldKeys()
	if err != nil {
		errs = append(errs, err)
	}
	if c.Production() {
		for i, k := range old {
			if why := weakKey(k); why != "" {
				errs = append(errs, fmt.Errorf("ENCRYPTION_KEYS entry %d: %s", i+1, why))
			}
		}
	}
	return errs
}
