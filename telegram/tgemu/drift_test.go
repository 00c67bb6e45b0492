package tgemu

import (
	"net/http"
	"strconv"
	"testing"

	"github.com/PaulSonOfLars/gotgbot/v2"
)

// TestSetWebhookByHand: the control API sets a webhook as someone else would (no secret);
// getWebhookInfo shows it with ip_address for an IP host; "" removes it; a bad URL is 400.
func TestSetWebhookByHand(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("", "")
	b := newGotBot(t, s, info.Token)
	if _, err := b.SetWebhook("http://10.1.2.3:8443/ours/", &gotgbot.SetWebhookOpts{SecretToken: "ours", MaxConnections: 7}); err != nil {
		t.Fatal(err)
	}
	var wi WebhookInfo
	if st := ctl(t, s, "POST", "/control/bots/"+strconv.FormatInt(info.ID, 10)+"/webhook", map[string]string{"url": "https://elsewhere.example/hook"}, &wi); st != 200 {
		t.Fatalf("status %d", st)
	}
	got, err := b.GetWebhookInfo(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.Url != "https://elsewhere.example/hook" || got.MaxConnections != 40 || got.IpAddress != "" || s.WebhookInfo(info.ID).SecretToken != "" {
		t.Fatalf("after drift: %+v", got)
	}
	if _, err := s.SetWebhookByHand(info.ID, "http://127.0.0.1:9/x"); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.GetWebhookInfo(nil); got.IpAddress != "127.0.0.1" {
		t.Fatalf("ip_address: %+v", got)
	}
	if st := ctl(t, s, "POST", "/control/bots/"+strconv.FormatInt(info.ID, 10)+"/webhook", map[string]string{"url": "ftp://x"}, nil); st != http.StatusBadRequest {
		t.Fatalf("bad url: %d", st)
	}
	if _, err := s.SetWebhookByHand(info.ID, ""); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.GetWebhookInfo(nil); got.Url != "" || got.MaxConnections != 0 {
		t.Fatalf("removed: %+v", got)
	}
}

// TestRevokeToken: the old token answers 401, the new one works, the webhook is kept.
func TestRevokeToken(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("", "")
	old := newGotBot(t, s, info.Token)
	if _, err := old.SetWebhook("http://127.0.0.1:9/hook", nil); err != nil {
		t.Fatal(err)
	}
	var fresh BotInfo
	if st := ctl(t, s, "POST", "/control/bots/"+strconv.FormatInt(info.ID, 10)+"/revoke", nil, &fresh); st != 200 || fresh.Token == info.Token || fresh.ID != info.ID {
		t.Fatalf("revoke: %d %+v", st, fresh)
	}
	if _, err := old.GetMe(nil); asTelegramError(t, err).Code != http.StatusUnauthorized {
		t.Fatalf("old token: %v", err)
	}
	nb := newGotBot(t, s, fresh.Token)
	if wi, err := nb.GetWebhookInfo(nil); err != nil || wi.Url != "http://127.0.0.1:9/hook" {
		t.Fatalf("new token: %+v %v", wi, err)
	}
	if _, err := s.RevokeBotToken(12345); err == nil {
		t.Fatal("unknown bot revoked")
	}
}

// TestChatLookups: getChat, getChatMember and getChatMemberCount over the known private chats.
func TestChatLookups(t *testing.T) {
	s := NewTest(t, fastOpts)
	info := s.CreateBot("", "")
	b := newGotBot(t, s, info.Token)
	u := User{ID: 501, FirstName: "Ann", LastName: "Lee", Username: "ann"}
	if err := s.AddUser(info.ID, u); err != nil {
		t.Fatal(err)
	}
	c, err := b.GetChat(u.ID, nil)
	if err != nil || c.Id != u.ID || c.Type != "private" || c.FirstName != "Ann" || c.Username != "ann" {
		t.Fatalf("getChat: %+v %v", c, err)
	}
	if _, err := b.GetChat(999, nil); asTelegramError(t, err).Description != "Bad Request: chat not found" {
		t.Fatalf("unknown chat: %v", err)
	}
	m, err := b.GetChatMember(u.ID, u.ID, nil)
	if err != nil || m.GetStatus() != "member" || m.GetUser().Id != u.ID {
		t.Fatalf("getChatMember user: %+v %v", m, err)
	}
	if m, err := b.GetChatMember(u.ID, info.ID, nil); err != nil || m.GetStatus() != "member" {
		t.Fatalf("getChatMember bot: %+v %v", m, err)
	}
	if _, err := s.Block(info.ID, u); err != nil {
		t.Fatal(err)
	}
	if m, err := b.GetChatMember(u.ID, info.ID, nil); err != nil || m.GetStatus() != "kicked" {
		t.Fatalf("getChatMember bot after block: %+v %v", m, err)
	}
	if _, err := b.GetChatMember(u.ID, 777, nil); asTelegramError(t, err).Description != "Bad Request: user not found" {
		t.Fatalf("other user: %v", err)
	}
	if n, err := b.GetChatMemberCount(u.ID, nil); err != nil || n != 2 {
		t.Fatalf("getChatMemberCount: %d %v", n, err)
	}
	if _, err := b.GetChatMemberCount(999, nil); asTelegramError(t, err).Code != http.StatusBadRequest {
		t.Fatalf("count of unknown chat: %v", err)
	}
}
