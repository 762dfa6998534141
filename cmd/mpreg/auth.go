package main

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mpreg/mpreg/bus"
)

// authFlags are how a command proves who it is to NATS and checks the
// servers' TLS certificates (docs/SECURITY.md). NATS does the checking;
// these only choose the nats.go options.
type authFlags struct {
	Creds    string `help:"NATS JWT credentials file." placeholder:"FILE" group:"NATS authentication"`
	Nkey     string `help:"NATS nkey seed file." placeholder:"FILE" group:"NATS authentication"`
	User     string `help:"NATS user name (with --password)." placeholder:"U" group:"NATS authentication"`
	Password string `help:"NATS password of --user." placeholder:"P" group:"NATS authentication"`
	Token    string `help:"NATS authentication token." placeholder:"T" group:"NATS authentication"`
	TLSCA    string `name:"tls-ca" help:"PEM file of the CAs that sign the NATS servers' certificates (default: the system's)." placeholder:"FILE" group:"NATS authentication"`
	TLSCert  string `name:"tls-cert" help:"Client certificate (PEM) for servers that verify clients; with --tls-key." placeholder:"FILE" group:"NATS authentication"`
	TLSKey   string `name:"tls-key" help:"Key (PEM) of --tls-cert." placeholder:"FILE" group:"NATS authentication"`
}

// inboxFlags are the reply subjects of a command that calls a cluster: a
// NATS user confined to its own inboxes (subscribe "_INBOX_alice.>") sets
// their prefix.
type inboxFlags struct {
	InboxPrefix string `help:"Prefix of the reply subjects this command subscribes, instead of _INBOX: for a NATS user allowed to subscribe only PREFIX.> (e.g. _INBOX_alice)." placeholder:"PREFIX" group:"NATS authentication"`
}

// auth returns the flags as a bus.Auth.
func (f authFlags) auth() bus.Auth {
	return bus.Auth{Creds: f.Creds, NKey: f.Nkey, User: f.User, Password: f.Password, Token: f.Token,
		TLSCA: f.TLSCA, TLSCert: f.TLSCert, TLSKey: f.TLSKey}
}

// check finds the mistakes bus.Auth.Options would refuse, naming the flags
// as the user typed them: two methods at once, a password without a user,
// half a client certificate, a file that cannot be read.
func (f authFlags) check() error {
	var methods []string
	for _, m := range []struct {
		name string
		set  bool
	}{{"--creds", f.Creds != ""}, {"--nkey", f.Nkey != ""}, {"--user/--password", f.User != "" || f.Password != ""}, {"--token", f.Token != ""}} {
		if m.set {
			methods = append(methods, m.name)
		}
	}
	if len(methods) > 1 {
		return fmt.Errorf("choose one of --creds, --nkey, --user/--password and --token, not %s", strings.Join(methods, " and "))
	}
	if f.Password != "" && f.User == "" {
		return errors.New("--password needs --user")
	}
	if (f.TLSCert == "") != (f.TLSKey == "") {
		return errors.New("--tls-cert and --tls-key go together")
	}
	for _, file := range []struct{ flag, path string }{{"--creds", f.Creds}, {"--nkey", f.Nkey}, {"--tls-ca", f.TLSCA}, {"--tls-cert", f.TLSCert}, {"--tls-key", f.TLSKey}} {
		if file.path == "" {
			continue
		}
		if _, err := os.Stat(file.path); err != nil {
			return fmt.Errorf("%s: %w", file.flag, err)
		}
	}
	return nil
}
