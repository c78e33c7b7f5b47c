package pipeline

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestTrackerStateRoundTrip(t *testing.T) {
	tr := newTracker(RankState{})
	tr.decide(0, 1, 2, 5, 7, 3)
	got := tr.state()
	if got.Consumed != 8 || !slices.Equal(got.Pending, []int64{4, 6}) {
		t.Fatalf("state %+v, want consumed 8 pending [4 6]", got)
	}
	again := newTracker(got)
	for s := int64(0); s < 10; s++ {
		want := s < 8 && s != 4 && s != 6
		if again.isDecided(s) != want {
			t.Errorf("seq %d decided %v, want %v", s, again.isDecided(s), want)
		}
	}
	again.decide(4, 6)
	if st := again.state(); st.Consumed != 8 || len(st.Pending) != 0 {
		t.Fatalf("after deciding the pending: %+v", st)
	}
}

// randomPhase is a phase of ws ranks over n positions where each rank decided a random prefix of
// its stream with a few holes (pending).
func randomPhase(rng *rand.Rand, n, ws int) Phase {
	ph := Phase{WorldSize: ws}
	for r := 0; r < ws; r++ {
		streamLen := (n - r + ws - 1) / ws
		if streamLen < 0 {
			streamLen = 0
		}
		c := int64(rng.IntN(streamLen + 1))
		rs := RankState{Consumed: c, Pending: []int64{}}
		for s := int64(0); s < c; s++ {
			if rng.IntN(5) == 0 {
				rs.Pending = append(rs.Pending, s)
			}
		}
		ph.Ranks = append(ph.Ranks, rs)
	}
	return ph
}

// The streaming selector (db source) and the list form (folder source) agree, and the ranks of the
// last phase split the remaining positions disjointly and completely.
func TestSelectorMatchesRemaining(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		n := rng.IntN(60)
		var hist []Phase
		left := n
		for k := rng.IntN(3); k > 0; k-- {
			ph := randomPhase(rng, left, 1+rng.IntN(5))
			hist = append(hist, ph)
			rem, err := remaining(n, hist)
			if err != nil {
				t.Fatal(err)
			}
			left = len(rem)
		}
		rem, err := remaining(n, hist)
		if err != nil {
			t.Fatal(err)
		}
		ws := 1 + rng.IntN(5)
		seen := map[int]int{}
		for r := 0; r < ws; r++ {
			sel := newSelector(hist, r, ws)
			var got []int
			for g := 0; g < n; g++ {
				if sel.keep() {
					got = append(got, g)
				}
			}
			var want []int
			for i := r; i < len(rem); i += ws {
				want = append(want, rem[i])
			}
			if !slices.Equal(got, want) {
				t.Fatalf("trial %d rank %d/%d: selector %v, remaining %v", trial, r, ws, got, want)
			}
			for _, g := range got {
				seen[g]++
			}
		}
		if len(seen) != len(rem) {
			t.Fatalf("trial %d: ranks cover %d of %d remaining", trial, len(seen), len(rem))
		}
		for g, c := range seen {
			if c != 1 {
				t.Fatalf("trial %d: position %d taken %d times", trial, g, c)
			}
		}
	}
}

func TestTurnstileSkipsAndOrders(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ts := newTurnstile(ctx)
	ts.skip(1)
	ts.skip(3)
	var order []int64
	done := make(chan struct{})
	for _, tk := range []int64{4, 2, 0} {
		go func() {
			if ts.wait(tk) {
				order = append(order, tk) // under the turn: one at a time
				ts.leave()
			}
			done <- struct{}{}
		}()
	}
	for i := 0; i < 3; i++ {
		<-done
	}
	if !slices.Equal(order, []int64{0, 2, 4}) {
		t.Fatalf("turn order %v", order)
	}
}

func TestEntrySetsRoundTrip(t *testing.T) {
	in := map[int]ShardState{3: {Prefix: 2, Extra: []int{4, 7}}, 0: {Prefix: 0, Extra: []int{0, 1, 5}}}
	sets := toEntrySets(in)
	if !sets[0].Has(1) || sets[0].Has(2) || sets[0].Prefix != 2 || !sets[3].Has(4) || sets[3].Has(5) {
		t.Fatalf("entry sets %+v %+v", sets[0], sets[3])
	}
	sets[3].Add(2)
	sets[3].Add(3)
	out := fromEntrySets(sets)
	if out[3].Prefix != 5 || !slices.Equal(out[3].Extra, []int{7}) || out[0].Prefix != 2 || !slices.Equal(out[0].Extra, []int{5}) {
		t.Fatalf("round trip %+v", out)
	}
}
