package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/source"
)

// photoDir links the real photographs of tests/data/photos n times into a temp folder, plus
// a few broken files.
func photoDir(t *testing.T, copies int) (string, int) {
	t.Helper()
	root, _ := filepath.Abs("../../tests/data/photos") // absolute: the symlinks point at it
	photos, _ := filepath.Glob(filepath.Join(root, "*.jpg"))
	if len(photos) == 0 {
		t.Fatal("the test photos are missing from tests/data/photos (they are committed in the repository)")
	}
	dir := t.TempDir()
	n := 0
	for c := 0; c < copies; c++ {
		for _, p := range photos {
			if err := os.Symlink(p, filepath.Join(dir, fmt.Sprintf("%d_%s", c, filepath.Base(p)))); err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	os.WriteFile(filepath.Join(dir, "empty.jpg"), nil, 0o644)
	os.WriteFile(filepath.Join(dir, "text.png"), []byte("not a png"), 0o644)
	return dir, n
}

func newPipeline(t *testing.T, cfg map[string]any) *Pipeline {
	t.Helper()
	raw, _ := json.Marshal(cfg)
	c, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func cfgFor(dir string, limit int) map[string]any {
	return map[string]any{
		"source_type":   "file",
		"source_config": map[string]any{"root_path": dir},
		"image_config":  map[string]any{"crop_and_resize": true, "default_image_size": 256},
		"limit":         limit, "samples_buffer_size": 4, "num_threads": 2,
	}
}

func drain(t *testing.T, p *Pipeline) int {
	t.Helper()
	n := 0
	for {
		s, st, err := p.Next(30 * time.Second)
		switch st {
		case StatusSample:
			n++
			s.Free()
		case StatusEnd:
			return n
		default:
			t.Fatalf("status %d: %v", st, err)
		}
	}
}

func TestAllSamplesAndSkips(t *testing.T) {
	dir, n := photoDir(t, 1)
	p := newPipeline(t, cfgFor(dir, 0))
	if got := drain(t, p); got != n {
		t.Errorf("got %d samples, want %d", got, n)
	}
	st := p.Stats()
	if st.SamplesSkipped != 2 || st.SkippedReasons["decode_error"] != 2 {
		t.Errorf("skipped %v, want the 2 broken files as decode_error", st.SkippedReasons)
	}
	for _, sg := range st.Stages {
		switch {
		case sg.Name == "list" && sg.BusySeconds != 0:
			t.Errorf("list stage: busy %vs, want none recorded", sg.BusySeconds)
		case sg.Name == "output" && (sg.ItemsOut != int64(n) || sg.BusySeconds <= 0):
			t.Errorf("output stage: %d out, busy %vs; want %d out and some busy time (building the samples)",
				sg.ItemsOut, sg.BusySeconds, n)
		}
	}
	p.Stop()
}

func TestExactLimit(t *testing.T) {
	dir, _ := photoDir(t, 2)
	for _, limit := range []int{1, 5, 13} {
		p := newPipeline(t, cfgFor(dir, limit))
		if got := drain(t, p); got != limit {
			t.Errorf("limit %d: got %d samples", limit, got)
		}
		p.Stop()
	}
}

// Stop in the middle of a stream leaves no goroutine and no C buffer behind.
func TestStopLeaksNothing(t *testing.T) {
	dir, _ := photoDir(t, 3)
	before := runtime.NumGoroutine()
	for i := 0; i < 5; i++ {
		p := newPipeline(t, cfgFor(dir, 0))
		s, st, err := p.Next(30 * time.Second)
		if st != StatusSample {
			t.Fatalf("status %d: %v", st, err)
		}
		s.Free()
		time.Sleep(20 * time.Millisecond) // let the queue fill
		p.Stop()
		p.Stop() // idempotent
	}
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after stop, %d before:\n%s", g, before, buf[:runtime.Stack(buf, true)])
	}
	if live := cmem.Live(); live != 0 {
		t.Errorf("%d encoded buffers still allocated", live)
	}
}

// A stopped pipeline starts again as a new epoch with every sample.
func TestRestart(t *testing.T) {
	dir, n := photoDir(t, 1)
	p := newPipeline(t, cfgFor(dir, 0))
	if got := drain(t, p); got != n {
		t.Fatalf("epoch 1: %d", got)
	}
	p.Stop()
	if got := drain(t, p); got != n {
		t.Errorf("epoch 2: %d samples, want %d", got, n)
	}
	p.Stop()
}

func TestTimeout(t *testing.T) {
	dir, _ := photoDir(t, 1)
	cfg := cfgFor(dir, 0)
	cfg["image_config"] = map[string]any{"crop_and_resize": true, "default_image_size": 2048}
	p := newPipeline(t, cfg)
	defer p.Stop()
	// no photo decodes in a microsecond: the first wait times out, and the stream goes on
	if _, st, _ := p.Next(time.Microsecond); st != StatusTimeout {
		t.Errorf("status %d, want a timeout", st)
	}
	s, st, err := p.Next(30 * time.Second)
	if st != StatusSample {
		t.Fatalf("after a timeout: status %d: %v", st, err)
	}
	s.Free()
}

// A Next or Start that races with Close (datago_client_free while another thread, which looked the
// client up just before, calls get_sample) must not start a run that nobody would ever stop.
func TestNoRestartAfterClose(t *testing.T) {
	dir, _ := photoDir(t, 1)
	p := newPipeline(t, cfgFor(dir, 0))
	s, st, err := p.Next(30 * time.Second)
	if st != StatusSample {
		t.Fatalf("status %d: %v", st, err)
	}
	s.Free()
	p.Close()
	p.Start()
	if _, st, err := p.Next(time.Second); st != StatusError || err == nil {
		t.Errorf("Next after Close: status %d, error %v; want an error", st, err)
	}
	p.mu.Lock()
	running := p.cur != nil
	p.mu.Unlock()
	if running {
		p.Stop()
		t.Fatal("a run was started after Close")
	}
}

// A FIFO named like an image is skipped as a fetch error: opening it used to block the fetch
// worker for a writer that never comes (the stream never ended and Stop hung).
func TestFIFOIsSkippedNotAHang(t *testing.T) {
	dir, n := photoDir(t, 1)
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe.jpg"), 0o644); err != nil {
		t.Fatal("mkfifo:", err)
	}
	p := newPipeline(t, cfgFor(dir, 0))
	if got := drain(t, p); got != n {
		t.Errorf("got %d samples, want %d", got, n)
	}
	if k := p.Stats().SkippedReasons[string(errs.ReasonFetch)]; k != 1 {
		t.Errorf("%d fetch errors, want 1 (the FIFO)", k)
	}
	done := make(chan struct{})
	go func() { p.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Stop hangs")
	}
}

// slowSource is a source that takes a while to wind down after cancellation, and records whether
// two of its runs ever overlapped (a source is not safe for concurrent runs).
type slowSource struct {
	active, overlaps atomic.Int32
}

func (s *slowSource) Run(ctx context.Context, out chan<- *source.Item) error {
	if s.active.Add(1) > 1 {
		s.overlaps.Add(1)
	}
	defer s.active.Add(-1)
	<-ctx.Done()
	time.Sleep(100 * time.Millisecond)
	return ctx.Err()
}

// A Start (or a Next, which starts) during a Stop waits for that Stop: it used to begin a new run
// at once, running the source twice at the same time. And every Stop returns only once the run's
// goroutines are done, even when another Stop is already at work.
func TestStartDuringStopWaits(t *testing.T) {
	dir, _ := photoDir(t, 1)
	p := newPipeline(t, cfgFor(dir, 0))
	src := &slowSource{}
	p.src = src
	p.Start()
	stopped := make(chan struct{})
	go func() { p.Stop(); close(stopped) }()
	time.Sleep(20 * time.Millisecond) // the first Stop is waiting for the source
	p.Stop()
	if n := src.active.Load(); n != 0 {
		t.Errorf("a second Stop returned while the source still runs (%d active)", n)
	}
	<-stopped
	p.Start()
	go p.Stop()
	time.Sleep(20 * time.Millisecond) // that Stop is waiting for the source
	if _, st, err := p.Next(0); st != StatusTimeout {
		t.Errorf("Next during a Stop: status %d (%v), want a timeout of a new run", st, err)
	}
	p.Stop()
	if n := src.overlaps.Load(); n != 0 {
		t.Errorf("the source ran %d times alongside another of its runs", n)
	}
}

// Close leaves nothing of the client behind: no goroutine, no C buffer, no thread that ran a
// decoder (the Go runtime would keep them forever, with their libvips state and malloc arenas),
// and it gives the C heap's free pages back (malloc_trim).
func TestCloseLeavesNoThreadAndTrims(t *testing.T) {
	dir, _ := photoDir(t, 2)
	var mu sync.Mutex
	var tids []int
	hook := func(tid int) {
		mu.Lock()
		tids = append(tids, tid)
		mu.Unlock()
	}
	endThreadHook.Store(&hook)
	defer endThreadHook.Store(nil)
	before := runtime.NumGoroutine()
	trims := cmem.Trims()
	for _, extra := range []map[string]any{{}, {"batch_size": 2}, {"seed": 7}} { // plain, batched, ordered
		cfg := cfgFor(dir, 5)
		for k, v := range extra {
			cfg[k] = v
		}
		p := newPipeline(t, cfg)
		for {
			d, st, err := p.next(30 * time.Second)
			if st == StatusEnd {
				break
			}
			if st != StatusSample {
				t.Fatalf("%v: status %d: %v", extra, st, err)
			}
			d.free()
		}
		p.Close()
	}
	if got := cmem.Trims() - trims; got != 3 {
		t.Errorf("%d malloc_trim calls for 3 closes", got)
	}
	mu.Lock()
	ended := append([]int(nil), tids...)
	mu.Unlock()
	if len(ended) < 3*2 {
		t.Errorf("%d decode threads ended, want at least 2 per client (num_threads 2)", len(ended))
	}
	deadline := time.Now().Add(10 * time.Second) // a wait, not a timing: threads end asynchronously
	alive := func() (n int) {
		for _, tid := range ended {
			if tid == os.Getpid() {
				continue // the runtime's main thread (m0) cannot exit: a worker that ran on it wedges it instead
			}
			if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d", tid)); err == nil {
				n++
			}
		}
		return n
	}
	for (alive() > 0 || runtime.NumGoroutine() > before) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := alive(); n > 0 {
		t.Errorf("%d of the %d decode threads still exist after close", n, len(ended))
	}
	if g := runtime.NumGoroutine(); g > before {
		buf := make([]byte, 1<<16)
		t.Errorf("%d goroutines after close, %d before:\n%s", g, before, buf[:runtime.Stack(buf, true)])
	}
	if live := cmem.Live(); live != 0 {
		t.Errorf("%d encoded buffers still allocated", live)
	}
}
