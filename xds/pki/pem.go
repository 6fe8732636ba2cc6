package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// PEM block types.
const (
	certificateBlock = "CERTIFICATE"
	pkcs8Block       = "PRIVATE KEY"
	ecKeyBlock       = "EC PRIVATE KEY"
)

// EncodeCertPEM returns cert as a PEM CERTIFICATE block.
func EncodeCertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: certificateBlock, Bytes: cert.Raw})
}

// EncodeCertsPEM returns certs as a bundle of PEM CERTIFICATE blocks, in order.
func EncodeCertsPEM(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(EncodeCertPEM(c))
	}
	return b.Bytes()
}

// EncodeKeyPEM returns key as a PKCS #8 PEM "PRIVATE KEY" block.
func EncodeKeyPEM(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pkcs8Block, Bytes: der}), nil
}

// DecodeCertsPEM parses a bundle of one or more PEM CERTIFICATE blocks. Any other block,
// text between or after blocks, or an unparsable certificate is an error, so that a
// garbled Secret is reported rather than half read.
func DecodeCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for i := 0; ; i++ {
		if len(bytes.TrimSpace(rest)) == 0 {
			break
		}
		block, r := pem.Decode(rest)
		if block == nil {
			return nil, fmt.Errorf("certificate PEM: block %d: no PEM data (garbled or not PEM)", i+1)
		}
		if !onlySpaceBefore(rest, block.Type) {
			return nil, fmt.Errorf("certificate PEM: block %d: unexpected text before the block", i+1)
		}
		rest = r
		if block.Type != certificateBlock {
			return nil, fmt.Errorf("certificate PEM: block %d is %q, want %q", i+1, block.Type, certificateBlock)
		}
		if len(block.Headers) != 0 {
			return nil, fmt.Errorf("certificate PEM: block %d has headers; encrypted or non-standard PEM is not supported", i+1)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate PEM: block %d: %w", i+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("certificate PEM: empty, want at least one CERTIFICATE block")
	}
	return certs, nil
}

// DecodeCertPEM parses exactly one PEM CERTIFICATE block.
func DecodeCertPEM(data []byte) (*x509.Certificate, error) {
	certs, err := DecodeCertsPEM(data)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("certificate PEM: %d certificates, want exactly one", len(certs))
	}
	return certs[0], nil
}

// DecodeKeyPEM parses exactly one ECDSA private key, PKCS #8 ("PRIVATE KEY") or SEC 1
// ("EC PRIVATE KEY").
func DecodeKeyPEM(data []byte) (*ecdsa.PrivateKey, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, errors.New("private key PEM: empty")
	}
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, errors.New("private key PEM: no PEM data (garbled or not PEM)")
	}
	if !onlySpaceBefore(data, block.Type) {
		return nil, errors.New("private key PEM: unexpected text before the block")
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("private key PEM: unexpected data after the key; want exactly one block")
	}
	if len(block.Headers) != 0 {
		return nil, errors.New("private key PEM: block has headers; encrypted keys are not supported")
	}
	switch block.Type {
	case pkcs8Block:
		k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("private key PEM: %w", err)
		}
		ec, ok := k.(*ecdsa.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key PEM: key is %T, want ECDSA", k)
		}
		return ec, nil
	case ecKeyBlock:
		k, err := x509.ParseECPrivateKey(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("private key PEM: %w", err)
		}
		return k, nil
	default:
		return nil, fmt.Errorf("private key PEM: block is %q, want %q or %q", block.Type, pkcs8Block, ecKeyBlock)
	}
}

// onlySpaceBefore reports whether data holds nothing but white space before the first
// "-----BEGIN <typ>" line; pem.Decode itself skips any leading text.
func onlySpaceBefore(data []byte, typ string) bool {
	i := bytes.Index(data, []byte("-----BEGIN "+typ))
	return i >= 0 && len(bytes.TrimSpace(data[:i])) == 0
}

// CertPEM returns the CA certificate as PEM.
func (ca *CA) CertPEM() []byte { return EncodeCertPEM(ca.Cert) }

// KeyPEM returns the CA key as PKCS #8 PEM.
func (ca *CA) KeyPEM() ([]byte, error) { return EncodeKeyPEM(ca.Key) }

// CertPEM returns the certificate as PEM.
func (kp *KeyPair) CertPEM() []byte { return EncodeCertPEM(kp.Cert) }

// KeyPEM returns the key as PKCS #8 PEM.
func (kp *KeyPair) KeyPEM() ([]byte, error) { return EncodeKeyPEM(kp.Key) }

// LoadCA parses a CA from PEM (as stored in its Secret) and checks that the certificate is a
// CA and that the key is its own.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := DecodeCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	key, err := DecodeKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load CA: certificate %q is not a CA", cert.Subject.CommonName)
	}
	if !keysMatch(cert, key) {
		return nil, fmt.Errorf("load CA: the key does not belong to certificate %q", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// LoadKeyPair parses a leaf certificate and its key from PEM and checks that they match.
func LoadKeyPair(certPEM, keyPEM []byte) (*KeyPair, error) {
	cert, err := DecodeCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load key pair: %w", err)
	}
	key, err := DecodeKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load key pair: %w", err)
	}
	if !keysMatch(cert, key) {
		return nil, fmt.Errorf("load key pair: the key does not belong to certificate %q", cert.Subject.CommonName)
	}
	return &KeyPair{Cert: cert, Key: key}, nil
}
