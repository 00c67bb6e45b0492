package callbacks

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/botfleet/botfleet/internal/validate"
)

// MaxURLLen is the longest endpoint URL accepted, in bytes.
const MaxURLLen = 2048

// nonPublic are the address ranges a callback may not reach unless AllowPrivate: loopback,
// RFC 1918 and unique local (fc00::/7), link-local (169.254.0.0/16 with the cloud metadata
// address 169.254.169.254, fe80::/10), unspecified, CGNAT (RFC 6598), "this network",
// IETF protocol assignments, benchmarking, documentation, multicast and reserved ranges
// (IANA special-purpose registries), and the IPv6 prefixes that embed an IPv4 address
// (NAT64 64:ff9b::/96, 6to4 2002::/16: their embedded address is checked too).
var nonPublic = func() []netip.Prefix {
	var ps []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
		"192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
		"::/128", "::1/128", "::/96", "100::/64", "2001::/23", "2001:db8::/32", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
	} {
		ps = append(ps, netip.MustParsePrefix(s))
	}
	return ps
}()

var (
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

// IsPrivate reports whether a callback must not connect to ip (see nonPublic): the
// address itself, an IPv4-mapped IPv6 address's IPv4, or the IPv4 embedded in a NAT64 or
// 6to4 address.
func IsPrivate(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return true
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return true
		}
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return IsPrivate(netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}))
		case sixToFour.Contains(ip):
			return IsPrivate(netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}))
		}
	}
	return false
}

// Resolver looks up a host's addresses (net.Resolver.LookupNetIP's shape).
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

type defaultResolver struct{}

func (defaultResolver) LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, network, host)
}

// resolveTimeout bounds the DNS lookup of a URL's host at save time.
const resolveTimeout = 3 * time.Second

// checkURL validates an endpoint URL when it is saved: an absolute http or https URL
// with a host, no user info, no fragment, at most MaxURLLen bytes; unless AllowPrivate, a
// host that is (or resolves to) a non-public address (IsPrivate) or does not resolve is
// refused. Errors: 422 invalid_field "url". It returns the URL as given.
func (s *Service) checkURL(ctx context.Context, raw string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", validate.Field("url", "url is required")
	}
	if len(raw) > MaxURLLen {
		return "", validate.Field("url", "url must be at most %d bytes", MaxURLLen)
	}
	u, err := url.Parse(raw)
	if err != nil || !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return "", validate.Field("url", "url must be an absolute http or https URL")
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", validate.Field("url", "url must use https or http")
	}
	if u.User != nil {
		return "", validate.Field("url", "url must not hold a user name or password")
	}
	if u.Fragment != "" {
		return "", validate.Field("url", "url must not hold a fragment")
	}
	host := u.Hostname()
	if host == "" {
		return "", validate.Field("url", "url must name a host")
	}
	if s.d.AllowPrivate {
		return raw, nil
	}
	if ip, err := netip.ParseAddr(host); err == nil {
		if IsPrivate(ip) {
			return "", privateURL()
		}
		return raw, nil
	}
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return "", privateURL()
	}
	rctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err := s.d.Resolver.LookupNetIP(rctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return "", validate.Field("url", "url's host %q does not resolve", host)
	}
	for _, ip := range ips {
		if IsPrivate(ip) {
			return "", privateURL()
		}
	}
	return raw, nil
}

func privateURL() error {
	return validate.Field("url", "url resolves to a loopback, private or link-local address (refused unless ALLOW_PRIVATE_CALLBACKS=true)")
}

// errDialPrivate is returned by the dialer's Control hook: the address about to be
// connected to is not public.
var errDialPrivate = errors.New("private address refused")

// newHTTPClient returns the delivery client: no proxy (a proxy would connect for us, past
// the check), no redirects followed (a 3xx is a failed attempt), timeout per request, and
// unless allowPrivate a dialer whose Control hook refuses a non-public address right
// before connect(2), after DNS resolution: a host that resolved to a public address when
// saved and to a private one now (DNS rebinding) is refused without connecting.
func newHTTPClient(timeout time.Duration, allowPrivate bool) *http.Client {
	dialer := &net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}
	if !allowPrivate {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil || IsPrivate(ap.Addr()) {
				return errDialPrivate
			}
			return nil
		}
	}
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   8,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}
