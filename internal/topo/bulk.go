package topo

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
)

// BulkSend writes n bytes of pseudo-random data derived from seed to w and
// returns their SHA-256. The data is incompressible and differs per seed, so a
// byte-identical copy on the far side proves the transfer.
func BulkSend(w io.Writer, n int64, seed uint64) ([32]byte, error) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	src := rand.NewChaCha8(key)
	h := sha256.New()
	buf := make([]byte, 256<<10)
	for sent := int64(0); sent < n; {
		b := buf[:min(int64(len(buf)), n-sent)]
		src.Read(b)
		h.Write(b)
		m, err := w.Write(b)
		sent += int64(m)
		if err != nil {
			return [32]byte{}, fmt.Errorf("bulk send after %d of %d bytes: %w", sent, n, err)
		}
	}
	return [32]byte(h.Sum(nil)), nil
}

// BulkReceive reads r to EOF and returns the byte count and SHA-256. On an
// error it returns the count and SHA-256 of the bytes read until then.
func BulkReceive(r io.Reader) (int64, [32]byte, error) {
	h := sha256.New()
	n, err := io.CopyBuffer(h, r, make([]byte, 256<<10))
	if err != nil {
		err = fmt.Errorf("bulk receive after %d bytes: %w", n, err)
	}
	return n, [32]byte(h.Sum(nil)), err
}
