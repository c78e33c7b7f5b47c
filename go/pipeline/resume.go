package pipeline

import (
	"encoding/json"
	"fmt"
	"github.com/datago-dev/datago/go/errs"
	"sort"
	"sync"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/source"
)

// Resume. Every item of a rank's epoch stream has a Seq (its position in the stream). A tracker
// records which Seqs are decided — delivered to the consumer, skipped (unreadable), or dropped
// (drop_last) — and the state is {consumed c, pending}: every Seq < c is decided except those in
// pending (held in bucket buffers or queues, not delivered), and no Seq >= c is. A resumed run
// replays the rank's stream and drops, before fetching, every decided Seq; pending items come
// again in Seq order, which rebuilds the same bucket buffers, so a seeded run continues with the
// same sequence.
//
// Elastic resume (file source): the ranks' streams are position splits of one global order, so
// the states of all ranks of a phase (merged by merge_state_dicts) say which positions of that
// phase's order were decided. The next phase's order is the previous one without them, split again
// by the new world_size; "phases" keeps that history.

// StateVersion is the version of the state format.
const StateVersion = 1

// RankState is one rank's progress in a phase.
type RankState struct {
	Consumed int64   `json:"consumed"`
	Pending  []int64 `json:"pending"`
}

// Phase is a completed part of an epoch on a given number of ranks (all ranks' states).
type Phase struct {
	WorldSize int         `json:"world_size"`
	Ranks     []RankState `json:"ranks"`
}

// State is what state_dict returns (one rank's, or merged when Merged).
type State struct {
	Version    int     `json:"version"`
	SourceType string  `json:"source_type"`
	Seed       *int64  `json:"seed"`
	Ordered    bool    `json:"ordered"` // the seed was configured: ordered delivery (else drawn, or none)
	Epoch      int64   `json:"epoch"`
	WorldSize  int     `json:"world_size"`
	Rank       *int    `json:"rank"`
	BatchSize  int     `json:"batch_size"`
	Merged     bool    `json:"merged,omitempty"`
	Phases     []Phase `json:"phases"`
	Consumed   int64   `json:"consumed"`
	Pending    []int64 `json:"pending"`
	// WebDataset with a seed: per shard index, the samples delivered so far in the epoch (all
	// phases), and those delivered before the current phase began (what its stream skips).
	Shards      map[int]ShardState `json:"shards,omitempty"`
	PhaseShards map[int]ShardState `json:"phase_shards,omitempty"`
}

// ShardState is a set of sample indices of a shard: all below Prefix, and Extra.
type ShardState struct {
	Prefix int   `json:"prefix"`
	Extra  []int `json:"extra"`
}

func toEntrySets(m map[int]ShardState) map[int]*source.EntrySet {
	out := make(map[int]*source.EntrySet, len(m))
	for k, v := range m {
		e := &source.EntrySet{Prefix: v.Prefix}
		for _, x := range v.Extra {
			e.Add(x)
		}
		out[k] = e
	}
	return out
}

func fromEntrySets(m map[int]*source.EntrySet) map[int]ShardState {
	out := make(map[int]ShardState, len(m))
	for k, e := range m {
		st := ShardState{Prefix: e.Prefix, Extra: []int{}}
		for x := range e.Extra {
			st.Extra = append(st.Extra, x)
		}
		sort.Ints(st.Extra)
		out[k] = st
	}
	return out
}

// tracker records the decided Seqs of a run.
type tracker struct {
	mu      sync.Mutex
	lw      int64          // every Seq < lw is decided
	hi      int64          // 1 + the largest decided Seq (>= lw)
	decided map[int64]bool // decided Seqs in [lw, hi)

	// WebDataset with a seed: where each numbered Seq lives (shard, index), and the samples of
	// each shard decided so far in the epoch; nil otherwise.
	where  map[int64][2]int
	shards map[int]*source.EntrySet
}

// locate records where seq lives (WebDataset).
func (t *tracker) locate(seq int64, shard, entry int) {
	if t.shards == nil {
		return
	}
	t.mu.Lock()
	t.where[seq] = [2]int{shard, entry}
	t.mu.Unlock()
}

func (t *tracker) shardState() map[int]ShardState {
	if t.shards == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	return fromEntrySets(t.shards)
}

func newTracker(rs RankState) *tracker {
	t := &tracker{decided: map[int64]bool{}, hi: rs.Consumed}
	pend := map[int64]bool{}
	for _, s := range rs.Pending {
		pend[s] = true
	}
	t.lw = rs.Consumed
	for _, s := range rs.Pending {
		t.lw = min(t.lw, s)
	}
	for s := t.lw; s < t.hi; s++ {
		if !pend[s] {
			t.decided[s] = true
		}
	}
	return t
}

// isDecided reports whether seq was decided (checked by the numbering stage of a resumed run).
func (t *tracker) isDecided(seq int64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return seq < t.lw || t.decided[seq]
}

func (t *tracker) decide(seqs ...int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, s := range seqs {
		if s < t.lw || t.decided[s] {
			continue
		}
		if w, ok := t.where[s]; ok {
			delete(t.where, s)
			e := t.shards[w[0]]
			if e == nil {
				e = &source.EntrySet{}
				t.shards[w[0]] = e
			}
			e.Add(w[1])
		}
		t.decided[s] = true
		if s >= t.hi {
			t.hi = s + 1
		}
	}
	for t.decided[t.lw] {
		delete(t.decided, t.lw)
		t.lw++
	}
}

func (t *tracker) state() RankState {
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := RankState{Consumed: t.hi, Pending: []int64{}}
	for s := t.lw; s < t.hi; s++ {
		if !t.decided[s] {
			rs.Pending = append(rs.Pending, s)
		}
	}
	return rs
}

// resumePlan is what a loaded state sets up for the next run.
type resumePlan struct {
	epoch   int64
	seed    *int64
	history []Phase
	cur     RankState
	// WebDataset: samples delivered before the phase (its stream skips them) and so far
	shardsAtPhase, shards map[int]ShardState
}

// remaining replays the phases over a global order of n positions: the positions (into the
// epoch's global order) that no phase decided, in order.
func remaining(n int, history []Phase) ([]int, error) {
	rem := make([]int, n)
	for i := range rem {
		rem[i] = i
	}
	for k, ph := range history {
		done := make([]bool, len(rem))
		for r, rs := range ph.Ranks {
			pend := map[int64]bool{}
			for _, s := range rs.Pending {
				pend[s] = true
			}
			for s := int64(0); s < rs.Consumed; s++ {
				q := s*int64(ph.WorldSize) + int64(r)
				if pend[s] {
					continue
				}
				if q >= int64(len(rem)) {
					return nil, errs.Errorf(errs.Value, "state phase %d, rank %d: consumed %d is past the %d samples of the phase (another dataset?)", k, r, rs.Consumed, len(rem))
				}
				done[q] = true
			}
		}
		next := rem[:0:0]
		for q, g := range rem {
			if !done[q] {
				next = append(next, g)
			}
		}
		rem = next
	}
	return rem, nil
}

// parseState reads and checks a state against this client.
func (p *Pipeline) parseState(js []byte) (*resumePlan, error) {
	var st State
	if err := config.DecodeStrict(js, "state.", &st); err != nil {
		return nil, err
	}
	if st.Version != StateVersion {
		return nil, errs.Errorf(errs.Value, "state version %d is not supported (want %d)", st.Version, StateVersion)
	}
	if st.SourceType != p.cfg.SourceType {
		return nil, errs.Errorf(errs.Value, "state is of source_type %q, the client's is %q", st.SourceType, p.cfg.SourceType)
	}
	if mine := p.seed(); st.Seed != nil && mine != nil && p.seedGiven && *mine != *st.Seed {
		return nil, errs.Errorf(errs.Value, "state has seed %d, the client's config %d", *st.Seed, *mine)
	}
	if st.Ordered != p.seedGiven {
		with := map[bool]string{true: "with", false: "without"}
		return nil, errs.Errorf(errs.Value, "the state was taken %s a configured seed, this client is %s one: configure the key seed the same way", with[st.Ordered], with[p.seedGiven])
	}
	if rep, ok := p.src.(interface{ Reproducible() bool }); !ok || !rep.Reproducible() {
		return nil, errs.Errorf(errs.Value, "source_type %q: this config's order is not reproducible, set a seed (config key seed) to resume", p.cfg.SourceType)
	}
	rank, ws := p.rank, p.worldSize
	plan := &resumePlan{epoch: st.Epoch, seed: st.Seed}
	if st.Merged {
		if len(st.Phases) == 0 {
			return nil, errs.Errorf(errs.Value, "merged state has no phases")
		}
		last := st.Phases[len(st.Phases)-1]
		if last.WorldSize == ws && len(last.Ranks) == ws {
			plan.history, plan.cur = st.Phases[:len(st.Phases)-1], last.Ranks[rank]
			plan.shardsAtPhase = st.PhaseShards
		} else {
			plan.history = st.Phases
			plan.shardsAtPhase = st.Shards
		}
		plan.shards = st.Shards
	} else {
		if st.Rank == nil || st.WorldSize != ws || *st.Rank != rank {
			r := -1
			if st.Rank != nil {
				r = *st.Rank
			}
			return nil, errs.Errorf(errs.Value, "state is rank %d of world_size %d, the client is rank %d of %d: merge every rank's state with datago.merge_state_dicts to resume on another world_size", r, st.WorldSize, rank, ws)
		}
		plan.history, plan.cur = st.Phases, RankState{Consumed: st.Consumed, Pending: st.Pending}
		plan.shardsAtPhase, plan.shards = st.PhaseShards, st.Shards
	}
	for _, ph := range plan.history {
		if ph.WorldSize < 1 || len(ph.Ranks) != ph.WorldSize {
			return nil, errs.Errorf(errs.Value, "state phase of world_size %d has %d ranks", ph.WorldSize, len(ph.Ranks))
		}
	}
	if len(plan.history) > 0 {
		g, ok := p.src.(interface{ GlobalOrder() bool })
		if !ok || !g.GlobalOrder() {
			return nil, errs.Errorf(errs.Value, "resuming on another world_size needs a seed (config key seed) for source_type %q", p.cfg.SourceType)
		}
	}
	sort.Slice(plan.cur.Pending, func(i, j int) bool { return plan.cur.Pending[i] < plan.cur.Pending[j] })
	for _, s := range plan.cur.Pending {
		if s < 0 || s >= plan.cur.Consumed {
			return nil, errs.Errorf(errs.Value, "state pending seq %d is not in [0, consumed=%d)", s, plan.cur.Consumed)
		}
	}
	return plan, nil
}

// LoadState sets up the next run to continue from a state (see State).
func (p *Pipeline) LoadState(js []byte) error {
	plan, err := p.parseState(js)
	if err != nil {
		return err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cur != nil {
		return errs.Errorf(errs.Value, "load_state_dict: the client is already started (load the state before the first sample)")
	}
	p.resume = plan
	p.nextEpoch = plan.epoch
	return nil
}

// State returns the resume point of the current (or latest) run as JSON.
func (p *Pipeline) State() ([]byte, error) {
	p.mu.Lock()
	tr, ep, hist, atPhase := p.lastTracker, p.lastEpoch, p.lastHistory, p.lastShardsAtPhase
	if tr == nil { // nothing ran yet: the state of the start
		tr, ep, atPhase = p.newTracker(nil), p.nextEpoch, nil
		if p.resume != nil {
			tr, ep, hist, atPhase = p.newTracker(p.resume), p.resume.epoch, p.resume.history, p.resume.shardsAtPhase
		}
	}
	p.mu.Unlock()
	rank := p.rank
	rs := tr.state()
	st := State{
		Version: StateVersion, SourceType: p.cfg.SourceType, Seed: p.seed(), Ordered: p.seedGiven, Epoch: ep,
		WorldSize: p.worldSize, Rank: &rank, BatchSize: p.cfg.BatchSize,
		Phases: hist, Consumed: rs.Consumed, Pending: rs.Pending,
		Shards: tr.shardState(), PhaseShards: atPhase,
	}
	if st.Shards != nil && st.PhaseShards == nil {
		st.PhaseShards = map[int]ShardState{}
	}
	if st.Phases == nil {
		st.Phases = []Phase{}
	}
	b, err := json.Marshal(st)
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	return b, nil
}

// seed is the seed of this client's order for the state: the source's (given or, for a folder,
// drawn: a resume then reshuffles the same way), nil when the order has no seed.
func (p *Pipeline) seed() *int64 {
	sd, ok := p.src.(interface{ Seed() (int64, bool) })
	if !ok {
		return nil
	}
	s, given := sd.Seed()
	if given || p.cfg.SourceType == "file" {
		return &s
	}
	return nil
}

// selector is the streaming form of remaining + rank split, for sources that do not know the
// length of the global order in advance (the db source pages it): keep is called once per item of
// the global order, in order, and says whether this rank takes it.
type selector struct {
	phases   []phaseSel
	rank, ws int
	q        int64 // position in the current phase's order
}

type phaseSel struct {
	ws       int
	consumed []int64
	pending  []map[int64]bool
	pos      int64 // items of this phase's order seen so far
}

func newSelector(history []Phase, rank, ws int) *selector {
	s := &selector{rank: rank, ws: ws}
	for _, ph := range history {
		ps := phaseSel{ws: ph.WorldSize}
		for _, rs := range ph.Ranks {
			pend := map[int64]bool{}
			for _, x := range rs.Pending {
				pend[x] = true
			}
			ps.consumed = append(ps.consumed, rs.Consumed)
			ps.pending = append(ps.pending, pend)
		}
		s.phases = append(s.phases, ps)
	}
	return s
}

func (s *selector) keep() bool {
	for i := range s.phases {
		ph := &s.phases[i]
		pos := ph.pos
		ph.pos++
		r, seq := int(pos%int64(ph.ws)), pos/int64(ph.ws)
		if seq < ph.consumed[r] && !ph.pending[r][seq] {
			return false // decided in that phase: not part of the later orders
		}
	}
	q := s.q
	s.q++
	return q%int64(s.ws) == int64(s.rank)
}

// newTracker makes the tracker of a run (from a loaded state when plan is set); for WebDataset with
// a seed it also follows the samples of each shard.
func (p *Pipeline) newTracker(plan *resumePlan) *tracker {
	rs := RankState{}
	if plan != nil {
		rs = plan.cur
	}
	t := newTracker(rs)
	if g, ok := p.src.(interface {
		SetDone(map[int]*source.EntrySet)
	}); ok && p.seedGiven {
		_ = g
		t.where, t.shards = map[int64][2]int{}, map[int]*source.EntrySet{}
		if plan != nil {
			t.shards = toEntrySets(plan.shards)
		}
	}
	return t
}
