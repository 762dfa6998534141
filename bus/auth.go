package bus

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
)

// Auth is how a process proves who it is to NATS, and how it checks the
// server's TLS certificate. Every field is optional; NATS itself does the
// authentication, Auth only maps onto nats.go's options. Secrets in it are
// never logged: use Redact for anything that may hold one.
type Auth struct {
	// Creds is a JWT credentials file (nats.UserCredentials).
	Creds string
	// NKey is a file holding an nkey seed (nats.NkeyOptionFromSeed).
	NKey string
	// User and Password are a user name and its password (nats.UserInfo).
	User     string
	Password string
	// Token is an authentication token (nats.Token).
	Token string
	// TLSCA is a PEM file of the CAs that sign the servers' certificates
	// (nats.RootCAs); without it the system's roots are used.
	TLSCA string
	// TLSCert and TLSKey are this client's certificate and key, for
	// servers that verify clients (mTLS, nats.ClientCert).
	TLSCert string
	TLSKey  string
}

// IsZero reports whether no field is set.
func (a Auth) IsZero() bool { return a == Auth{} }

// Options returns the nats.go options for a, after checking that the
// methods chosen do not exclude each other and that the files are readable:
// a mistake here is a configuration error (ErrInvalidConfig) that names the
// field, never a secret.
func (a Auth) Options() ([]nats.Option, error) {
	methods := 0
	for _, set := range []bool{a.Creds != "", a.NKey != "", a.User != "" || a.Password != "", a.Token != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		return nil, fmt.Errorf("%w: choose one of creds, nkey, user/password and token", ErrInvalidConfig)
	}
	if a.Password != "" && a.User == "" {
		return nil, fmt.Errorf("%w: a password needs a user", ErrInvalidConfig)
	}
	if (a.TLSCert == "") != (a.TLSKey == "") {
		return nil, fmt.Errorf("%w: tls-cert and tls-key go together", ErrInvalidConfig)
	}
	for _, f := range []struct{ name, path string }{{"creds", a.Creds}, {"nkey", a.NKey}, {"tls-ca", a.TLSCA}, {"tls-cert", a.TLSCert}, {"tls-key", a.TLSKey}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrInvalidConfig, f.name, err)
		}
	}
	var opts []nats.Option
	switch {
	case a.Creds != "":
		opts = append(opts, nats.UserCredentials(a.Creds))
	case a.NKey != "":
		o, err := nats.NkeyOptionFromSeed(a.NKey)
		if err != nil {
			return nil, fmt.Errorf("%w: nkey %s: %w", ErrInvalidConfig, a.NKey, err)
		}
		opts = append(opts, o)
	case a.User != "":
		opts = append(opts, nats.UserInfo(a.User, a.Password))
	case a.Token != "":
		opts = append(opts, nats.Token(a.Token))
	}
	if a.TLSCA != "" {
		opts = append(opts, nats.RootCAs(a.TLSCA))
	}
	if a.TLSCert != "" {
		opts = append(opts, nats.ClientCert(a.TLSCert, a.TLSKey))
	}
	return opts, nil
}

// Redact returns a NATS URL without its secrets: a password becomes
// "xxxxx", and so does a user name given alone (a token). Anything that
// does not parse as a URL is returned without what precedes an "@".
func Redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			return "xxxxx" + raw[i:]
		}
		return raw
	}
	if u.User == nil {
		return raw
	}
	if _, hasPass := u.User.Password(); hasPass {
		u.User = url.UserPassword(u.User.Username(), "xxxxx")
	} else {
		u.User = url.User("xxxxx")
	}
	return u.String()
}

// RedactAll is Redact over a list, split at commas like SplitURLs.
func RedactAll(urls []string) []string {
	out := SplitURLs(urls...)
	for i, u := range out {
		out[i] = Redact(u)
	}
	return out
}

// AuthError reports whether err means NATS refused this process's identity
// (wrong, missing, expired or revoked credentials).
func AuthError(err error) bool {
	return errors.Is(err, nats.ErrAuthorization) || errors.Is(err, nats.ErrAuthExpired) ||
		errors.Is(err, nats.ErrAuthRevoked) || errors.Is(err, nats.ErrAccountAuthExpired) ||
		errors.Is(err, nats.ErrNkeysNotSupported) || errors.Is(err, nats.ErrNoUserCB)
}

// ExplainConnectError says in words why a connection was refused when the
// cause is authentication or TLS, and reports whether it is: such a failure
// does not go away by trying again with the same settings. The words do not
// repeat err's text; put both in a message.
func ExplainConnectError(err error) (string, bool) {
	var unknownCA x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	text := ""
	if err != nil {
		text = err.Error()
	}
	switch {
	case err == nil:
		return "", false
	case AuthError(err):
		return "NATS refused the credentials", true
	case errors.As(err, &unknownCA):
		return "TLS: the server's certificate is signed by an unknown authority; give its CA (tls-ca)", true
	case errors.As(err, &host):
		return "TLS: the server's certificate does not name the host dialed", true
	case errors.As(err, &invalid):
		return "TLS: the server's certificate is not valid", true
	case strings.Contains(text, "certificate required"):
		return "TLS: the server requires a client certificate (tls-cert and tls-key)", true
	case strings.Contains(text, "bad certificate") || strings.Contains(text, "unknown certificate authority") || strings.Contains(text, "certificate unknown"):
		return "TLS: the server refused this client's certificate", true
	case strings.Contains(text, "closed by remote after TLS handshake"):
		// TLS 1.3: the server checks the client certificate after the
		// client has finished its handshake, and hangs up.
		return "TLS: the server hung up after the handshake: it requires a client certificate (tls-cert and tls-key) or refuses this one", true
	case errors.Is(err, nats.ErrSecureConnRequired):
		return "the server requires TLS: use a tls:// URL or give its CA (tls-ca)", true
	case errors.Is(err, nats.ErrSecureConnWanted):
		return "this client asked for TLS but the server does not offer it", true
	case strings.Contains(text, "tls:") || strings.Contains(text, "x509:"):
		return "TLS failed", true
	}
	return "", false
}

// WithoutUserInfo returns a NATS URL with no user, password or token: what
// a node may tell others (they connect with their own credentials).
func WithoutUserInfo(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		if i := strings.LastIndex(raw, "@"); i >= 0 {
			if j := strings.Index(raw, "://"); j >= 0 && j < i {
				return raw[:j+3] + raw[i+1:]
			}
			return raw[i+1:]
		}
		return raw
	}
	u.User = nil
	return u.String()
}
