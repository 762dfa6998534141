// Package testsecure makes, for tests, what a secured NATS deployment has:
// a private CA with server and client certificates, nkeys, an operator with
// accounts and users signed as JWTs, and nats-server configuration files
// started as real embedded servers on loopback.
package testsecure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"
	"github.com/stretchr/testify/require"

	"github.com/mpreg/mpreg/bus"
)

// PKI is a private CA and the PEM files it signed, in a test's temp dir.
type PKI struct {
	CA                    string // the CA's certificate
	ServerCert, ServerKey string // for 127.0.0.1 and localhost
	ClientCert, ClientKey string // a client certificate (mTLS), CN "mpreg-client"
	OtherCA               string // a CA that signed nothing here
	// WrongHostCert and WrongHostKey are signed by CA for the host
	// elsewhere.invalid only.
	WrongHostCert, WrongHostKey string
}

// NewPKI makes a CA, a server and a client certificate, and an unrelated CA.
func NewPKI(t testing.TB) *PKI {
	t.Helper()
	dir := t.TempDir()
	caKey, caCert := newCA(t, "mpreg test CA")
	_, other := newCA(t, "another CA")
	p := &PKI{
		CA:      writePEM(t, dir, "ca.pem", "CERTIFICATE", caCert.Raw),
		OtherCA: writePEM(t, dir, "other-ca.pem", "CERTIFICATE", other.Raw),
	}
	p.ServerCert, p.ServerKey = leaf(t, dir, "server", caKey, caCert, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "localhost"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	p.ClientCert, p.ClientKey = leaf(t, dir, "client", caKey, caCert, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "mpreg-client"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	p.WrongHostCert, p.WrongHostKey = leaf(t, dir, "wronghost", caKey, caCert, &x509.Certificate{
		Subject:     pkix.Name{CommonName: "elsewhere.invalid"},
		DNSNames:    []string{"elsewhere.invalid"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	return p
}

func newCA(t testing.TB, name string) (*ecdsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return key, cert
}

func leaf(t testing.TB, dir, name string, caKey *ecdsa.PrivateKey, ca, tmpl *x509.Certificate) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl.SerialNumber = serial(t)
	tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	require.NoError(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	return writePEM(t, dir, name+".pem", "CERTIFICATE", der), writePEM(t, dir, name+"-key.pem", "EC PRIVATE KEY", kb)
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	require.NoError(t, err)
	return n
}

func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	require.NoError(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600))
	return path
}

// NKey makes a user nkey: the file holding its seed, and its public key.
func NKey(t testing.TB) (seedFile, public string) {
	t.Helper()
	kp, public := newKey(t, nkeys.CreateUser)
	seed, err := kp.Seed()
	require.NoError(t, err)
	seedFile = filepath.Join(t.TempDir(), "user.nk")
	require.NoError(t, os.WriteFile(seedFile, seed, 0o600))
	return seedFile, public
}

// Operator is an operator-mode NATS set-up: an operator, a system account
// and one account, with a user of that account in a credentials file.
type Operator struct {
	// Config is the part of a nats-server configuration that sets the
	// operator, the system account and a memory resolver preloaded with
	// both accounts.
	Config string
	// Creds is a credentials file of a user of the account.
	Creds string
	// Account is the account's public key.
	Account string
	// OtherCreds is a credentials file signed by another operator's
	// account: the server must refuse it.
	OtherCreds string
}

// NewOperator makes an Operator.
func NewOperator(t testing.TB) *Operator {
	t.Helper()
	opKP, opJWT := operator(t)
	sysKP, sysJWT := account(t, opKP, "SYS")
	accKP, accJWT := account(t, opKP, "APP")
	sysPub, err := sysKP.PublicKey()
	require.NoError(t, err)
	accPub, err := accKP.PublicKey()
	require.NoError(t, err)
	otherOp, _ := operator(t)
	otherAcc, _ := account(t, otherOp, "ELSEWHERE")
	return &Operator{
		Config: "operator: " + opJWT + "\nsystem_account: " + sysPub + "\nresolver: MEMORY\n" +
			"resolver_preload: {\n  " + sysPub + ": " + sysJWT + "\n  " + accPub + ": " + accJWT + "\n}\n",
		Creds:      creds(t, accKP, "alice"),
		Account:    accPub,
		OtherCreds: creds(t, otherAcc, "mallory"),
	}
}

// newKey makes a key pair with create and returns it with its public key.
func newKey(t testing.TB, create func() (nkeys.KeyPair, error)) (nkeys.KeyPair, string) {
	t.Helper()
	kp, err := create()
	require.NoError(t, err)
	pub, err := kp.PublicKey()
	require.NoError(t, err)
	return kp, pub
}

func operator(t testing.TB) (nkeys.KeyPair, string) {
	t.Helper()
	kp, pub := newKey(t, nkeys.CreateOperator)
	claims := jwt.NewOperatorClaims(pub)
	claims.Name = "test-operator"
	tok, err := claims.Encode(kp)
	require.NoError(t, err)
	return kp, tok
}

func account(t testing.TB, op nkeys.KeyPair, name string) (nkeys.KeyPair, string) {
	t.Helper()
	kp, pub := newKey(t, nkeys.CreateAccount)
	claims := jwt.NewAccountClaims(pub)
	claims.Name = name
	tok, err := claims.Encode(op)
	require.NoError(t, err)
	return kp, tok
}

func creds(t testing.TB, acc nkeys.KeyPair, name string) string {
	t.Helper()
	kp, pub := newKey(t, nkeys.CreateUser)
	claims := jwt.NewUserClaims(pub)
	claims.Name = name
	tok, err := claims.Encode(acc)
	require.NoError(t, err)
	seed, err := kp.Seed()
	require.NoError(t, err)
	b, err := jwt.FormatUserConfig(tok, seed)
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), name+".creds")
	require.NoError(t, os.WriteFile(path, b, 0o600))
	return path
}

// Server starts an embedded nats-server from the configuration text conf,
// listening on a random loopback port, and shuts it down at cleanup.
func Server(t testing.TB, conf string) *bus.Server {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nats.conf")
	require.NoError(t, os.WriteFile(path, []byte(conf), 0o600))
	s, err := bus.StartServer(bus.ServerConfig{ConfigFile: path, Host: "127.0.0.1", Port: -1})
	require.NoError(t, err)
	t.Cleanup(s.Shutdown)
	return s
}
