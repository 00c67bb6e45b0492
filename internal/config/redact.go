package config

import (
	"errors"
	"fmt"
	"net/url"
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

// validateDSNs checks that DATABASE_URL and REDIS_URL, when URL-shaped, parse as URLs. It
// runs in Load, before any library parses them, because net/url's errors quote the whole
// URL, password included (`parse "postgres://u:pass@h:x/db": invalid port`), and the
// drivers' callers print them; here the quoted URL is redacted.
func (c Config) validateDSNs() []error {
	var errs []error
	for _, v := range []struct {
		name string
		dsn  Secret
	}{{"DATABASE_URL", c.DatabaseURL}, {"REDIS_URL", c.RedisURL}} {
		raw := v.dsn.Reveal()
		if !strings.Contains(raw, "://") {
			continue
		}
		if _, err := url.Parse(raw); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", v.name, RedactURLError(err)))
		}
	}
	return errs
}

// RedactURLError returns err with the URL that a *url.Error quotes redacted (RedactURL);
// other errors are returned unchanged.
func RedactURLError(err error) error {
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	return fmt.Errorf("%s %q: %w", ue.Op, RedactURL(ue.URL), ue.Err)
}
