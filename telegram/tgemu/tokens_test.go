package tgemu

import (
	"fmt"
	"net/http"
	"testing"
)

// getMeStatus calls getMe with token and returns the HTTP status.
func getMeStatus(t *testing.T, s *Server, token string) int {
	t.Helper()
	resp, err := http.Get(s.URL() + "/bot" + token + "/getMe")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestTokens(t *testing.T) {
	s := NewTest(t, Options{})
	info := s.CreateBot("tok_bot", "Tok")

	// AddToken: both tokens work, for the same bot.
	second, err := s.AddToken(info.ID)
	if err != nil || second == info.Token {
		t.Fatalf("AddToken = %q, %v", second, err)
	}
	if a, b := getMeStatus(t, s, info.Token), getMeStatus(t, s, second); a != 200 || b != 200 {
		t.Fatalf("getMe: old %d, new %d; want both 200", a, b)
	}
	newGotBot(t, s, second) // getMe answers for the same bot
	// RevokeToken: the old one answers 401.
	if err := s.RevokeToken(info.Token); err != nil {
		t.Fatal(err)
	}
	if st := getMeStatus(t, s, info.Token); st != http.StatusUnauthorized {
		t.Fatalf("revoked token: %d, want 401", st)
	}
	if err := s.RevokeToken(info.Token); err == nil {
		t.Fatal("revoking twice succeeded")
	}
	if _, err := s.AddToken(999); err == nil {
		t.Fatal("AddToken of an unknown bot succeeded")
	}

	// ReplaceToken (control API: @BotFather /revoke): every other token answers 401.
	third, _ := s.AddToken(info.ID)
	var got struct {
		Token string `json:"token"`
	}
	if st := ctl(t, s, "POST", fmt.Sprintf("/control/bots/%d/revoke-token", info.ID), nil, &got); st != 200 || got.Token == "" {
		t.Fatalf("revoke-token: %d %+v", st, got)
	}
	for _, old := range []string{second, third} {
		if st := getMeStatus(t, s, old); st != http.StatusUnauthorized {
			t.Fatalf("old token after /revoke: %d, want 401", st)
		}
	}
	if st := getMeStatus(t, s, got.Token); st != 200 {
		t.Fatalf("new token: %d", st)
	}
	var bi BotInfo
	ctl(t, s, "GET", fmt.Sprintf("/control/bots/%d", info.ID), nil, &bi)
	if bi.Token != got.Token {
		t.Fatal("the control API shows an old token")
	}
	// POST .../tokens adds one and keeps the current one.
	var added struct {
		Token string `json:"token"`
	}
	if st := ctl(t, s, "POST", fmt.Sprintf("/control/bots/%d/tokens", info.ID), nil, &added); st != 200 || added.Token == "" {
		t.Fatalf("tokens: %d", st)
	}
	if a, b := getMeStatus(t, s, got.Token), getMeStatus(t, s, added.Token); a != 200 || b != 200 {
		t.Fatalf("getMe: %d %d", a, b)
	}
}
