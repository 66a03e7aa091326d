package schedule

import (
	"bytes"
	"testing"
)

// TC-45: AES-128-GCM (MUST), AES-256-GCM and ChaCha20-Poly1305 are
// implemented with the lengths of RFC 8548 §6 Table 3.
func TestTC45_AEADTable(t *testing.T) {
	tests := []struct {
		id               AEADID
		name             string
		key, nonce, ovhd int
		trafficKeyLen    int
	}{
		{AES128GCM, "aes128gcm", 16, 12, 16, 28},
		{AES256GCM, "aes256gcm", 32, 12, 16, 44},
		{ChaCha20Poly1305, "chacha20poly1305", 32, 12, 16, 44},
	}
	if got := AEADIDs(); len(got) != len(tests) {
		t.Fatalf("AEADIDs() = %v", got)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, ok := LookupAEAD(tt.id)
			if !ok {
				t.Fatal("not found")
			}
			if a.ID != tt.id || a.ID.String() != tt.name || a.KeyLen != tt.key || a.NonceLen != tt.nonce ||
				a.Overhead != tt.ovhd || a.TrafficKeyLen() != tt.trafficKeyLen {
				t.Fatalf("got %+v", *a)
			}
			key := bytes.Repeat([]byte{0x42}, a.KeyLen)
			c, err := a.New(key)
			if err != nil {
				t.Fatal(err)
			}
			if c.NonceSize() != a.NonceLen || c.Overhead() != a.Overhead {
				t.Fatalf("cipher nonce %d overhead %d", c.NonceSize(), c.Overhead())
			}
			nonce := make([]byte, a.NonceLen)
			ct := c.Seal(nil, nonce, []byte("plaintext"), []byte{0, 0, 25})
			if len(ct) != len("plaintext")+a.Overhead {
				t.Fatalf("ciphertext %d bytes", len(ct))
			}
			if _, err := c.Open(nil, nonce, ct, []byte{1, 0, 25}); err == nil {
				t.Fatal("wrong associated data accepted")
			}
			for _, n := range []int{0, a.KeyLen - 1, a.KeyLen + 1} {
				if _, err := a.New(make([]byte, n)); err == nil {
					t.Errorf("New accepted a %d-byte key", n)
				}
			}
		})
	}
}

func TestLookupAEADUnknown(t *testing.T) {
	for _, id := range []AEADID{0, 3, 0x0011, 0xffff} {
		if a, ok := LookupAEAD(id); ok || a != nil {
			t.Errorf("LookupAEAD(%#04x) found %v", uint16(id), a)
		}
	}
	if got := AEADID(0x0003).String(); got != "aead-0x0003" {
		t.Errorf("String = %q", got)
	}
	var zero *AEAD
	if _, err := zero.New(make([]byte, 16)); err == nil {
		t.Error("nil AEAD New succeeded")
	}
}
