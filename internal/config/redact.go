package config

import (
	"regexp"
	"strings"
)

// redacted replaces a password in a DSN.
const redacted = "xxxxx"

// passwordParamRe matches a password-bearing query parameter of a URL DSN (password,
// sslpassword: PostgreSQL, www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-CONNSTRING;
// any case) up to the next & or #.
var passwordParamRe = regexp.MustCompile(`(?i)([?&](?:ssl)?password=)[^&#]*`)

// passwordKeywordRe matches a password in a keyword/value DSN ("host=db password=secret"):
// spaces around '=' are allowed, and the value is either single-quoted with backslash
// escapes ('a b', 'it\'s') or runs to the next space (libpq-connect.html#LIBPQ-CONNSTRING-KEYWORD-VALUE).
var passwordKeywordRe = regexp.MustCompile(`(?i)(\b(?:ssl)?password\s*=\s*)('(?:[^'\\]|\\.)*'?|\S*)`)

// redactDSN masks every password in raw, a PostgreSQL or Redis DSN in any of its forms:
//
//   - URL userinfo: postgres://user:pass@host, redis://:pass@host, rediss://user:pass@host
//     (the password is what follows the first ':' of the userinfo, which ends at the last
//     '@' before the query, so a password holding '@' is masked whole);
//   - URL query parameters: ?password=..., &password=..., sslpassword;
//   - keyword/value: password=secret, password = 'a b'.
//
// Everything else (user, hosts, database, options) is kept, so the result still tells an
// operator where the process connects.
func redactDSN(raw string) string {
	scheme := strings.Index(raw, "://")
	if scheme < 0 || strings.ContainsAny(raw[:scheme], " =") {
		return passwordKeywordRe.ReplaceAllString(raw, "${1}"+redacted)
	}
	rest := raw[scheme+3:]
	authEnd := len(rest)
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		authEnd = i
	}
	if at := strings.LastIndex(rest[:authEnd], "@"); at >= 0 {
		if user, _, ok := strings.Cut(rest[:at], ":"); ok {
			rest = user + ":" + redacted + rest[at:]
		}
	}
	return raw[:scheme+3] + passwordParamRe.ReplaceAllString(rest, "${1}"+redacted)
}
