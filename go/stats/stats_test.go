package stats

import (
	"reflect"
	"sync"
	"testing"
)

func TestCounts(t *testing.T) {
	var c Counts // the zero value is ready
	if got := c.Snapshot(); got == nil || len(got) != 0 {
		t.Errorf("zero Counts: %v", got)
	}
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				c.Add("a")
				if i%10 == 0 {
					c.Add("b")
				}
				_ = c.Snapshot()
			}
		}()
	}
	wg.Wait()
	snap := c.Snapshot()
	if want := map[string]int64{"a": 8000, "b": 800}; !reflect.DeepEqual(snap, want) {
		t.Errorf("counts %v, want %v", snap, want)
	}
	if n := c.Add("b"); n != 801 {
		t.Errorf("Add returned %d, want 801", n)
	}
	snap["a"] = -1 // a snapshot is a copy
	if c.Snapshot()["a"] != 8000 {
		t.Errorf("a snapshot shares the counters")
	}
	c.Reset()
	if got := c.Snapshot(); len(got) != 0 {
		t.Errorf("after Reset: %v", got)
	}
	if n := c.Add("a"); n != 1 {
		t.Errorf("Add after Reset returned %d", n)
	}
}

func TestStatsSkips(t *testing.T) {
	s := New()
	s.Skip("fetch_error")
	s.Skip("fetch_error")
	s.Skip("decode_error")
	snap := s.Snapshot()
	if snap.SamplesSkipped != 3 || !reflect.DeepEqual(snap.SkippedReasons, map[string]int64{"fetch_error": 2, "decode_error": 1}) {
		t.Errorf("snapshot %+v", snap)
	}
}
