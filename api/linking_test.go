package api

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/botfleet/botfleet/contacts"
	"github.com/botfleet/botfleet/internal/apperr"
	"github.com/botfleet/botfleet/telegram"
	"github.com/botfleet/botfleet/telegram/tgemu"
)

// externalIDOf returns the external_id of the contact of (bot, chat) ("" when unset).
func (te *testEnv) externalIDOf(botID uuid.UUID, chat int64) string {
	te.t.Helper()
	c, err := te.contacts.GetByChat(context.Background(), botID, chat)
	if err != nil {
		te.t.Fatal(err)
	}
	return c.ExternalID
}

// newLinkToken creates a link token through the API.
func (te *testEnv) newLinkToken(key string, botID uuid.UUID, externalID string) linkTokenResponse {
	te.t.Helper()
	r := te.do(http.MethodPost, "/contacts/link-tokens/", key, map[string]any{"external_id": externalID, "bot_app_id": botID})
	mustStatus(te.t, r, http.StatusCreated)
	var lt linkTokenResponse
	r.decode(te.t, &lt)
	return lt
}

// TestLinking_Tokens: a deep link (/start <token>) and /link <token> link the contact
// through the webhook and the worker, replying link_success; used, expired and unknown
// tokens get link_failed and change nothing; /status answers the link state.
func TestLinking_Tokens(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("fastpay")
	b := te.newTplBot(key, "Pay")
	b2 := te.newTplBot(key, "Pay 2")
	ctx := context.Background()
	// contact.linked goes to the tenant's endpoint (the outbox row is written with the link).
	te.createEndpoint(key, "https://8.8.8.8/never-called", "contact.linked") // saved only: no delivery loop runs here

	lt := te.newLinkToken(key, b.BotAppID, "acct-42")
	if !regexp.MustCompile(`^link_[A-Za-z0-9_-]{32}$`).MatchString(lt.Token) || lt.DeepLink != "https://t.me/"+b.info.Username+"?start="+lt.Token {
		t.Fatalf("token %+v", lt)
	}
	if d := time.Until(lt.ExpiresAt); d < 14*time.Minute || d > 16*time.Minute {
		t.Fatalf("default ttl: expires_at %s", lt.ExpiresAt)
	}
	// Only the SHA-256 is stored.
	sum := sha256.Sum256([]byte(lt.Token))
	if n, err := te.db.NewSelect().Table("link_tokens").Where("token_hash = ?", sum[:]).Where("external_id = 'acct-42'").Count(ctx); err != nil || n != 1 {
		t.Fatalf("stored hash: %d %v", n, err)
	}

	// The deep link: /start <token> resubscribes, links and answers link_success.
	te.deliverText(b, 1, 701, "Ann", "/stop")
	te.deliverText(b, 2, 701, "Ann", "/start "+lt.Token)
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 701); m.Text != "Your Telegram account is now linked to account acct-42." {
		t.Fatalf("link_success: %+v", m)
	}
	c701, _ := te.contacts.GetByChat(ctx, b.BotAppID, 701)
	if c701.ExternalID != "acct-42" || c701.OptedOut {
		t.Fatalf("contact after the deep link: %+v", c701)
	}
	r := te.do(http.MethodGet, "/contacts/"+c701.ID.String()+"/", key, nil)
	var cr contactResponse
	r.decode(t, &cr)
	if cr.ExternalID == nil || *cr.ExternalID != "acct-42" {
		t.Fatalf("API contact: %s", r.Body)
	}

	// Used token: link_failed, nothing changes.
	const failed = "This link is invalid, expired or already used. Please request a new one."
	te.deliverText(b, 3, 702, "Bo", "/link "+lt.Token)
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 702); m.Text != failed || te.externalIDOf(b.BotAppID, 702) != "" {
		t.Fatalf("used token: %+v", m)
	}
	// A token of another bot, an unknown token, /link without one: link_failed.
	other := te.newLinkToken(key, b2.BotAppID, "acct-9")
	te.deliverText(b, 4, 702, "Bo", "/link "+other.Token)
	te.deliverText(b, 5, 703, "Cy", "/link link_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
	te.deliverText(b, 6, 704, "Di", "/link")
	te.processAndSend(b.BotAppID)
	for _, chat := range []int64{702, 703, 704} {
		if m := te.lastSent(b, chat); m.Text != failed || te.externalIDOf(b.BotAppID, chat) != "" {
			t.Fatalf("chat %d: %+v", chat, m)
		}
	}

	// /link moves the external_id from 701 to 702.
	lt2 := te.newLinkToken(key, b.BotAppID, "acct-42")
	te.deliverText(b, 7, 702, "Bo", "/link "+lt2.Token)
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 702); m.Text != "Your Telegram account is now linked to account acct-42." {
		t.Fatalf("/link: %+v", m)
	}
	if a, b := te.externalIDOf(b.BotAppID, 701), te.externalIDOf(b.BotAppID, 702); a != "" || b != "acct-42" {
		t.Fatalf("moved: 701=%q 702=%q", a, b)
	}
	var linked []string
	if err := te.db.NewRaw("SELECT data->>'external_id' || ' ' || (data->>'method') FROM webhook_deliveries WHERE event_type = 'contact.linked' ORDER BY created_at").
		Scan(ctx, &linked); err != nil {
		t.Fatal(err)
	}
	if len(linked) != 2 || linked[0] != "acct-42 link_token" || linked[1] != "acct-42 link_token" {
		t.Fatalf("contact.linked deliveries = %q, want two (acct-42 by link_token)", linked)
	}

	// Expired: link_failed, nothing changes.
	lt3 := te.newLinkToken(key, b.BotAppID, "acct-7")
	if _, err := te.db.NewRaw("UPDATE link_tokens SET expires_at = now() - interval '1 second' WHERE external_id = 'acct-7'").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	te.deliverText(b, 8, 703, "Cy", "/start "+lt3.Token)
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 703); m.Text != failed || te.externalIDOf(b.BotAppID, 703) != "" {
		t.Fatalf("expired: %+v", m)
	}

	// /status; a /start payload that is not a link token welcomes as usual.
	te.deliverText(b, 9, 702, "Bo", "/status")
	te.deliverText(b, 10, 701, "Ann", "/status")
	te.deliverText(b, 11, 704, "Di", "/start campaign_7")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 702); m.Text != "Linked account: acct-42" {
		t.Fatalf("/status linked: %+v", m)
	}
	if m := te.lastSent(b, 701); m.Text != "Linked account: not linked" {
		t.Fatalf("/status not linked: %+v", m)
	}
	if m := te.lastSent(b, 704); m.Text != telegram.StartReplyText("Di", "Pay") {
		t.Fatalf("/start campaign: %+v", m)
	}

	// Edited link templates are used; a tenant template bound to /status wins.
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "link_success"), key, map[string]any{"text": "Welcome aboard, {first_name} ({external_id})!"}), http.StatusOK)
	mustStatus(t, te.do(http.MethodPut, tplPath(b, "mystatus"), key, map[string]any{"text": "Tenant status", "command": "status"}), http.StatusCreated)
	lt4 := te.newLinkToken(key, b.BotAppID, "acct-5")
	te.deliverText(b, 12, 703, "Cy", "/link "+lt4.Token)
	te.deliverText(b, 13, 702, "Bo", "/status")
	te.processAndSend(b.BotAppID)
	if m := te.lastSent(b, 703); m.Text != "Welcome aboard, Cy (acct-5)!" {
		t.Fatalf("edited link_success: %+v", m)
	}
	if m := te.lastSent(b, 702); m.Text != "Tenant status" {
		t.Fatalf("tenant /status: %+v", m)
	}

	// Validation.
	for name, body := range map[string]map[string]any{
		"ttl too short":  {"external_id": "x", "bot_app_id": b.BotAppID, "ttl_seconds": 59},
		"ttl too long":   {"external_id": "x", "bot_app_id": b.BotAppID, "ttl_seconds": 604801},
		"no external_id": {"bot_app_id": b.BotAppID},
		"no bot":         {"external_id": "x"},
	} {
		r := te.do(http.MethodPost, "/contacts/link-tokens/", key, body)
		if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
			t.Errorf("%s: %d %s", name, r.Code, r.Body)
		}
	}
	r = te.do(http.MethodPost, "/contacts/link-tokens/", key, map[string]any{"external_id": "x", "bot_app_id": b.BotAppID, "ttl_seconds": 60})
	mustStatus(t, r, http.StatusCreated)
	r = te.do(http.MethodPost, "/contacts/link-tokens/", key, map[string]any{"external_id": "x", "bot_app_id": uuid.New()})
	if r.Code != http.StatusNotFound || r.errorCode(t) != "bot_not_found" {
		t.Fatalf("unknown bot: %d %s", r.Code, r.Body)
	}
}

// deliverFrom posts a private text message from a user with a username.
func (te *testEnv) deliverFrom(b tplBot, updateID, userID int64, firstName, username, text string) {
	te.t.Helper()
	if err := te.emu.AddUser(b.info.ID, tgemu.User{ID: userID, FirstName: firstName, Username: username}); err != nil {
		te.t.Fatal(err)
	}
	msg := map[string]any{"message_id": updateID, "date": time.Now().Unix(), "text": text,
		"chat": map[string]any{"id": userID, "type": "private", "first_name": firstName, "username": username},
		"from": map[string]any{"id": userID, "is_bot": false, "first_name": firstName, "username": username}}
	req := request(te.t, http.MethodPost, "/telegram/v1/webhooks/"+b.BotAppID.String()+"/", "", map[string]any{"update_id": updateID, "message": msg})
	req.Header.Set(telegram.SecretHeader, b.secret)
	mustStatus(te.t, te.serve(req), http.StatusOK)
}

var codeInText = regexp.MustCompile(`\b[0-9]{6}\b`)

// queuedCode returns the code in the latest queued message to chat (as the bot will send it).
func (te *testEnv) queuedCode(botID uuid.UUID, chat int64) (string, uuid.UUID) {
	te.t.Helper()
	var m contacts.Message
	if err := te.db.NewSelect().Model(&m).Where("bot_id = ?", botID).Where("chat_id = ?", chat).Where("kind = ?", contacts.KindMessage).
		OrderExpr("created_at DESC").Limit(1).Scan(context.Background()); err != nil {
		te.t.Fatal(err)
	}
	return codeInText.FindString(m.Text), m.ID
}

// wrongCode returns a 6-digit code other than code.
func wrongCode(code string) string {
	n, _ := strconv.Atoi(code)
	return fmt.Sprintf("%06d", (n+1)%1_000_000)
}

// TestLinking_VerificationCodes: a code sent through the bot links the contact; wrong codes
// count down and lock after five (race-free); codes expire; a new request starts over.
func TestLinking_VerificationCodes(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("orbvpn")
	b := te.newTplBot(key, "Orb")
	ctx := context.Background()
	te.deliverFrom(b, 1, 801, "Ann", "ann_orb", "hi")
	te.deliverFrom(b, 2, 802, "Bo", "bo_orb", "hi")
	te.deliverFrom(b, 3, 803, "Cy", "cy_orb", "hi")
	te.processAndSend(b.BotAppID)
	ask := func(ext, username string) response {
		return te.do(http.MethodPost, "/contacts/verification-codes/", key, map[string]any{"external_id": ext, "bot_app_id": b.BotAppID, "username": username})
	}
	verify := func(ext, code string) response {
		return te.do(http.MethodPost, "/contacts/verify/", key, map[string]any{"external_id": ext, "code": code})
	}

	// Request: 201 {expires_at} only; the bot sends the code (tgemu receives it).
	r := ask("orb-1", "@Ann_Orb")
	mustStatus(t, r, http.StatusCreated)
	var got map[string]any
	r.decode(t, &got)
	if len(got) != 1 || got["expires_at"] == nil {
		t.Fatalf("answer: %s", r.Body)
	}
	code, msgID := te.queuedCode(b.BotAppID, 801)
	task, _ := telegram.NewSendTask(msgID)
	if err := te.tg.HandleSend(ctx, task); err != nil {
		t.Fatal(err)
	}
	if m := te.lastSent(b, 801); code == "" || codeInText.FindString(m.Text) != code {
		t.Fatalf("sent %+v, code %q", m, code)
	}
	var stored int
	if err := te.db.NewRaw("SELECT count(*) FROM verification_codes WHERE position(convert_to(?, 'UTF8') in code_hash) > 0", code).Scan(ctx, &stored); err != nil || stored != 0 {
		t.Fatalf("the code is stored in clear: %d %v", stored, err)
	}
	// Unknown username: 404.
	r = ask("orb-1", "nobody")
	if r.Code != http.StatusNotFound || r.errorCode(t) != "contact_not_found" {
		t.Fatalf("unknown username: %d %s", r.Code, r.Body)
	}

	// Wrong, then right: 200 with the contact, now linked; the code is used up.
	r = verify("orb-1", wrongCode(code))
	if code, d := errDetails(t, r); r.Code != http.StatusUnprocessableEntity || code != "verification_code_invalid" || d["attempts_left"] != float64(4) {
		t.Fatalf("wrong code: %d %s", r.Code, r.Body)
	}
	r = verify("orb-1", code)
	mustStatus(t, r, http.StatusOK)
	var cr contactResponse
	r.decode(t, &cr)
	if cr.ExternalID == nil || *cr.ExternalID != "orb-1" || cr.TelegramChatID != 801 {
		t.Fatalf("verified: %s", r.Body)
	}
	r = verify("orb-1", code)
	if r.Code != http.StatusNotFound || r.errorCode(t) != "verification_not_found" {
		t.Fatalf("used code: %d %s", r.Code, r.Body)
	}

	// An Idempotency-Key retry gets the first answer and sends no second code.
	countTo := func(chat int64) int {
		n, err := te.db.NewSelect().Table("messages").Where("chat_id = ?", chat).Where("kind = ?", contacts.KindMessage).Count(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return int(n)
	}
	before := countTo(801)
	var first []byte
	for i := range 2 {
		req := request(t, http.MethodPost, "/contacts/verification-codes/", key, map[string]any{"external_id": "orb-9", "bot_app_id": b.BotAppID, "username": "ann_orb"})
		req.Header.Set("Idempotency-Key", "orb-9-request")
		r := te.serve(req)
		mustStatus(t, r, http.StatusCreated)
		if i == 1 && (string(r.Body) != string(first) || r.Header.Get("Idempotent-Replayed") != "true") {
			t.Fatalf("replay: %s vs %s", r.Body, first)
		}
		first = r.Body
	}
	if n := countTo(801); n != before+1 {
		t.Fatalf("codes queued: %d", n-before)
	}

	// Five wrong codes lock the attempt, even the right one is refused; a new request starts over.
	mustStatus(t, ask("orb-2", "bo_orb"), http.StatusCreated)
	code2, _ := te.queuedCode(b.BotAppID, 802)
	for i := 4; i >= 0; i-- {
		r = verify("orb-2", wrongCode(code2))
		if c, d := errDetails(t, r); r.Code != http.StatusUnprocessableEntity || c != "verification_code_invalid" || d["attempts_left"] != float64(i) {
			t.Fatalf("wrong code, %d left: %d %s", i, r.Code, r.Body)
		}
	}
	r = verify("orb-2", code2)
	if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "verification_locked" || te.externalIDOf(b.BotAppID, 802) != "" {
		t.Fatalf("locked: %d %s", r.Code, r.Body)
	}
	mustStatus(t, ask("orb-2", "bo_orb"), http.StatusCreated)
	code2, _ = te.queuedCode(b.BotAppID, 802)
	mustStatus(t, verify("orb-2", code2), http.StatusOK)
	if te.externalIDOf(b.BotAppID, 802) != "orb-2" {
		t.Fatal("not linked after a new request")
	}

	// Concurrent wrong guesses: exactly five are counted, the rest are locked.
	mustStatus(t, ask("orb-3", "cy_orb"), http.StatusCreated)
	code3, _ := te.queuedCode(b.BotAppID, 803)
	var mu sync.Mutex
	codes := map[string]int{}
	var wg sync.WaitGroup
	for range 12 {
		wg.Go(func() {
			_, err := te.tg.VerifyCode(ctx, tid, "orb-3", wrongCode(code3))
			var ae *apperr.Error
			mu.Lock()
			defer mu.Unlock()
			if errors.As(err, &ae) {
				codes[ae.Code]++
			} else {
				codes[fmt.Sprint(err)]++
			}
		})
	}
	wg.Wait()
	if codes["verification_code_invalid"] != 5 || codes["verification_locked"] != 7 {
		t.Fatalf("concurrent guesses: %v", codes)
	}

	// Expiry: the right code after 10 minutes is refused and links nothing.
	mustStatus(t, ask("orb-4", "cy_orb"), http.StatusCreated)
	code4, _ := te.queuedCode(b.BotAppID, 803)
	if _, err := te.db.NewRaw("UPDATE verification_codes SET expires_at = now() - interval '1 second' WHERE external_id = 'orb-4'").Exec(ctx); err != nil {
		t.Fatal(err)
	}
	r = verify("orb-4", code4)
	if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "verification_code_expired" || te.externalIDOf(b.BotAppID, 803) != "" {
		t.Fatalf("expired: %d %s", r.Code, r.Body)
	}

	// Validation: a code that is not 6 digits is not an attempt.
	r = verify("orb-4", "12345")
	if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "invalid_field" {
		t.Fatalf("bad code: %d %s", r.Code, r.Body)
	}
}
