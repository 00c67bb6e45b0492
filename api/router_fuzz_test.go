package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// fuzzContentTypes are the Content-Type headers FuzzRouter sends ("" = none).
var fuzzContentTypes = []string{
	echo.MIMEApplicationJSON, "", "text/plain", "application/json; charset=utf-8", "multipart/form-data; boundary=x",
	"application/merge-patch+json", "application/x-www-form-urlencoded",
}

// fuzzBodies seed every route's body: the known bad inputs of issue 6 and a few good ones.
var fuzzBodies = []string{
	``, `{}`, `null`, `[]`, `"x"`, `{"name":"\u0000"}`, `{"name":"a\u0007b"}`,
	`{"name":"Acme"}`, `{"name":"Bot","bot_token":"123456789:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","daily_limit":1e400}`,
	`{"daily_limit":99999999999999999999}`, `{"daily_limit":-1}`, `{"name":"x","daily_limit":2147483648}`,
	`{"contact_id":"{contact}","text":"hi\u0000"}`, `{"contact_id":"{contact}","text":"<b>hi</b>","parse_mode":"html"}`,
	`{"name":"n","platform":"telegram","message_text":"hi","parse_mode":"MARKDOWNV2","recipients":["{contact}"]}`,
	`{"name":"n","platform":"TELEGRAM","message_text":"hi","recipients":["{contact}","\u0000",""]}`,
	"{\"name\":\"a\xffb\"}", "{\"text\":\"\xc0\x80\"}", `{"name":"x","unknown":1}`,
	`{"name":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
	`{"update_id":1,"message":{"message_id":1,"date":1,"chat":{"id":4242,"type":"private"},"text":"/start"}}`,
	`{"update_id":2,"message":{"text":"\u0000"}}`, `{"update_id":1e400}`,
}

// fuzzQueries seed every route's query string: the year-0000 cursor among them.
var fuzzQueries = []string{"", "limit=1e400", "limit=0", "limit=99999999999999999999", "cursor=" + year0Cursor,
	"cursor=%00", "bot_app_id=%00", "bot_app_id={bot}", "limit=5&cursor=aGVsbG8"}

// routerFuzz is the real router with a tenant, a bot, a contact, a message and a broadcast to
// aim requests at (FuzzRouter, TestRouter_BadInputEveryRoute).
type routerFuzz struct {
	te          *testEnv
	key, secret string
	routes      []*echo.Route // e.Routes(), sorted
	ids         *strings.Replacer
	realID      func(path, param string) string
}

// newRouterFuzz builds the environment once: one database, one Redis database, one tgemu.
func newRouterFuzz(t testing.TB) *routerFuzz {
	te := newEnv(t)
	te.validate = false // speed; TestBadInput checks answers against openapi.yaml
	tid, key := te.newTenant("Fuzz")
	bot, info := te.newBot(key, "FuzzBot")
	contact := te.newContact(tid, bot.BotAppID, 4242)
	r := te.do(http.MethodPost, "/messages/", key, map[string]any{"contact_id": contact.ID, "text": "seed"})
	mustStatus(t, r, http.StatusAccepted)
	var msg messageResponse
	r.decode(t, &msg)
	r = te.do(http.MethodPost, "/broadcast/", key, map[string]any{"name": "b", "platform": "TELEGRAM", "message_text": "x", "recipients": []string{contact.ID.String()}})
	mustStatus(t, r, http.StatusAccepted)
	var bc broadcastResponse
	r.decode(t, &bc)

	rf := &routerFuzz{
		te: te, key: key, secret: te.emu.WebhookInfo(info.ID).SecretToken,
		ids: strings.NewReplacer("{bot}", bot.BotAppID.String(), "{contact}", contact.ID.String()),
	}
	rf.routes = append(rf.routes, te.e.Routes()...)
	sort.Slice(rf.routes, func(i, j int) bool {
		return rf.routes[i].Path+" "+rf.routes[i].Method < rf.routes[j].Path+" "+rf.routes[j].Method
	})
	if len(rf.routes) < 15 {
		t.Fatalf("only %d routes", len(rf.routes))
	}
	// realID is the id of an existing resource for a path parameter of the route path.
	rf.realID = func(path, param string) string {
		switch {
		case param == "bot_app_id":
			return bot.BotAppID.String()
		case strings.HasPrefix(path, "/contacts/"):
			return contact.ID.String()
		case strings.HasPrefix(path, "/messages/"):
			return msg.ID.String()
		case strings.HasPrefix(path, "/broadcast/"):
			return bc.ID.String()
		}
		return uuid.NewString()
	}
	return rf
}

// check sends one request to route routeN (modulo the number of routes) with valid
// credentials (admin token, API key, or the bot's webhook secret, so that the handlers are
// reached): pathArg replaces every path parameter ("" = the id of an existing resource, a
// random one for DELETE so that the bot survives), query and body are sent as they are
// ({bot} and {contact} replaced by real ids), ctN picks a Content-Type of fuzzContentTypes.
// The answer must be a 2xx, or a 4xx whose body is the error envelope with a code; never a
// 5xx, and no ERROR may be logged.
func (rf *routerFuzz) check(t testing.TB, routeN int, pathArg, query string, body []byte, ctN uint8) {
	t.Helper()
	rt := rf.routes[routeN%len(rf.routes)]
	segs := strings.Split(rt.Path, "/")
	for i, s := range segs {
		if !strings.HasPrefix(s, ":") {
			continue
		}
		switch {
		case pathArg != "":
			segs[i] = pathArg
		case rt.Method == http.MethodDelete:
			segs[i] = uuid.NewString()
		default:
			segs[i] = rf.realID(rt.Path, s[1:])
		}
	}
	req := httptest.NewRequest(rt.Method, "/", bytes.NewReader([]byte(rf.ids.Replace(string(body)))))
	req.URL.Path = strings.Join(segs, "/")
	req.URL.RawPath = ""
	req.URL.RawQuery = rf.ids.Replace(query)
	if ct := fuzzContentTypes[int(ctN)%len(fuzzContentTypes)]; ct != "" {
		req.Header.Set(echo.HeaderContentType, ct)
	}
	switch {
	case strings.HasPrefix(rt.Path, "/admin/"):
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+testAdminToken)
	case strings.HasPrefix(rt.Path, "/telegram/v1/webhooks/"):
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", rf.secret)
	default:
		req.Header.Set(echo.HeaderAuthorization, "Bearer "+rf.key)
	}

	rf.te.logs.reset()
	rec := httptest.NewRecorder()
	rf.te.e.ServeHTTP(rec, req)
	res := response{Code: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
	where := rt.Method + " " + req.URL.Path + "?" + req.URL.RawQuery
	if res.Code >= 500 || res.Code < 200 || res.Code >= 300 && res.Code < 400 {
		t.Fatalf("%s: %d %.500s\nbody sent: %.300q", where, res.Code, res.Body, body)
	}
	if res.Code >= 400 && rt.Method != http.MethodHead {
		var env errorBody
		if err := json.Unmarshal(res.Body, &env); err != nil || env.Error.Code == "" || env.Error.Message == "" || env.Error.RequestID == "" {
			t.Fatalf("%s: %d is not an error envelope: %.500s", where, res.Code, res.Body)
		}
	}
	if logs := rf.te.logs.String(); strings.Contains(logs, `"level":"ERROR"`) {
		t.Fatalf("%s: an error was logged: %.1000s", where, logs)
	}
}

// TestRouter_BadInputEveryRoute sends every known bad body (fuzzBodies) and query
// (fuzzQueries), non-UUID path ids and each Content-Type to every route of the router.
func TestRouter_BadInputEveryRoute(t *testing.T) {
	rf := newRouterFuzz(t)
	for i := range rf.routes {
		for _, b := range fuzzBodies {
			rf.check(t, i, "", "", []byte(b), 0)
		}
		for _, q := range fuzzQueries {
			rf.check(t, i, "", q, nil, 1)
		}
		for ct := range fuzzContentTypes {
			rf.check(t, i, "", "", []byte(`{"name":"x"}`), uint8(ct))
		}
		for _, p := range []string{"not-a-uuid", "%00", "{" + uuid.NewString() + "}", strings.Repeat("9", 300)} {
			rf.check(t, i, p, "", []byte(`{}`), 0)
		}
	}
}

// FuzzRouter fuzzes requests through the real router (api.New on real PostgreSQL, Redis and
// tgemu, built once per fuzzing process): every route of e.Routes(), so that a new route is
// covered without editing this test, with a fuzzed path id, query, body and Content-Type;
// see routerFuzz.check for what every answer must be. The seeds give each known bad body and
// query once (TestRouter_BadInputEveryRoute sends all of them to every route), so that the
// fuzzing engine's baseline stays short. Plain `go test` runs the seeds; `make fuzz` and the
// short run of `make test` fuzz further.
func FuzzRouter(f *testing.F) {
	rf := newRouterFuzz(f)
	n := len(rf.routes)
	for i, b := range fuzzBodies {
		f.Add(uint8(i%n), "", "", []byte(b), uint8(0))
	}
	for i, q := range fuzzQueries {
		f.Add(uint8((i*7)%n), "", q, []byte(nil), uint8(1))
	}
	for i := range n {
		f.Add(uint8(i), "not-a-uuid", "", []byte(`{}`), uint8(i))
	}
	f.Fuzz(func(t *testing.T, routeN uint8, pathArg, query string, body []byte, ctN uint8) {
		rf.check(t, int(routeN), pathArg, query, body, ctN)
	})
}
