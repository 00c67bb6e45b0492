package testlog

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
)

// Shapes of secrets that Scan reports even when no test recorded them.
var (
	// BotTokenRe is a Telegram bot token: the bot's id, a colon, 35 characters
	// (core.telegram.org/bots/api#authorizing-your-bot; tgemu issues the same shape).
	BotTokenRe = regexp.MustCompile(`\d{3,}:[A-Za-z0-9_-]{35}`)
	// APIKeyRe is a botfleet API key: tenant.KeyPrefix "bf_" and 43 base64url characters.
	APIKeyRe = regexp.MustCompile(`bf_[A-Za-z0-9_-]{43}`)
)

// minPartLen is the shortest piece of a recorded secret that Scan looks for on its own
// (the 35-character secret part of a bot token logged without its id, say).
const minPartLen = 16

// Finding is one secret found in a log: the file (relative to the scanned directory), the
// line (1-based), what kind of secret, and the secret masked to its first 4 characters.
type Finding struct {
	File   string
	Line   int
	Kind   string
	Masked string
}

// String formats f as "file:line: kind abcd… (n characters)".
func (f Finding) String() string {
	return fmt.Sprintf("%s:%d: %s %s", f.File, f.Line, f.Kind, f.Masked)
}

// Report is what Scan read and found.
type Report struct {
	// Files and Bytes count the log files read.
	Files int
	Bytes int64
	// Secrets counts the distinct secrets recorded by the tests.
	Secrets  int
	Findings []Finding
}

func mask(s string) string {
	n := min(4, len(s))
	return fmt.Sprintf("%q… (%d characters)", s[:n], len(s))
}

// isWordByte reports whether c can be part of a token, key or secret: [A-Za-z0-9_-].
func isWordByte(c byte) bool {
	return c == '_' || c == '-' || ('0' <= c && c <= '9') || ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z')
}

// words splits s into maximal runs of word bytes.
func words(s []byte, fn func(w []byte)) {
	start := -1
	for i := 0; i <= len(s); i++ {
		if i < len(s) && isWordByte(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			fn(s[start:i])
			start = -1
		}
	}
}

// needles turns the recorded secrets into the words Scan looks for: every secret that is
// one word, and each word of at least minPartLen characters of the others (the secret part
// of "123:abc…").
func needles(secrets map[string]string) map[string]string {
	out := map[string]string{}
	for v, kind := range secrets {
		whole := true
		words([]byte(v), func(w []byte) {
			if len(w) != len(v) {
				whole = false
			}
		})
		if whole {
			out[v] = kind
			continue
		}
		words([]byte(v), func(w []byte) {
			if len(w) >= minPartLen {
				out[string(w)] = kind + " (part)"
			}
		})
	}
	return out
}

// Scan reads every *.log file under dir and reports each line that holds a secret recorded
// in dir's secrets files (RecordSecret), a bot token (BotTokenRe) or an API key (APIKeyRe).
// A recorded secret is matched as a whole word of [A-Za-z0-9_-], so that it is found in any
// log format (text, JSON, URLs). Errors: reading dir.
func Scan(dir string) (Report, error) {
	var rep Report
	secrets, err := readSecrets(dir)
	if err != nil {
		return rep, err
	}
	rep.Secrets = len(secrets)
	find := needles(secrets)
	var files []string
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && filepath.Ext(path) == LogSuffix {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		return rep, err
	}
	sort.Strings(files)
	for _, path := range files {
		rel, _ := filepath.Rel(dir, path)
		n, found, err := scanFile(path, rel, find)
		if err != nil {
			return rep, err
		}
		rep.Files++
		rep.Bytes += n
		rep.Findings = append(rep.Findings, found...)
	}
	return rep, nil
}

func scanFile(path, rel string, find map[string]string) (int64, []Finding, error) {
	f, err := os.Open(filepath.Clean(path))
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var n int64
	var out []Finding
	for line := 1; ; line++ {
		b, err := r.ReadBytes('\n')
		n += int64(len(b))
		if len(b) > 0 {
			seen := map[string]bool{}
			add := func(kind, v string) {
				if !seen[v] {
					seen[v] = true
					out = append(out, Finding{File: rel, Line: line, Kind: kind, Masked: mask(v)})
				}
			}
			words(b, func(w []byte) {
				if kind, ok := find[string(w)]; ok {
					add("recorded "+kind, string(w))
				}
			})
			for _, m := range BotTokenRe.FindAll(b, -1) {
				add("bot token shape", string(m))
			}
			for _, m := range APIKeyRe.FindAll(b, -1) {
				add("API key shape", string(m))
			}
		}
		if errors.Is(err, io.EOF) {
			return n, out, nil
		}
		if err != nil {
			return n, out, fmt.Errorf("%s: %w", path, err)
		}
	}
}
