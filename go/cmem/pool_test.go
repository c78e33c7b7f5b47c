package cmem

import (
	"bytes"
	"strings"
	"testing"
)

func TestPoolClasses(t *testing.T) {
	cases := []struct {
		n, size int
		ok      bool
	}{
		{1, 0, false},
		{PoolMinClass / 2, 0, false}, // small: malloc's bins
		{PoolMinClass/2 + 1, PoolMinClass, true},
		{PoolMinClass, PoolMinClass, true},
		{PoolMinClass + 1, 2 * PoolMinClass, true},
		{3 << 20, 4 << 20, true},
		{PoolMaxClass, PoolMaxClass, true},
		{PoolMaxClass + 1, 0, false}, // huge: not kept
	}
	for _, c := range cases {
		_, size, ok := poolClass(c.n)
		if size != c.size || ok != c.ok {
			t.Errorf("poolClass(%d) = %d, %v; want %d, %v", c.n, size, ok, c.size, c.ok)
		}
	}
}

// A freed buffer of a class comes back for the next request of that class, with the class's
// capacity; other classes and small buffers do not take it.
func TestPoolReusesByClass(t *testing.T) {
	DrainPool()
	defer DrainPool()
	a := Alloc(300 << 10)
	if a.cap != 512<<10 || a.Len != 300<<10 {
		t.Fatalf("Alloc(300 KiB): len %d cap %d, want the 512 KiB class", a.Len, a.cap)
	}
	p := a.Ptr
	a.Free()
	if n, b := PoolStats(); n != 1 || b != 512<<10 {
		t.Fatalf("pool after one free: %d buffers, %d bytes", n, b)
	}
	small := Alloc(1000) // not pooled, does not take the pooled buffer
	other := Alloc(2 << 20)
	if small.Ptr == p || other.Ptr == p {
		t.Error("a buffer of another class took the pooled one")
	}
	small.Free()
	other.Free()
	b := Alloc(400 << 10)
	if b.Ptr != p || b.cap != 512<<10 {
		t.Errorf("Alloc(400 KiB) did not reuse the pooled 512 KiB buffer")
	}
	b.Free()
	// ReadAll rounds its first allocation up to a class (and grows by doubling, within classes)
	data := strings.Repeat("x", 200<<10)
	r, err := ReadAll(strings.NewReader(data), int64(len(data)), 0)
	if err != nil || !bytes.Equal(r.Bytes(), []byte(data)) || r.cap != 256<<10 {
		t.Fatalf("ReadAll: err %v, cap %d", err, r.cap)
	}
	r.Free()
}

// The pool keeps at most PoolLimit bytes; DrainPool empties it; a detached buffer is not pooled.
func TestPoolBoundedAndDrained(t *testing.T) {
	DrainPool()
	before := Live()
	var bufs []Buf
	for i := 0; i < 2*PoolLimit/(8<<20); i++ {
		bufs = append(bufs, Alloc(8<<20))
	}
	for i := range bufs {
		bufs[i].Free()
	}
	n, b := PoolStats()
	if b > PoolLimit || b != PoolLimit || n != PoolLimit/(8<<20) {
		t.Errorf("pool holds %d buffers, %d bytes; want %d bytes (its limit)", n, b, PoolLimit)
	}
	DrainPool()
	if n, b := PoolStats(); n != 0 || b != 0 {
		t.Errorf("after DrainPool: %d buffers, %d bytes", n, b)
	}
	d := Alloc(300 << 10)
	p := d.Detach()
	freeC(p)
	if n, _ := PoolStats(); n != 0 {
		t.Errorf("a detached buffer reached the pool")
	}
	if Live() != before {
		t.Errorf("%d buffers live, want %d", Live(), before)
	}
}
