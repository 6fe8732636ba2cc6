package pki

import (
	"bytes"
	"strings"
	"testing"
)

func TestPEMRoundTrip(t *testing.T) {
	ca := newTestCA(t)
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadCA(ca.CertPEM(), keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !loaded.Cert.Equal(ca.Cert) || !loaded.Key.Equal(ca.Key) {
		t.Error("CA changed across PEM")
	}
	kp, err := loaded.IssueClient("ingress/berth", t0, DefaultLeafLifetime)
	if err != nil {
		t.Fatal(err)
	}
	kpKey, _ := kp.KeyPEM()
	if _, err := LoadKeyPair(kp.CertPEM(), kpKey); err != nil {
		t.Fatal(err)
	}
	other := newTestCA(t)
	bundle := EncodeCertsPEM(ca.Cert, other.Cert)
	certs, err := DecodeCertsPEM(bundle)
	if err != nil || len(certs) != 2 || !certs[1].Equal(other.Cert) {
		t.Fatalf("bundle: %d certs, %v", len(certs), err)
	}
	if _, err := DecodeCertPEM(bundle); err == nil {
		t.Error("DecodeCertPEM accepted two certificates")
	}
	// A leaf is not a CA; a CA with another CA's key is refused.
	if _, err := LoadCA(kp.CertPEM(), kpKey); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("LoadCA(leaf): %v", err)
	}
	otherKey, _ := other.KeyPEM()
	if _, err := LoadCA(ca.CertPEM(), otherKey); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Errorf("LoadCA(mismatched key): %v", err)
	}
	if _, err := LoadKeyPair(kp.CertPEM(), otherKey); err == nil {
		t.Error("LoadKeyPair accepted a mismatched key")
	}
}

func TestPEMGarbled(t *testing.T) {
	ca := newTestCA(t)
	certPEM := ca.CertPEM()
	keyPEM, _ := ca.KeyPEM()
	cases := []struct {
		name, in, want string
	}{
		{"empty", "", "empty"},
		{"not pem", "hello", "no PEM data"},
		{"text before", "junk\n" + string(certPEM), "before"},
		{"text after", string(certPEM) + "junk", "no PEM data"},
		{"key as cert", string(keyPEM), `"PRIVATE KEY"`},
		{"truncated", string(certPEM[:len(certPEM)/2]), "no PEM data"},
		{"bad base64 body", strings.Replace(string(certPEM), "M", "!", 3), "no PEM data"},
		{"bad DER", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "block 1"},
	}
	for _, c := range cases {
		_, err := DecodeCertsPEM([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: DecodeCertsPEM error %v, want it to mention %q", c.name, err, c.want)
		}
	}
	keyCases := []struct {
		name, in, want string
	}{
		{"empty", " \n", "empty"},
		{"cert as key", string(certPEM), "want"},
		{"two keys", string(keyPEM) + string(keyPEM), "after the key"},
		{"bad DER", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", "private key PEM"},
		{"encrypted", "-----BEGIN EC PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\nAAAA\n-----END EC PRIVATE KEY-----\n", "headers"},
	}
	for _, c := range keyCases {
		_, err := DecodeKeyPEM([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: DecodeKeyPEM error %v, want it to mention %q", c.name, err, c.want)
		}
	}
}

func FuzzDecodeCertsPEM(f *testing.F) {
	ca, err := NewCA("fuzz", t0, DefaultCALifetime)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.CertPEM())
	f.Add(EncodeCertsPEM(ca.Cert, ca.Cert))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := DecodeCertsPEM(data)
		if err != nil {
			return
		}
		if len(certs) == 0 {
			t.Fatal("no error and no certificates")
		}
		// What was accepted re-encodes to certificates that decode the same.
		again, err := DecodeCertsPEM(EncodeCertsPEM(certs...))
		if err != nil || len(again) != len(certs) {
			t.Fatalf("re-decode: %d certs, %v", len(again), err)
		}
		for i := range certs {
			if !bytes.Equal(certs[i].Raw, again[i].Raw) {
				t.Fatalf("certificate %d changed", i)
			}
		}
	})
}

func FuzzDecodeKeyPEM(f *testing.F) {
	ca, err := NewCA("fuzz", t0, DefaultCALifetime)
	if err != nil {
		f.Fatal(err)
	}
	keyPEM, _ := ca.KeyPEM()
	f.Add(keyPEM)
	f.Add([]byte("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		key, err := DecodeKeyPEM(data)
		if err != nil {
			return
		}
		if key == nil {
			t.Fatal("no error and no key")
		}
		enc, err := EncodeKeyPEM(key)
		if err != nil {
			t.Fatalf("re-encode an accepted key: %v", err)
		}
		again, err := DecodeKeyPEM(enc)
		if err != nil || !again.Equal(key) {
			t.Fatalf("re-decode: %v", err)
		}
	})
}
