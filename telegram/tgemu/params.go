package tgemu

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"
)

// maxRequestBody caps a Bot API request body. Telegram accepts up to 50 MB
// uploads (core.telegram.org/bots/api#sending-files); the emulator never
// stores files, so 50 MB is only an upper bound against runaway clients.
const maxRequestBody = 50 << 20

// params holds the parameters of one Bot API call, normalised to raw strings
// whatever the transport, the way the Bot API server sees them
// (core.telegram.org/bots/api#making-requests):
//
//   - query string: ?chat_id=1&text=hi
//   - application/x-www-form-urlencoded and multipart/form-data: each field's
//     text is the value; objects and arrays are JSON text inside the field
//     (gotgbot v2.0.0-rc.36 sends everything this way, request.go:186-255)
//   - application/json: top-level strings are unquoted, any other JSON value
//     (number, bool, object, array) keeps its JSON text; JSON null is absent.
//
// Body values override query-string values of the same name.
type params struct {
	vals  map[string]string
	files []string // names of multipart file parts (contents discarded)
}

// errBadBody is returned by parseParams for an unparsable body.
var errBadBody = errors.New("can't parse request body")

// parseParams reads the query string and body of r into params.
func parseParams(r *http.Request) (params, error) {
	p := params{vals: map[string]string{}}
	for k, vs := range r.URL.Query() {
		if len(vs) > 0 {
			p.vals[k] = vs[0]
		}
	}
	if r.Body == nil || r.Body == http.NoBody {
		return p, nil
	}
	r.Body = http.MaxBytesReader(nil, r.Body, maxRequestBody)
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch ct {
	case "application/json":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return p, fmt.Errorf("%w: %v", errBadBody, err)
		}
		body = bytes.TrimSpace(body)
		if len(body) == 0 {
			return p, nil
		}
		var m map[string]json.RawMessage
		if err := json.Unmarshal(body, &m); err != nil {
			return p, fmt.Errorf("%w: %v", errBadBody, err)
		}
		for k, v := range m {
			v = bytes.TrimSpace(v)
			switch {
			case len(v) == 0 || string(v) == "null":
				continue
			case v[0] == '"':
				var s string
				if err := json.Unmarshal(v, &s); err != nil {
					return p, fmt.Errorf("%w: %v", errBadBody, err)
				}
				p.vals[k] = s
			default:
				p.vals[k] = string(v)
			}
		}
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return p, fmt.Errorf("%w: %v", errBadBody, err)
		}
		for k, vs := range r.PostForm {
			if len(vs) > 0 {
				p.vals[k] = vs[0]
			}
		}
	case "multipart/form-data":
		if err := r.ParseMultipartForm(32 << 20); err != nil { //nolint:gosec // G120: the emulator is a test double; 32 MiB in memory, the rest spills to temp files
			return p, fmt.Errorf("%w: %v", errBadBody, err)
		}
		defer r.MultipartForm.RemoveAll() //nolint:errcheck // temp files only
		for k, vs := range r.MultipartForm.Value {
			if len(vs) > 0 {
				p.vals[k] = vs[0]
			}
		}
		for k := range r.MultipartForm.File {
			p.files = append(p.files, k)
		}
	default:
		// Telegram ignores bodies it does not understand; so do we.
		_, _ = io.Copy(io.Discard, r.Body)
	}
	return p, nil
}

// has reports whether name was sent with a non-empty value.
func (p params) has(name string) bool { return p.vals[name] != "" }

// str returns the raw value of name ("" when absent).
func (p params) str(name string) string { return p.vals[name] }

// int64 parses name as a base-10 integer. ok is false when it is absent or
// empty; err is set when it is present but not an integer.
func (p params) int64(name string) (v int64, ok bool, err error) {
	s := strings.TrimSpace(p.vals[name])
	if s == "" {
		return 0, false, nil
	}
	v, err = strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%s: not an integer", name)
	}
	return v, true, nil
}

// bool parses name as a Bot API Boolean ("true"/"false", "1"/"0", any case).
// Absent or empty is false.
func (p params) bool(name string) (bool, error) {
	s := strings.TrimSpace(p.vals[name])
	if s == "" {
		return false, nil
	}
	v, err := strconv.ParseBool(strings.ToLower(s))
	if err != nil {
		return false, fmt.Errorf("%s: not a boolean", name)
	}
	return v, nil
}

// json decodes the JSON text of name into dst. ok is false when the field is
// absent, empty or the literal "null" (gotgbot sends nil interfaces such as
// certificate and scope as "null", gen_methods.go:8106, 7553).
func (p params) json(name string, dst any) (ok bool, err error) {
	s := strings.TrimSpace(p.vals[name])
	if s == "" || s == "null" {
		return false, nil
	}
	if err := json.Unmarshal([]byte(s), dst); err != nil {
		return false, fmt.Errorf("%s: %v", name, err)
	}
	return true, nil
}

// copyVals returns a copy of the raw values (for the call log).
func (p params) copyVals() map[string]string {
	out := make(map[string]string, len(p.vals))
	for k, v := range p.vals {
		out[k] = v
	}
	return out
}
