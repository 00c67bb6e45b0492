package telegram

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/google/uuid"
)

// Sealed bot tokens (bots.token_sealed).
//
// Version 1, written by every release since key rotation (issue 6):
//
//	0x01 | key id (4 bytes) | nonce (12 bytes) | AES-256-GCM ciphertext and tag (len(token)+16 bytes)
//
// The key id is the first 4 bytes of SHA-256 of the key: the value that
// config.Config.KeyFingerprint prints (in hex) in the startup log, so an operator can see
// which key sealed a token; 4 bytes of a hash reveal nothing usable about a 256-bit random
// key. The associated data is the version byte, the key id and the bot's bot_app_id (16
// bytes), so a sealed token copied onto another bot's row, or a header edited to name
// another key, fails to open (NIST SP 800-38D: GCM authenticates the associated data).
//
// Version 0 (legacy, before issue 6) is nonce (12 bytes) | ciphertext and tag, with no key
// id and no associated data. It is still read, with every known key, so that an upgrade
// loses no bot; `botfleet rotate-encryption-key` rewrites it as version 1. A legacy blob
// whose random nonce happens to begin with 0x01 and a known key id is told apart by GCM's
// authentication: the version 1 open fails and the legacy open is tried next.
//
// The key id lives inside the blob rather than in a column so that an upgrade needs no
// migration and a row can never hold a key id that disagrees with its ciphertext.
const (
	sealVersion1 = 0x01
	keyIDLen     = 4
	gcmNonceLen  = 12
	gcmTagLen    = 16
	sealV1Header = 1 + keyIDLen
)

// KeyID is the short identifier of a 32-byte AES-256 key stored with each sealed token:
// the first 4 bytes of SHA-256 of the key.
type KeyID [keyIDLen]byte

// String is the key id in hex (8 characters), as config.Config.KeyFingerprint prints it.
func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// KeyIDOf returns the KeyID of key.
func KeyIDOf(key []byte) KeyID {
	h := sha256.Sum256(key)
	var id KeyID
	copy(id[:], h[:keyIDLen])
	return id
}

// Keyring seals bot tokens with its current key (ENCRYPTION_KEY) and opens tokens sealed
// with the current key or any of its older keys (ENCRYPTION_KEYS, accepted for reading
// only). It is safe for concurrent use: it holds key bytes and their AES-GCM ciphers, built
// once (AES key expansion per message was 2 % of a worker's CPU).
type Keyring struct {
	current sealKey
	// keys is every key, the current one first.
	keys []sealKey
}

type sealKey struct {
	id   KeyID
	key  []byte
	aead cipher.AEAD
}

func newSealKey(key []byte) (sealKey, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return sealKey{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return sealKey{}, err
	}
	return sealKey{id: KeyIDOf(key), key: bytes.Clone(key), aead: aead}, nil
}

// NewKeyring returns a Keyring that seals with current and opens with current and old.
// Every key must be 32 bytes (AES-256); a key repeated in old is ignored.
func NewKeyring(current []byte, old ...[]byte) (*Keyring, error) {
	if len(current) != 32 {
		return nil, fmt.Errorf("telegram: encryption key must be 32 bytes, got %d", len(current))
	}
	cur, err := newSealKey(current)
	if err != nil {
		return nil, err
	}
	k := &Keyring{current: cur}
	k.keys = append(k.keys, k.current)
	for i, o := range old {
		if len(o) != 32 {
			return nil, fmt.Errorf("telegram: old encryption key %d must be 32 bytes, got %d", i+1, len(o))
		}
		dup := false
		for _, have := range k.keys {
			if bytes.Equal(have.key, o) {
				dup = true
			}
		}
		if !dup {
			sk, err := newSealKey(o)
			if err != nil {
				return nil, err
			}
			k.keys = append(k.keys, sk)
		}
	}
	return k, nil
}

// CurrentID is the id of the key new tokens are sealed with.
func (k *Keyring) CurrentID() KeyID { return k.current.id }

// sealAAD is the associated data of a version 1 blob: header || bot_app_id.
func sealAAD(header []byte, botID uuid.UUID) []byte {
	aad := make([]byte, 0, len(header)+len(botID))
	aad = append(aad, header...)
	return append(aad, botID[:]...)
}

// Seal encrypts token for the bot botID (its bot_app_id) with the current key, in the
// version 1 format.
func (k *Keyring) Seal(botID uuid.UUID, token string) ([]byte, error) {
	gcm := k.current.aead
	out := make([]byte, sealV1Header+gcmNonceLen, sealV1Header+gcmNonceLen+len(token)+gcmTagLen)
	out[0] = sealVersion1
	copy(out[1:sealV1Header], k.current.id[:])
	nonce := out[sealV1Header:]
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return gcm.Seal(out, nonce, []byte(token), sealAAD(out[:sealV1Header], botID)), nil
}

// Open decrypts a token sealed for botID by Seal with any key of the keyring, or in the
// legacy format. The error names the key id when the blob was sealed with a key the
// keyring does not hold; it never contains key or token material.
func (k *Keyring) Open(botID uuid.UUID, sealed []byte) (string, error) {
	token, _, err := k.open(botID, sealed)
	return token, err
}

// open is Open that also reports whether sealed is already in the current format: version
// 1 with the current key (nothing for rotation to do).
func (k *Keyring) open(botID uuid.UUID, sealed []byte) (token string, current bool, err error) {
	var unknown *KeyID
	if len(sealed) >= sealV1Header+gcmNonceLen+gcmTagLen && sealed[0] == sealVersion1 {
		var id KeyID
		copy(id[:], sealed[1:sealV1Header])
		found := false
		for _, key := range k.keys {
			if key.id != id {
				continue
			}
			found = true
			gcm := key.aead
			nonce := sealed[sealV1Header : sealV1Header+gcmNonceLen]
			plain, err := gcm.Open(nil, nonce, sealed[sealV1Header+gcmNonceLen:], sealAAD(sealed[:sealV1Header], botID))
			if err == nil {
				return string(plain), key.id == k.current.id, nil
			}
		}
		if !found {
			unknown = &id
		}
	}
	// Legacy: nonce || ciphertext, no associated data, any key.
	if len(sealed) >= gcmNonceLen+gcmTagLen {
		for _, key := range k.keys {
			gcm := key.aead
			if plain, err := gcm.Open(nil, sealed[:gcmNonceLen], sealed[gcmNonceLen:], nil); err == nil {
				return string(plain), false, nil
			}
		}
	}
	if unknown != nil {
		return "", false, fmt.Errorf("open token: sealed with key %s, which is neither ENCRYPTION_KEY (%s) nor in ENCRYPTION_KEYS", unknown, k.current.id)
	}
	return "", false, errors.New("open token: no key opens it (wrong ENCRYPTION_KEY or ENCRYPTION_KEYS, or the row was altered)")
}

// SealFor encrypts b for owner with the current encryption key (AES-256-GCM, owner as
// associated data; the format of Keyring.Seal), for secrets kept outside PostgreSQL: the
// stored answers of idempotent requests that show a secret once (api/idempotency.go).
func (s *Service) SealFor(owner uuid.UUID, b []byte) ([]byte, error) {
	return s.keys.Seal(owner, string(b))
}

// OpenFor decrypts what SealFor sealed for owner, with any key of the keyring. Errors: the
// blob was sealed for another owner, tampered with, or with a key the keyring lacks.
func (s *Service) OpenFor(owner uuid.UUID, sealed []byte) ([]byte, error) {
	t, err := s.keys.Open(owner, sealed)
	return []byte(t), err
}
