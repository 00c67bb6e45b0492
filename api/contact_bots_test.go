package api

import (
	"net/http"
	"testing"

	"github.com/google/uuid"
)

// TestContacts_OnePersonAcrossBots: one Telegram user writing to two bots of a tenant is one
// contact with two bot links, each with its own opted_out and blocked state; sends, lists
// and broadcasts read the state of the bot they go through; another tenant's bot makes its
// own contact of the same user.
func TestContacts_OnePersonAcrossBots(t *testing.T) {
	te := newEnv(t)
	_, key := te.newTenant("A")
	a := te.newTplBot(key, "Shop")
	b := te.newTplBot(key, "Support")
	c := te.newTplBot(key, "News") // the user never writes to it
	_, keyB := te.newTenant("B")
	other := te.newTplBot(keyB, "Elsewhere")
	const user = 777

	te.deliverText(a, 1, user, "Ann", "/start")
	te.processAndSend(a.BotAppID) // Shop first: it is the bot the person first wrote to
	te.deliverText(b, 1, user, "Ann", "hello support")
	te.deliverText(other, 1, user, "Ann", "hi")
	te.processAndSend(a.BotAppID)

	list := func(key, query string) []contactResponse {
		t.Helper()
		r := te.do(http.MethodGet, "/contacts/?"+query, key, nil)
		mustStatus(t, r, http.StatusOK)
		var page listPage[contactResponse]
		r.decode(t, &page)
		return page.Items
	}
	cs := list(key, "")
	if len(cs) != 1 {
		t.Fatalf("tenant A has %d contacts, want 1 person: %+v", len(cs), cs)
	}
	ct := cs[0]
	if ct.BotAppID != a.BotAppID || ct.TelegramChatID != user || len(ct.Bots) != 2 ||
		ct.Bots[0].BotAppID != a.BotAppID || ct.Bots[1].BotAppID != b.BotAppID ||
		ct.Bots[0].TelegramChatID != user || ct.Bots[1].LastInboundAt == nil {
		t.Fatalf("contact = %+v", ct)
	}
	if cs := list(keyB, ""); len(cs) != 1 || cs[0].ID == ct.ID || len(cs[0].Bots) != 1 || cs[0].Bots[0].BotAppID != other.BotAppID {
		t.Fatalf("tenant B contacts = %+v", cs)
	}

	// /stop at Support opts out there only.
	te.deliverText(b, 2, user, "Ann", "/stop")
	te.processAndSend(b.BotAppID)
	r := te.do(http.MethodGet, "/contacts/"+ct.ID.String()+"/", key, nil)
	mustStatus(t, r, http.StatusOK)
	r.decode(t, &ct)
	if ct.OptedOut || ct.Bots[0].OptedOut || !ct.Bots[1].OptedOut || ct.Bots[1].OptedOutAt == nil {
		t.Fatalf("after /stop at Support: %+v", ct)
	}
	for q, want := range map[string]int{
		"bot_app_id=" + b.BotAppID.String() + "&opted_out=true":  1,
		"bot_app_id=" + a.BotAppID.String() + "&opted_out=true":  0,
		"bot_app_id=" + a.BotAppID.String() + "&opted_out=false": 1,
		"bot_app_id=" + c.BotAppID.String():                      0,
		"opted_out=true":                                         1,
		"blocked=true":                                           0,
	} {
		if got := len(list(key, q)); got != want {
			t.Errorf("GET /contacts/?%s: %d contacts, want %d", q, got, want)
		}
	}

	// Sends go through the link of the bot named.
	send := func(bot uuid.UUID) response {
		t.Helper()
		return te.do(http.MethodPost, "/messages/", key, map[string]any{"bot_app_id": bot, "contact_id": ct.ID, "text": "hi"})
	}
	if r := send(a.BotAppID); r.Code != http.StatusAccepted {
		t.Fatalf("send through Shop: %d %s", r.Code, r.Body)
	}
	if r := send(b.BotAppID); r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "contact_opted_out" {
		t.Fatalf("send through Support (opted out there): %d %s", r.Code, r.Body)
	}
	if r := send(c.BotAppID); r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "contact_not_of_bot" {
		t.Fatalf("send through News (never started): %d %s", r.Code, r.Body)
	}

	// A broadcast of Support skips the person as opted out; one of News cannot name it.
	r = te.do(http.MethodPost, "/broadcast/preview-audience/", key, map[string]any{"bot_app_id": b.BotAppID, "recipients": []uuid.UUID{ct.ID}})
	mustStatus(t, r, http.StatusOK)
	var pv previewAudienceResponse
	r.decode(t, &pv)
	if pv.Count != 1 || pv.OptedOut != 1 || len(pv.Sample) != 1 || len(pv.Sample[0].Bots) != 2 {
		t.Fatalf("preview at Support: %s", r.Body)
	}
	r = te.do(http.MethodPost, "/broadcast/preview-audience/", key, map[string]any{"bot_app_id": a.BotAppID, "segment": map[string]any{}})
	r.decode(t, &pv)
	if pv.Count != 1 || pv.OptedOut != 0 {
		t.Fatalf("preview at Shop: %s", r.Body)
	}
	r = te.do(http.MethodPost, "/broadcast/preview-audience/", key, map[string]any{"bot_app_id": c.BotAppID, "recipients": []uuid.UUID{ct.ID}})
	if r.Code != http.StatusUnprocessableEntity || r.errorCode(t) != "recipients_not_of_bot" {
		t.Fatalf("preview at News: %d %s", r.Code, r.Body)
	}

	// The person's conversation holds the messages of both bots.
	r = te.do(http.MethodGet, "/contacts/"+ct.ID.String()+"/messages/?direction=inbound", key, nil)
	mustStatus(t, r, http.StatusOK)
	var msgs listPage[struct {
		BotAppID  uuid.UUID `json:"bot_app_id"`
		Direction string    `json:"direction"`
	}]
	r.decode(t, &msgs)
	bots := map[uuid.UUID]int{}
	for _, m := range msgs.Items {
		if m.Direction == "inbound" {
			bots[m.BotAppID]++
		}
	}
	if bots[a.BotAppID] != 1 || bots[b.BotAppID] != 2 {
		t.Fatalf("inbound messages by bot = %v: %s", bots, r.Body)
	}
}
