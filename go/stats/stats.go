// Package stats holds the per-stage counters of a pipeline, readable while it runs.
package stats

import (
	"encoding/json"
	"github.com/datago-dev/datago/go/errs"
	"sync"
	"sync/atomic"
	"time"
)

// Stage counts what one named stage did: items in and out, and the wall time its workers spent
// busy (summed over workers, so it can exceed elapsed time).
type Stage struct {
	Name   string
	in     atomic.Int64
	out    atomic.Int64
	busyNs atomic.Int64
}

// In counts an item entering the stage.
func (s *Stage) In() { s.in.Add(1) }

// Count counts an item leaving a stage that has no per-item work to time.
func (s *Stage) Count() { s.out.Add(1) }

// Done counts an item leaving the stage (ok) or dropped, and adds the busy time since start.
func (s *Stage) Done(start time.Time, ok bool) {
	s.busyNs.Add(int64(time.Since(start)))
	if ok {
		s.out.Add(1)
	}
}

// Counts are named counters (samples skipped, per reason), safe for concurrent use. The zero
// value is ready to use. The pipeline and the sources that drop samples themselves share it.
type Counts struct {
	mu sync.Mutex
	m  map[string]int64
}

// Add counts one more of name and returns the new count.
func (c *Counts) Add(name string) int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[name]++
	return c.m[name]
}

// Snapshot returns a copy of the counters (an empty map when nothing was counted).
func (c *Counts) Snapshot() map[string]int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		m[k] = v
	}
	return m
}

// Reset sets every counter back to zero.
func (c *Counts) Reset() {
	c.mu.Lock()
	c.m = nil
	c.mu.Unlock()
}

// Stats is shared by the stages of one pipeline run.
type Stats struct {
	List, Fetch, Process, Output Stage
	BytesRead                    atomic.Int64
	Produced                     atomic.Int64
	Batches                      atomic.Int64 // batches delivered to the queue (batch_size)
	skipped                      Counts
	started                      time.Time
}

// New returns zeroed stats with the stage names set.
func New() *Stats {
	s := &Stats{started: time.Now()}
	s.List.Name, s.Fetch.Name, s.Process.Name, s.Output.Name = "list", "fetch", "process", "output"
	return s
}

// Skip counts a sample skipped for reason.
func (s *Stats) Skip(reason errs.Reason) { s.skipped.Add(string(reason)) }

// Skipped returns a copy of the skip counters.
func (s *Stats) Skipped() map[string]int64 { return s.skipped.Snapshot() }

// StageSnapshot is one stage in a Snapshot.
type StageSnapshot struct {
	Name        string  `json:"name"`
	ItemsIn     int64   `json:"items_in"`
	ItemsOut    int64   `json:"items_out"`
	BusySeconds float64 `json:"busy_seconds"`
}

// Snapshot is the JSON form of the counters.
type Snapshot struct {
	SamplesProduced int64            `json:"samples_produced"`
	SamplesSkipped  int64            `json:"samples_skipped"`
	SkippedReasons  map[string]int64 `json:"skipped_reasons"`
	// CorruptData counts the samples skipped because their image data is damaged (refused by
	// image_config.fail_on): skipped_reasons["corrupt_data"], always present.
	CorruptData    int64           `json:"corrupt_data"`
	BytesRead      int64           `json:"bytes_read"`
	ElapsedSeconds float64         `json:"elapsed_seconds"`
	Stages         []StageSnapshot `json:"stages"`
	QueueLength    int             `json:"queue_length"`
	QueueCapacity  int             `json:"queue_capacity"`
	Running        bool            `json:"running"`
	// HTTP is the pipeline's HTTP client's counters since the run started: requests, retries,
	// resumes (Range), truncations (bodies cut early), timeouts, failures (remote.Counters).
	HTTP map[string]int64 `json:"http"`
	// batch_size only: batches queued, partial batches delivered because max_held_samples was
	// reached (the one with the oldest sample), at the end of the epoch, or dropped there (drop_last).
	BatchesProduced       int64 `json:"batches_produced,omitempty"`
	PartialBatchesFlushed int64 `json:"partial_batches_flushed"`
	PartialBatchesAtEnd   int64 `json:"partial_batches_at_end"`
	PartialBatchesDropped int64 `json:"partial_batches_dropped"`
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	skipped := s.Skipped()
	var total int64
	for _, v := range skipped {
		total += v
	}
	snap := Snapshot{
		SamplesProduced: s.Produced.Load(),
		SamplesSkipped:  total,
		SkippedReasons:  skipped,
		CorruptData:     skipped[string(errs.ReasonCorrupt)],
		BytesRead:       s.BytesRead.Load(),
		ElapsedSeconds:  time.Since(s.started).Seconds(),
	}
	for _, st := range []*Stage{&s.List, &s.Fetch, &s.Process, &s.Output} {
		snap.Stages = append(snap.Stages, StageSnapshot{
			Name: st.Name, ItemsIn: st.in.Load(), ItemsOut: st.out.Load(),
			BusySeconds: time.Duration(st.busyNs.Load()).Seconds(),
		})
	}
	return snap
}

// JSON renders a snapshot.
func (snap Snapshot) JSON() []byte {
	b, _ := json.Marshal(snap)
	return b
}
