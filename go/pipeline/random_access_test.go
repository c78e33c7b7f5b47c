package pipeline

import (
	"sync"
	"testing"
	"time"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/errs"
)

// Map-style access decodes exactly the indices asked (in the order asked, duplicates included),
// skips broken files with their reason, refuses an index out of range and leaks nothing.
func TestGetItemsDecodesTheIndicesAsked(t *testing.T) {
	dir, n := photoDir(t, 2)
	p := newPipeline(t, cfgFor(dir, 0))
	defer p.Close()
	size, err := p.Len()
	if err != nil {
		t.Fatal(err)
	}
	if size != n+2 { // the photos and the two broken files, sorted: 0_*, 1_*, empty.jpg, text.png
		t.Fatalf("Len = %d, want %d", size, n+2)
	}
	items, _ := p.index()
	indices := []int64{int64(n), 3, 0, 3, int64(n + 1), 1}
	out, made, err := p.GetItems(indices)
	if err != nil {
		t.Fatal(err)
	}
	if made != 4 {
		t.Fatalf("made %d samples, want 4", made)
	}
	for k, i := range indices {
		broken := i >= int64(n)
		if (out[k].Ptr() == nil) != broken {
			t.Fatalf("index %d (%s): sample %v, broken %v", i, items[i].ID, out[k].Ptr() != nil, broken)
		}
		if !broken {
			if w, h := out[k].ImageSize(); w == 0 || h == 0 {
				t.Fatalf("index %d: empty image", i)
			}
			out[k].Free()
		}
	}
	if w0, h0 := func() (int, int) {
		o, _, _ := p.GetItems([]int64{3})
		defer o[0].Free()
		return o[0].ImageSize()
	}(); w0 == 0 || h0 == 0 {
		t.Fatal("index 3 again: empty image")
	}
	if got := p.Stats().SkippedReasons[string(errs.ReasonDecode)]; got < 1 {
		t.Fatalf("skipped reasons %v: want decode_error", p.Stats().SkippedReasons)
	}
	if _, _, err := p.GetItems([]int64{0, int64(size)}); errs.KindOf(err) != errs.Value {
		t.Fatalf("index out of range: err %v, want a Value error", err)
	}
	if _, _, err := p.GetItems([]int64{-1}); err == nil {
		t.Fatal("index -1: no error")
	}
	p.Close()
	if live := cmem.Live(); live != 0 {
		t.Fatalf("%d C buffers leaked", live)
	}
	if _, _, err := p.GetItems([]int64{0}); errs.KindOf(err) != errs.Closed {
		t.Fatalf("after Close: err %v, want Closed", err)
	}
}

// The samples of one GetItems call are made by num_threads workers at the same time: every worker
// waits at a barrier until num_threads of them are inside (it would wait forever — here: fail
// after a minute — if they ran one after the other).
func TestGetItemsRunsNumThreadsWorkers(t *testing.T) {
	dir, _ := photoDir(t, 1)
	cfg := cfgFor(dir, 0)
	cfg["num_threads"] = 3
	p := newPipeline(t, cfg)
	defer p.Close()
	var mu sync.Mutex
	inside, released := 0, make(chan struct{})
	testHookItem = func() {
		mu.Lock()
		inside++
		if inside == 3 {
			close(released)
		}
		mu.Unlock()
		select {
		case <-released:
		case <-time.After(time.Minute):
		}
	}
	defer func() { testHookItem = nil }()
	out, made, err := p.GetItems([]int64{0, 1, 2, 3, 4, 5})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range out {
		s.Free()
	}
	select {
	case <-released:
	default:
		t.Fatalf("the workers never were 3 at once (made %d)", made)
	}
}

// Close while GetItems calls are at work waits for them (no use after free; run with -race).
func TestCloseDuringGetItems(t *testing.T) {
	dir, _ := photoDir(t, 1)
	p := newPipeline(t, cfgFor(dir, 0))
	if _, err := p.Len(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := 0; k < 5; k++ {
				out, _, err := p.GetItems([]int64{int64(k), int64(k + 1)})
				if err != nil {
					if errs.KindOf(err) != errs.Closed {
						t.Errorf("GetItems: %v", err)
					}
					return
				}
				for _, s := range out {
					if s.Ptr() != nil {
						s.Free()
					}
				}
			}
		}()
	}
	p.Close()
	wg.Wait()
	if live := cmem.Live(); live != 0 {
		t.Fatalf("%d C buffers leaked", live)
	}
}
