package kex

import (
	"bytes"
	"sync"
	"testing"
	"time"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func pub(k *PrivateKey) string { return string(k.AppendPublic(nil)) }

// TC-6: by default every Get is a fresh ephemeral key.
func TestTC6_PoolFreshByDefault(t *testing.T) {
	for _, id := range IDs() {
		g, _ := Lookup(id)
		clk := &fakeClock{t: time.Unix(1000, 0)}
		p := NewPool(g, 0, nil, clk.now)
		if p.Group() != g {
			t.Fatal("Group()")
		}
		seen := map[string]bool{}
		for i := 0; i < 8; i++ {
			k, err := p.Get()
			if err != nil {
				t.Fatal(err)
			}
			if seen[pub(k)] {
				t.Fatalf("%v: key reused with lifetime 0", id)
			}
			seen[pub(k)] = true
		}
		// A negative lifetime means no reuse too.
		p = NewPool(g, -time.Second, nil, clk.now)
		a, _ := p.Get()
		b, _ := p.Get()
		if pub(a) == pub(b) {
			t.Fatalf("%v: key reused with negative lifetime", id)
		}
	}
}

// TC-47: with a lifetime, one key is reused until it is lifetime old by the
// injected clock, then replaced; a clock that steps back retires it too.
func TestTC47_PoolLifetime(t *testing.T) {
	g, _ := Lookup(X25519)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	p := NewPool(g, time.Minute, nil, clk.now)
	k1, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	clk.add(59 * time.Second)
	if k, _ := p.Get(); k != k1 {
		t.Fatal("key replaced before its lifetime")
	}
	clk.add(time.Second) // exactly lifetime old: expired
	k2, _ := p.Get()
	if k2 == k1 || pub(k2) == pub(k1) {
		t.Fatal("key reused past its lifetime")
	}
	if k, _ := p.Get(); k != k2 {
		t.Fatal("replacement not reused")
	}
	clk.add(-time.Hour)
	if k3, _ := p.Get(); k3 == k2 {
		t.Fatal("key reused after the clock stepped back")
	}
}

// TC-48: the pool draws from the injected reader; a failed draw leaves no
// half-made key behind and the next Get retries.
func TestTC48_PoolRandomness(t *testing.T) {
	g, _ := Lookup(X25519)
	seed := bytes.Repeat([]byte{0x33}, 32)
	p := NewPool(g, time.Minute, bytes.NewReader(seed), nil)
	k, err := p.Get()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := g.GenerateKey(bytes.NewReader(seed))
	if pub(k) != pub(want) {
		t.Fatal("pool ignored the injected reader")
	}
	p = NewPool(g, time.Minute, errReader{}, nil)
	if _, err := p.Get(); err == nil {
		t.Fatal("Get with a failing reader succeeded")
	}
	if _, err := p.Get(); err == nil {
		t.Fatal("second Get with a failing reader succeeded")
	}
}

// Concurrent Get calls share one key within its lifetime (run with -race).
func TestPoolConcurrent(t *testing.T) {
	g, _ := Lookup(X25519)
	p := NewPool(g, time.Hour, nil, nil)
	var wg sync.WaitGroup
	keys := make([]*PrivateKey, 16)
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			keys[i], _ = p.Get()
		}()
	}
	wg.Wait()
	for _, k := range keys {
		if k == nil || k != keys[0] {
			t.Fatal("concurrent Gets got different keys within the lifetime")
		}
	}
}
