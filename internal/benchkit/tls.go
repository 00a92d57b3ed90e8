package benchkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"
)

// TLSServerName is the DNS name SelfSignedCert's certificate is issued for.
const TLSServerName = "bench"

// SelfSignedCert returns a new self-signed ECDSA P-256 certificate for
// TLSServerName, valid from an hour ago to a day from now, with its Leaf set.
func SelfSignedCert() (tls.Certificate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		DNSNames:     []string{TLSServerName},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		return tls.Certificate{}, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: k, Leaf: leaf}, nil
}

// TLSServerConfig returns a TLS 1.3-only server configuration presenting
// cert, with Go's default key exchange (hybrid X25519MLKEM768 first) and no
// session tickets, so that every handshake is a full one.
func TLSServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates:           []tls.Certificate{cert},
		MinVersion:             tls.VersionTLS13,
		SessionTicketsDisabled: true,
	}
}

// TLSClientConfig returns a TLS 1.3-only client configuration that trusts
// exactly the certificate whose DER encoding is der (cert.Certificate[0] of
// SelfSignedCert), verifies it as TLSServerName, and keeps no session cache,
// so it never resumes.
func TLSClientConfig(der []byte) (*tls.Config, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("benchkit: parse certificate: %w", err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{RootCAs: pool, ServerName: TLSServerName, MinVersion: tls.VersionTLS13}, nil
}
