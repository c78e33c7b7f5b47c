package pipeline

import (
	"slices"
	"testing"
	"time"
)

func batchCfg(dir string, threads int, extra map[string]any) map[string]any {
	c := map[string]any{
		"source_type":         "file",
		"source_config":       map[string]any{"root_path": dir, "random_sampling": true},
		"image_config":        map[string]any{"crop_and_resize": true, "default_image_size": 128},
		"samples_buffer_size": 4, "num_threads": threads, "batch_size": 3, "seed": 7, "max_held_samples": 4,
	}
	for k, v := range extra {
		c[k] = v
	}
	return c
}

// drainBatches takes up to n batches (n < 0: all) and returns their ids in order.
func drainBatches(t *testing.T, p *Pipeline, n int) []string {
	t.Helper()
	var ids []string
	for k := 0; n < 0 || k < n; k++ {
		b, st, err := p.NextBatch(30 * time.Second)
		switch st {
		case StatusSample:
			w, h, c := b.Size()
			if len(b.Images()) != b.Len()*w*h*c {
				t.Fatalf("batch of %d images %dx%dx%d has %d bytes", b.Len(), w, h, c, len(b.Images()))
			}
			ids = append(ids, b.IDs()...)
			b.Free()
		case StatusEnd:
			return ids
		default:
			t.Fatalf("status %d: %v", st, err)
		}
	}
	return ids
}

func TestBatchedOrderDoesNotDependOnThreads(t *testing.T) {
	dir, n := photoDir(t, 2)
	var runs [][]string
	for _, threads := range []int{1, 3} {
		p := newPipeline(t, batchCfg(dir, threads, nil))
		ids := drainBatches(t, p, -1)
		snap := p.Stats()
		p.Close()
		if len(ids) != n || snap.SamplesSkipped != 2 {
			t.Fatalf("%d threads: %d samples (want %d), %d skipped (want 2)", threads, len(ids), n, snap.SamplesSkipped)
		}
		runs = append(runs, ids)
	}
	if !slices.Equal(runs[0], runs[1]) {
		t.Fatalf("seeded batches differ between 1 and 3 threads:\n%v\n%v", runs[0], runs[1])
	}
}

func TestBatchedResumeAndStop(t *testing.T) {
	dir, n := photoDir(t, 2)
	full := func() []string {
		p := newPipeline(t, batchCfg(dir, 2, nil))
		defer p.Close()
		return drainBatches(t, p, -1)
	}()
	p := newPipeline(t, batchCfg(dir, 2, nil))
	head := drainBatches(t, p, 3)
	st, err := p.State()
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	q := newPipeline(t, batchCfg(dir, 2, nil))
	if err := q.LoadState(st); err != nil {
		t.Fatal(err)
	}
	tail := drainBatches(t, q, -1)
	q.Close()
	if got := append(head, tail...); !slices.Equal(got, full) || len(got) != n {
		t.Fatalf("resumed run differs from the full one (%d vs %d samples)", len(got), len(full))
	}
	// stopping in the middle, with batches held and in flight, frees everything and returns
	for _, threads := range []int{1, 4} {
		p := newPipeline(t, batchCfg(dir, threads, map[string]any{"seed": nil}))
		drainBatches(t, p, 1)
		p.Stop()
		drainBatches(t, p, 2) // the next epoch
		p.Close()
	}
}

func TestOrderedPerSampleWithLimit(t *testing.T) {
	dir, _ := photoDir(t, 2)
	var runs [][]string
	for _, threads := range []int{1, 4} {
		p := newPipeline(t, batchCfg(dir, threads, map[string]any{"batch_size": 0, "limit": 9}))
		var ids []string
		for {
			s, st, err := p.Next(30 * time.Second)
			if st == StatusEnd {
				break
			}
			if st != StatusSample {
				t.Fatalf("status %d: %v", st, err)
			}
			ids = append(ids, s.ID())
			s.Free()
		}
		p.Close()
		runs = append(runs, ids)
	}
	if len(runs[0]) != 9 || !slices.Equal(runs[0], runs[1]) {
		t.Fatalf("ordered per-sample runs: %v vs %v", runs[0], runs[1])
	}
}
