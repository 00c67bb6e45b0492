package telegram

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/config"
	"github.com/botfleet/botfleet/internal/testenv"
	"github.com/botfleet/botfleet/internal/testlog"
	"github.com/botfleet/botfleet/telegram/tgemu"
	"github.com/botfleet/botfleet/tenant"
)

var (
	keyA = bytes.Repeat([]byte{0xa1, 0xa2}, 16)
	keyB = bytes.Repeat([]byte{0xb1, 0xb2}, 16)
	keyC = bytes.Repeat([]byte{0xc1, 0xc2}, 16)
)

const sealTestToken = "123456789:AAEhBP0av28OTAKLEtNbGXr6pC3vhcJxy8Q"

// sealLegacy seals token exactly as releases before issue 6 did: nonce || ciphertext, no
// associated data.
func sealLegacy(t testing.TB, key []byte, token string) []byte {
	t.Helper()
	block, err := aes.NewCipher(key)
	if err != nil {
		t.Fatal(err)
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		t.Fatal(err)
	}
	nonce := make([]byte, gcm.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	return gcm.Seal(nonce, nonce, []byte(token), nil)
}

func mustKeyring(t testing.TB, current []byte, old ...[]byte) *Keyring {
	t.Helper()
	k, err := NewKeyring(current, old...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestKeyring_Seal(t *testing.T) {
	k := mustKeyring(t, keyA)
	bot := uuid.New()
	sealed, err := k.Seal(bot, sealTestToken)
	if err != nil {
		t.Fatal(err)
	}
	id := KeyIDOf(keyA)
	if sealed[0] != 1 || !bytes.Equal(sealed[1:5], id[:]) || len(sealed) != 1+4+12+len(sealTestToken)+16 {
		t.Fatalf("sealed = %x, want 01 | %s | nonce | ciphertext", sealed, id)
	}
	if bytes.Contains(sealed, []byte("AAEhBP0av28")) {
		t.Fatal("the token is in clear text")
	}
	again, _ := k.Seal(bot, sealTestToken)
	if bytes.Equal(again, sealed) {
		t.Fatal("two seals of one token are equal (nonce reused)")
	}
	if got, current, err := k.open(bot, sealed); err != nil || got != sealTestToken || !current {
		t.Fatalf("open = %q, %v, %v", got, current, err)
	}

	t.Run("another bot's row does not open", func(t *testing.T) {
		if _, err := k.Open(uuid.New(), sealed); err == nil {
			t.Fatal("a token sealed for one bot opened for another (bot_app_id is not authenticated)")
		}
	})
	t.Run("an edited key id does not open", func(t *testing.T) {
		// Claim keyB sealed it: keyB cannot open it, and keyA is not tried as version 1.
		edited := bytes.Clone(sealed)
		idB := KeyIDOf(keyB)
		copy(edited[1:5], idB[:])
		if _, err := mustKeyring(t, keyA, keyB).Open(bot, edited); err == nil {
			t.Fatal("an edited header opened")
		}
	})
	t.Run("an unknown key is named", func(t *testing.T) {
		_, err := mustKeyring(t, keyB, keyC).Open(bot, sealed)
		if err == nil || !strings.Contains(err.Error(), id.String()) || !strings.Contains(err.Error(), "ENCRYPTION_KEYS") {
			t.Fatalf("err = %v, want one naming key %s", err, id)
		}
	})
	t.Run("keys must be 32 bytes", func(t *testing.T) {
		if _, err := NewKeyring(keyA[:16]); err == nil {
			t.Fatal("a 16-byte key was accepted")
		}
		if _, err := NewKeyring(keyA, keyB[:31]); err == nil {
			t.Fatal("a 31-byte old key was accepted")
		}
	})
}

func TestKeyring_OpensOldKeysAndLegacy(t *testing.T) {
	bot := uuid.New()
	withA, err := mustKeyring(t, keyA).Seal(bot, sealTestToken)
	if err != nil {
		t.Fatal(err)
	}
	legacyA := sealLegacy(t, keyA, sealTestToken)
	tests := []struct {
		name        string
		keys        *Keyring
		sealed      []byte
		wantCurrent bool
		wantErr     bool
	}{
		{"v1, current key", mustKeyring(t, keyA), withA, true, false},
		{"v1, old key", mustKeyring(t, keyB, keyC, keyA), withA, false, false},
		{"v1, key gone", mustKeyring(t, keyB), withA, false, true},
		{"legacy, current key", mustKeyring(t, keyA), legacyA, false, false},
		{"legacy, old key", mustKeyring(t, keyB, keyA), legacyA, false, false},
		{"legacy, key gone", mustKeyring(t, keyB, keyC), legacyA, false, true},
		{"too short", mustKeyring(t, keyA), []byte{1, 2, 3}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, current, err := tt.keys.open(bot, tt.sealed)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("open = %q, want an error", got)
				}
				return
			}
			if err != nil || got != sealTestToken || current != tt.wantCurrent {
				t.Fatalf("open = %q, current %v, %v; want the token, current %v", got, current, err, tt.wantCurrent)
			}
		})
	}
	t.Run("legacy blob that looks like version 1", func(t *testing.T) {
		// A legacy nonce may start with 0x01 and a known key id (1 in 2^40): the version 1
		// open fails on authentication and the legacy open still succeeds.
		idA := KeyIDOf(keyA)
		nonce := make([]byte, 12)
		nonce[0] = 1
		copy(nonce[1:5], idA[:])
		block, _ := aes.NewCipher(keyA)
		gcm, _ := cipher.NewGCM(block)
		l := gcm.Seal(bytes.Clone(nonce), nonce, []byte(sealTestToken), nil)
		if got, current, err := mustKeyring(t, keyA).open(bot, l); err != nil || got != sealTestToken || current {
			t.Fatalf("open = %q, %v, %v", got, current, err)
		}
	})
}

// TestService_KeyRotation walks the README's rotation procedure on one bot: a token sealed
// in the legacy format with key A keeps sending after the upgrade, after ENCRYPTION_KEY
// becomes B with A in ENCRYPTION_KEYS, and, once ReencryptTokens has run, with B alone.
func TestService_KeyRotation(t *testing.T) {
	ctx := context.Background()
	e := newSendEnv(t, tgemu.Options{PerBotPerSecond: -1, PerChatInterval: -1}, func(c *Config) { c.EncryptionKey = keyA })
	e.chat(e.info, 1001)
	send := func(svc *Service, what string) {
		t.Helper()
		bot, err := svc.GetBot(ctx, e.tenantID, e.bot.ID)
		if err != nil {
			t.Fatal(err)
		}
		if out := svc.Send(ctx, bot, 1001, Outgoing{Text: what}); out.Status != OutcomeSent {
			t.Fatalf("%s: outcome = %+v, want sent", what, out)
		}
	}
	// Before the upgrade: the row holds a legacy blob.
	if _, err := e.db.NewUpdate().Model((*Bot)(nil)).Set("token_sealed = ?", sealLegacy(t, keyA, e.info.Token)).
		Where("id = ?", e.bot.ID).Exec(ctx); err != nil {
		t.Fatal(err)
	}
	send(e.svc, "legacy row, key A")

	c := e.svc.Config()
	c.EncryptionKey, c.DecryptionKeys = keyB, [][]byte{keyA}
	rotating := e.newService(c)
	send(rotating, "key B, A for reading")

	c.DecryptionKeys = nil
	onlyB := e.newService(c)
	bot, err := onlyB.GetBot(ctx, e.tenantID, e.bot.ID)
	if err != nil {
		t.Fatal(err)
	}
	if out := onlyB.Send(ctx, bot, 1001, Outgoing{Text: "too early"}); out.Status != OutcomeFailed {
		t.Fatalf("key B alone before the rotation: %+v, want failed", out)
	}

	res, err := ReencryptTokens(ctx, e.db, mustKeyring(t, keyB, keyA), 0, nil)
	if err != nil || res != (ReencryptResult{Reencrypted: 1}) {
		t.Fatalf("ReencryptTokens = %+v, %v", res, err)
	}
	send(e.newService(c), "key B alone, after the rotation")
}

// TestReencryptTokens rotates a table of bots in every state, twice (idempotence), with a
// batch smaller than the table.
func TestReencryptTokens(t *testing.T) {
	ctx := context.Background()
	db := testenv.DB(t)
	ten, _, err := tenant.New(db).Create(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	oldKeys := mustKeyring(t, keyA)
	newKeys := mustKeyring(t, keyB, keyA)
	tokens := map[uuid.UUID]string{}
	insert := func(n int, seal func(id uuid.UUID, token string) []byte, deleted bool) {
		for i := 0; i < n; i++ {
			id := uuid.New()
			token := strings.Replace(sealTestToken, "123456789", "9"+id.String()[:8], 1)
			tokens[id] = token
			b := Bot{ID: id, TenantID: ten.ID, Name: "b", TelegramBotID: int64(len(tokens)), Username: "b",
				TokenSealed: seal(id, token), WebhookSecretHash: []byte("h"), WebhookStatus: WebhookActive}
			q := db.NewInsert().Model(&b)
			if deleted {
				b.DeletedAt = time.Now()
			}
			if _, err := q.Exec(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	sealWith := func(k *Keyring) func(uuid.UUID, string) []byte {
		return func(id uuid.UUID, token string) []byte {
			s, err := k.Seal(id, token)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
	}
	insert(4, func(_ uuid.UUID, token string) []byte { return sealLegacy(t, keyA, token) }, false)
	insert(3, sealWith(oldKeys), false)
	insert(2, sealWith(oldKeys), true) // deleted bots keep a token: rotate it too
	insert(2, sealWith(mustKeyring(t, keyB)), false)
	garbage := uuid.New()
	insert(1, func(id uuid.UUID, token string) []byte {
		garbage = id
		return sealLegacy(t, keyC, token) // a key nobody has
	}, false)

	res, err := ReencryptTokens(ctx, db, newKeys, 5, testlog.Logger(t))
	if err != nil || res != (ReencryptResult{Reencrypted: 9, Current: 2, Failed: 1}) {
		t.Fatalf("first run = %+v, %v", res, err)
	}
	res, err = ReencryptTokens(ctx, db, newKeys, 5, testlog.Logger(t))
	if err != nil || res != (ReencryptResult{Current: 11, Failed: 1}) {
		t.Fatalf("second run = %+v, %v", res, err)
	}
	var rows []Bot
	if err := db.NewSelect().Model(&rows).Column("id", "token_sealed").Scan(ctx); err != nil {
		t.Fatal(err)
	}
	onlyB := mustKeyring(t, keyB)
	for _, b := range rows {
		got, err := onlyB.Open(b.ID, b.TokenSealed)
		if b.ID == garbage {
			if err == nil {
				t.Fatal("the unreadable token opened")
			}
			continue
		}
		if err != nil || got != tokens[b.ID] {
			t.Fatalf("bot %s: %q, %v; want its token with key B alone", b.ID, got, err)
		}
	}

	t.Run("a row changed meanwhile is not overwritten", func(t *testing.T) {
		id := uuid.New()
		insert(1, func(nid uuid.UUID, token string) []byte { id = nid; return sealLegacy(t, keyA, token) }, false)
		var stale []Bot
		if err := db.NewSelect().Model(&stale).Column("id", "token_sealed").Where("id = ?", id).Scan(ctx); err != nil {
			t.Fatal(err)
		}
		// A concurrent token change writes a new value after the read.
		fresh, _ := newKeys.Seal(id, "555:"+strings.Repeat("Z", 35))
		if _, err := db.NewUpdate().Model((*Bot)(nil)).Set("token_sealed = ?", fresh).Where("id = ?", id).Exec(ctx); err != nil {
			t.Fatal(err)
		}
		var r ReencryptResult
		changed, err := reencryptBatch(ctx, db, newKeys, stale, &r, testlog.Logger(t))
		if err != nil || len(changed) != 1 || changed[0] != id || r.Reencrypted != 0 {
			t.Fatalf("reencryptBatch = %v, %+v, %v; want the row reported changed", changed, r, err)
		}
		var now []byte
		if err := db.NewSelect().Model((*Bot)(nil)).Column("token_sealed").Where("id = ?", id).Scan(ctx, &now); err != nil || !bytes.Equal(now, fresh) {
			t.Fatalf("the concurrent write was overwritten (%v)", err)
		}
	})
}

// TestKeyIDOf_IsTheStartupFingerprint: the key id stored with each token is the
// encryption_key_fingerprint of the startup log, so an operator can match them.
func TestKeyIDOf_IsTheStartupFingerprint(t *testing.T) {
	cfg := config.Config{EncryptionKey: config.Secret(hex.EncodeToString(keyA))}
	if got, want := KeyIDOf(keyA).String(), cfg.KeyFingerprint(); got != want || len(got) != 8 {
		t.Fatalf("KeyIDOf = %s, KeyFingerprint = %s", got, want)
	}
}
