package telegram

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/PaulSonOfLars/gotgbot/v2"
	"github.com/google/uuid"

	"github.com/botfleet/botfleet/internal/apperr"
)

// FuzzParseUpdate fuzzes the webhook update decoder: parseUpdate (what Ingest checks before a
// row is stored) and, for the updates it accepts, the worker's decoding of the stored payload
// (gotgbot.Update, planUpdate, parseCommand). Nothing may panic; a refused body is
// apperr.ErrMalformed (400); an accepted one is valid UTF-8 JSON with a positive update_id
// and no NUL anywhere (jsonb stores it), and the time taken from it is one PostgreSQL stores.
// Plain `go test` runs the seeds; `make fuzz` runs it longer.
func FuzzParseUpdate(f *testing.F) {
	for _, seed := range []string{
		`{"update_id":1,"message":{"message_id":1,"date":1700000000,"chat":{"id":5,"type":"private"},"from":{"id":5,"is_bot":false,"first_name":"Ann"},"text":"/start@bot x","entities":[{"type":"bot_command","offset":0,"length":10}]}}`,
		`{"update_id":2,"my_chat_member":{"chat":{"id":5,"type":"private"},"from":{"id":5,"first_name":"A"},"date":1,"old_chat_member":{"status":"member","user":{"id":1}},"new_chat_member":{"status":"kicked","user":{"id":1},"until_date":0}}}`,
		`{"update_id":3,"callback_query":{"id":"x","from":{"id":5,"first_name":"A"},"data":"d","chat_instance":"c"}}`,
		`{"update_id":4,"message":{"text":"\u0000"}}`,
		`{"\u0000":1,"update_id":5}`,
		`{"update_id":6,"message":{"text":"\\u0000"}}`,
		"{\"update_id\":7,\"message\":{\"text\":\"\xff\xfe\"}}",
		`{"update_id":8,"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}`,
		`{"update_id":1e400}`,
		`{"update_id":99999999999999999999}`,
		`{"update_id":-1}`,
		`{"update_id":"1"}`,
		`{"update_id":9,"message":{"date":9223372036854775807,"chat":{"id":1}}}`,
		`{"update_id":10,"message":{"date":-62135596801,"chat":{"id":1}}}`,
		`{"update_id":11,"message":{"chat":{"id":1e400}}}`,
		`[1]`, `null`, `{}`, ``, `{"update_id":12}{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		id, typ, err := parseUpdate(body)
		if err != nil {
			var ae *apperr.Error
			if !errors.As(err, &ae) || ae.Kind != apperr.KindMalformed || ae.Code == "" {
				t.Fatalf("refused with %v, want a 400 malformed_request", err)
			}
			return
		}
		if id <= 0 || typ == "" {
			t.Fatalf("accepted update_id %d, type %q", id, typ)
		}
		if !utf8.Valid(body) || !json.Valid(body) {
			t.Fatalf("accepted a body that is not UTF-8 JSON: %q", body)
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber() // 1e400 is valid JSON (and jsonb numeric), not a float64
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
		if hasNUL(v) {
			t.Fatalf("accepted a body with NUL, which jsonb refuses: %q", body)
		}

		// What the worker does with the stored payload.
		var u gotgbot.Update
		if json.Unmarshal(body, &u) != nil {
			return // kept with a process_error, never retried
		}
		p := &eventPlan{ev: &WebhookEvent{BotID: uuid.New(), TenantID: uuid.New()}}
		planUpdate(p, &u)
		if !p.seen.IsZero() && (p.seen.Year() < 1 || p.seen.Year() > 9999) {
			t.Fatalf("seen at %v, which PostgreSQL cannot store", p.seen)
		}
		if p.msg != nil {
			parseCommand(p.msg, "bot")
		}
	})
}

// hasNUL reports whether a decoded JSON value holds U+0000 in any key or string.
func hasNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.ContainsRune(x, 0)
	case []any:
		for _, e := range x {
			if hasNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if strings.ContainsRune(k, 0) || hasNUL(e) {
				return true
			}
		}
	}
	return false
}
