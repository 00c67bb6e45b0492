package api

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/labstack/echo/v4"
)

// badInput is one request a careless or hostile client might send, and the answer it must get.
type badInput struct {
	name        string
	method      string
	path        string // {bot}, {contact} and {broadcast} are replaced by real ids
	key         string // "admin", "tenant", "webhook" (the bot's secret header) or "" (none)
	contentType string // "" = application/json; "-" = no Content-Type header
	body        string
	status      int
	code        string // error code, "" for a 2xx
	field       string // details.field of the envelope, "" when none is expected
}

// year0Cursor is a page cursor whose timestamp PostgreSQL cannot store (year 0000): it
// answered 500 on every list before the cursor decoder checked the range.
var year0Cursor = base64.RawURLEncoding.EncodeToString([]byte("0000-01-01T00:00:00Z|" + uuid.NewString()))

// badInputs are the bad inputs of issue 6 ("Bad input, tried as a new user would") and their
// answers. The first four groups answered 500 before internal/validate existed.
func badInputs() []badInput {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	return []badInput{
		// NUL and control characters in strings (bun wrote a NUL into the SQL text: 500).
		{"tenant name NUL", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"\u0000"}`, 422, "invalid_field", "name"},
		{"tenant name NUL inside", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"a\u0000b"}`, 422, "invalid_field", "name"},
		{"tenant name bell", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"a\u0007b"}`, 422, "invalid_field", "name"},
		{"tenant name newline", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"a\nb"}`, 422, "invalid_field", "name"},
		{"tenant name C1 control", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"a\u0085b"}`, 422, "invalid_field", "name"},
		{"tenant name blank", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"   "}`, 422, "invalid_field", "name"},
		{"tenant name 201 chars", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"` + strings.Repeat("é", 201) + `"}`, 422, "invalid_field", "name"},
		{"tenant name 200 chars", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"` + strings.Repeat("é", 200) + `"}`, 201, "", ""},
		{"tenant name emoji ZWJ", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"👩‍💻 team"}`, 201, "", ""},
		{"bot create name NUL", "POST", "/telegram/v1/bots/", "tenant", "", `{"name":"\u0000","bot_token":"123:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`, 422, "invalid_field", "name"},
		{"bot update name NUL", "PUT", "/telegram/v1/bots/{bot}/", "tenant", "", `{"name":"\u0000"}`, 422, "invalid_field", "name"},
		{"bot update name tab", "PUT", "/telegram/v1/bots/{bot}/", "tenant", "", `{"name":"a\tb"}`, 422, "invalid_field", "name"},
		{"bot token NUL", "POST", "/telegram/v1/bots/", "tenant", "", `{"name":"x","bot_token":"123:\u0000AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}`, 422, "invalid_field", "bot_token"},
		{"message text NUL", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"hi\u0000"}`, 422, "invalid_field", "text"},
		{"message text ESC", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"hi\u001b[31m"}`, 422, "invalid_field", "text"},
		{"message text DEL", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"hi\u007f"}`, 422, "invalid_field", "text"},
		{"message text tab newline CRLF", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"a\tb\nc\r\nd"}`, 202, "", ""},
		{"message text blank", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":" \n\t "}`, 422, "invalid_field", "text"},
		{"message text 4097 chars", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"` + strings.Repeat("ж", 4097) + `"}`, 422, "invalid_field", "text"},
		{"message text 4096 chars", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"` + strings.Repeat("ж", 4096) + `"}`, 202, "", ""},
		{"broadcast name NUL", "POST", "/broadcast/", "tenant", "", `{"name":"\u0000","platform":"TELEGRAM","message_text":"hi","recipients":["{contact}"]}`, 422, "invalid_field", "name"},
		{"broadcast text NUL", "POST", "/broadcast/", "tenant", "", `{"name":"n","platform":"TELEGRAM","message_text":"\u0000","recipients":["{contact}"]}`, 422, "invalid_field", "message_text"},
		{"broadcast platform NUL", "POST", "/broadcast/", "tenant", "", `{"name":"n","platform":"TELEGRAM\u0000","message_text":"hi","recipients":["{contact}"]}`, 422, "invalid_field", "platform"},

		// Page cursors: year 0000 answered 500 on every list (PostgreSQL rejects the timestamp).
		{"bots cursor year 0000", "GET", "/telegram/v1/bots/?cursor=" + year0Cursor, "tenant", "", "", 422, "invalid_cursor", "cursor"},
		{"contacts cursor year 0000", "GET", "/contacts/?cursor=" + year0Cursor, "tenant", "", "", 422, "invalid_cursor", "cursor"},
		{"broadcasts cursor year 0000", "GET", "/broadcast/?cursor=" + year0Cursor, "tenant", "", "", 422, "invalid_cursor", "cursor"},
		{"events cursor year 0000", "GET", "/telegram/v1/webhook-events/?cursor=" + year0Cursor, "tenant", "", "", 422, "invalid_cursor", "cursor"},
		{"cursor not base64", "GET", "/contacts/?cursor=%00%ff", "tenant", "", "", 422, "invalid_cursor", "cursor"},
		{"cursor with offset", "GET", "/contacts/?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("0001-01-01T00:30:00+01:00|"+uuid.NewString())), "tenant", "", "", 422, "invalid_cursor", "cursor"},
		{"events cursor negative", "GET", "/telegram/v1/webhook-events/?cursor=" + base64.RawURLEncoding.EncodeToString([]byte("i-1")), "tenant", "", "", 422, "invalid_cursor", "cursor"},

		// parse_mode: one rule (case-insensitive HTML, MarkdownV2, Markdown) for messages and broadcasts.
		{"message parse_mode html", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"<b>x</b>","parse_mode":"html"}`, 202, "", ""},
		{"message parse_mode bogus", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"x","parse_mode":"html5"}`, 422, "invalid_field", "parse_mode"},
		{"broadcast parse_mode markdownv2", "POST", "/broadcast/", "tenant", "", `{"name":"n","platform":"telegram","message_text":"*x*","parse_mode":"markdownv2","recipients":["{contact}"]}`, 202, "", ""},
		{"broadcast parse_mode bogus", "POST", "/broadcast/", "tenant", "", `{"name":"n","platform":"TELEGRAM","message_text":"x","parse_mode":"BBCode","recipients":["{contact}"]}`, 422, "invalid_field", "parse_mode"},

		// Unknown fields name the field.
		{"tenant unknown field", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"x","plan":"pro"}`, 400, "unknown_field", "plan"},
		{"bot unknown field", "PUT", "/telegram/v1/bots/{bot}/", "tenant", "", `{"nmae":"typo"}`, 400, "unknown_field", "nmae"},
		{"message unknown field", "POST", "/messages/", "tenant", "", `{"contact_id":"{contact}","text":"x","chat":1}`, 400, "unknown_field", "chat"},
		{"broadcast unknown field", "POST", "/broadcast/", "tenant", "", `{"name":"n","platform":"TELEGRAM","message_text":"x","recipients":["{contact}"],"sendAt":"2030-01-01T00:00:00Z"}`, 400, "unknown_field", "sendAt"},

		// Invalid UTF-8, deep nesting, huge numbers.
		{"invalid UTF-8 in a string", "POST", "/admin/v1/tenants/", "admin", "", "{\"name\":\"a\xffb\"}", 400, "malformed_request", ""},
		{"invalid UTF-8 overlong NUL", "POST", "/messages/", "tenant", "", "{\"contact_id\":\"{contact}\",\"text\":\"a\xc0\x80b\"}", 400, "malformed_request", ""},
		{"lone surrogate escape (U+FFFD)", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"\ud800"}`, 201, "", ""},
		{"deep nesting", "POST", "/admin/v1/tenants/", "admin", "", `{"name":` + deep + `}`, 400, "malformed_request", ""},
		{"deep nesting broadcast", "POST", "/broadcast/", "tenant", "", `{"recipients":` + deep + `}`, 400, "malformed_request", ""},
		{"daily_limit 1e400", "POST", "/telegram/v1/bots/", "tenant", "", `{"name":"x","bot_token":"1:AAAAAAAAAAAAAAAAAAAAAAAA","daily_limit":1e400}`, 400, "malformed_request", "daily_limit"},
		{"daily_limit over int64", "PUT", "/telegram/v1/bots/{bot}/", "tenant", "", `{"daily_limit":99999999999999999999999}`, 400, "malformed_request", "daily_limit"},
		{"daily_limit over int32", "PUT", "/telegram/v1/bots/{bot}/", "tenant", "", `{"daily_limit":2147483648}`, 422, "invalid_field", "daily_limit"},
		{"daily_limit fraction", "PUT", "/telegram/v1/bots/{bot}/", "tenant", "", `{"daily_limit":1.5}`, 400, "malformed_request", "daily_limit"},
		{"limit 1e400", "GET", "/contacts/?limit=1e400", "tenant", "", "", 422, "invalid_field", "limit"},
		{"limit over int64", "GET", "/broadcast/?limit=99999999999999999999", "tenant", "", "", 422, "invalid_field", "limit"},
		{"limit 0", "GET", "/telegram/v1/bots/?limit=0", "tenant", "", "", 422, "invalid_field", "limit"},

		// Content types: JSON (any parameters, +json) or none; anything else is 415.
		{"text/plain", "POST", "/admin/v1/tenants/", "admin", "text/plain", `{"name":"x"}`, 415, "unsupported_media_type", ""},
		{"form", "POST", "/messages/", "tenant", "application/x-www-form-urlencoded", `text=hi`, 415, "unsupported_media_type", ""},
		{"form empty", "POST", "/admin/v1/tenants/", "admin", "application/x-www-form-urlencoded", ``, 415, "unsupported_media_type", ""},
		// curl -d '{...}' without -H sends this type: a JSON body is taken as JSON.
		{"curl -d JSON", "POST", "/admin/v1/tenants/", "admin", "application/x-www-form-urlencoded", `{"name":"curl"}`, 201, "", ""},
		{"multipart", "POST", "/broadcast/", "tenant", "multipart/form-data; boundary=x", `--x--`, 415, "unsupported_media_type", ""},
		{"broken media type", "PUT", "/telegram/v1/bots/{bot}/", "tenant", "application/", `{}`, 415, "unsupported_media_type", ""},
		{"json with charset", "POST", "/admin/v1/tenants/", "admin", "application/json; charset=utf-8", `{"name":"x"}`, 201, "", ""},
		{"no content type", "POST", "/admin/v1/tenants/", "admin", "-", `{"name":"x"}`, 201, "", ""},

		// Path ids that are not UUIDs.
		{"bot id not a uuid", "GET", "/telegram/v1/bots/1/", "tenant", "", "", 404, "bot_not_found", ""},
		{"bot id NUL", "PUT", "/telegram/v1/bots/%00/", "tenant", "", `{}`, 404, "bot_not_found", ""},
		{"contact id braces", "GET", "/contacts/%7B" + uuid.NewString() + "%7D/", "tenant", "", "", 404, "contact_not_found", ""},
		{"broadcast id urn", "POST", "/broadcast/urn:uuid:" + uuid.NewString() + "/cancel/", "tenant", "", "", 404, "broadcast_not_found", ""},
		{"message id too long", "GET", "/messages/" + strings.Repeat("a", 5000) + "/", "tenant", "", "", 404, "message_not_found", ""},
		{"query bot_app_id not a uuid", "GET", "/contacts/?bot_app_id=%00", "tenant", "", "", 422, "invalid_field", "bot_app_id"},
		{"body bot_app_id not a uuid", "POST", "/messages/", "tenant", "", `{"bot_app_id":"x","contact_id":"{contact}","text":"x"}`, 422, "invalid_field", "bot_app_id"},
		{"recipient not a uuid", "POST", "/broadcast/", "tenant", "", `{"name":"n","platform":"TELEGRAM","message_text":"x","recipients":["\u0000"]}`, 422, "invalid_field", "recipients"},

		// Webhook deliveries (Telegram's side): a 4xx tells Telegram not to retry a bad update.
		{"webhook NUL escape", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":1,"message":{"text":"\u0000"}}`, 400, "malformed_request", ""},
		{"webhook invalid UTF-8", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", "{\"update_id\":2,\"message\":{\"text\":\"\xff\"}}", 400, "malformed_request", ""},
		{"webhook nested 20000", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":3,"x":` + deep + `}`, 400, "malformed_request", ""},
		{"webhook nested 9000 (valid JSON)", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":4,"x":` + strings.Repeat("[", 9000) + strings.Repeat("]", 9000) + `}`, 200, "", ""},
		{"webhook escaped backslash u0000 (valid)", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":9,"message":{"text":"\\u0000"}}`, 200, "", ""},
		{"webhook update_id 1e400", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":1e400}`, 400, "malformed_request", ""},
		{"webhook update_id over int64", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":99999999999999999999}`, 400, "malformed_request", ""},
		{"webhook huge number", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":5,"x":1e1000000}`, 400, "malformed_request", ""},
		{"webhook big number", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `{"update_id":6,"x":1e400}`, 200, "", ""},
		{"webhook not an object", "POST", "/telegram/v1/webhooks/{bot}/", "webhook", "", `[{"update_id":7}]`, 400, "malformed_request", ""},
		{"webhook no secret", "POST", "/telegram/v1/webhooks/{bot}/", "", "", `{"update_id":8}`, 401, "invalid_secret_token", ""},

		// Oversized bodies.
		{"oversized body", "POST", "/admin/v1/tenants/", "admin", "", `{"name":"` + strings.Repeat("x", DefaultBodyLimit) + `"}`, 413, "payload_too_large", ""},
	}
}

// TestBadInput sends every bad input of badInputs through the real router and checks the
// status, the code and details.field; every answer is also checked against openapi.yaml.
func TestBadInput(t *testing.T) {
	te := newEnv(t)
	tid, key := te.newTenant("Acme")
	bot, info := te.newBot(key, "Bot")
	secret := te.emu.WebhookInfo(info.ID).SecretToken
	contact := te.newContact(tid, bot.BotAppID, 777)
	ids := strings.NewReplacer("{bot}", bot.BotAppID.String(), "{contact}", contact.ID.String())
	for _, in := range badInputs() {
		t.Run(in.name, func(t *testing.T) {
			k := map[string]string{"admin": testAdminToken, "tenant": key}[in.key]
			var body any
			if in.body != "" {
				body = ids.Replace(in.body)
			}
			req := request(t, in.method, ids.Replace(in.path), k, body)
			if in.key == "webhook" {
				req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
			}
			switch in.contentType {
			case "-":
				req.Header.Del(echo.HeaderContentType)
			case "":
			default:
				req.Header.Set(echo.HeaderContentType, in.contentType)
			}
			r := te.serve(req)
			if r.Code != in.status {
				t.Fatalf("status %d, want %d: %.300s", r.Code, in.status, r.Body)
			}
			if in.code == "" {
				return
			}
			if code := r.errorCode(t); code != in.code {
				t.Fatalf("code %q, want %q: %.300s", code, in.code, r.Body)
			}
			var env struct {
				Error struct {
					Details map[string]any `json:"details"`
				} `json:"error"`
			}
			if err := json.Unmarshal(r.Body, &env); err != nil {
				t.Fatal(err)
			}
			if got, _ := env.Error.Details["field"].(string); got != in.field {
				t.Fatalf("details.field %q, want %q: %.300s", got, in.field, r.Body)
			}
		})
	}
	// Nothing of the rejected input reached the logs as an error (no 5xx was logged).
	if strings.Contains(te.logs.String(), `"level":"ERROR"`) {
		t.Errorf("errors were logged:\n%.2000s", te.logs.String())
	}
}
