package cmem

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func strp(s string) *string { return &s }

// The load-time policy: our bound unless the user chose through the environment.
func TestDecideArenaMax(t *testing.T) {
	cases := []struct {
		env, tun, ours *string
		n              int
		why            string
	}{
		{nil, nil, nil, DefaultArenaMax, "datago default"},
		{strp("8"), nil, nil, 0, "MALLOC_ARENA_MAX"},
		{strp("8"), nil, strp("3"), 0, "MALLOC_ARENA_MAX"},
		{strp(""), nil, nil, DefaultArenaMax, "datago default"},
		{nil, strp("glibc.malloc.tcache_count=0:glibc.malloc.arena_max=6"), nil, 0, "GLIBC_TUNABLES"},
		{nil, strp("glibc.malloc.tcache_count=0"), nil, DefaultArenaMax, "datago default"},
		{nil, nil, strp("0"), 0, "DATAGO_MALLOC_ARENA_MAX"},
		{nil, nil, strp("5"), 5, "DATAGO_MALLOC_ARENA_MAX"},
		{nil, nil, strp("five"), DefaultArenaMax, "DATAGO_MALLOC_ARENA_MAX invalid (default used)"},
		{nil, nil, strp("-1"), DefaultArenaMax, "DATAGO_MALLOC_ARENA_MAX invalid (default used)"},
	}
	for i, c := range cases {
		n, why := decideArenaMax(c.env, c.tun, c.ours)
		if n != c.n || why != c.why {
			t.Errorf("case %d: got (%d, %q), want (%d, %q)", i, n, why, c.n, c.why)
		}
	}
}

// helperThreads is how many threads the helper process keeps alive at once, each with a malloc.
const helperThreads = 16

// TestArenaHelper runs only as the child of TestArenaMaxAtLoad: it prints the load-time decision
// and the arena count after helperThreads threads have each allocated.
func TestArenaHelper(t *testing.T) {
	if os.Getenv("CMEM_ARENA_HELPER") != "1" {
		t.Skip("helper process of TestArenaMaxAtLoad")
	}
	var ready, hold sync.WaitGroup
	ready.Add(helperThreads)
	hold.Add(1)
	for i := 0; i < helperThreads; i++ {
		go func() {
			runtime.LockOSThread() // a thread of its own, kept until the test ends
			touchMalloc()
			ready.Done()
			hold.Wait()
		}()
	}
	ready.Wait()
	n, why := ArenaMax()
	fmt.Printf("RESULT %d|%s|%d\n", n, why, Heaps())
	fmt.Printf("MMAP %d\n", MmapThreshold())
	hold.Done()
}

func runArenaHelper(t *testing.T, env ...string) (n int, why string, heaps int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestArenaHelper$", "-test.v")
	cmd.Env = []string{"CMEM_ARENA_HELPER=1", "PATH=" + os.Getenv("PATH")}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %v: %v\n%s", env, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(line, "RESULT "); ok {
			parts := strings.Split(rest, "|")
			if len(parts) == 3 {
				fmt.Sscan(parts[0], &n)
				fmt.Sscan(parts[2], &heaps)
				return n, parts[1], heaps
			}
		}
	}
	t.Fatalf("helper %v printed no result:\n%s", env, out)
	return
}

// The arena bound is set when the library loads, before any thread allocates, and holds: many
// threads allocating at once share DefaultArenaMax arenas. The user's MALLOC_ARENA_MAX or
// DATAGO_MALLOC_ARENA_MAX=0 is honoured (then glibc gives the threads more arenas).
func TestArenaMaxAtLoad(t *testing.T) {
	if Heaps() < 0 {
		t.Fatal("not glibc: this test needs malloc_info")
	}
	n, why, heaps := runArenaHelper(t)
	if n != DefaultArenaMax || why != "datago default" {
		t.Errorf("default environment: decided (%d, %q)", n, why)
	}
	if heaps < 1 || heaps > DefaultArenaMax {
		t.Errorf("default environment: %d arenas after %d threads allocated, want 1..%d", heaps, helperThreads, DefaultArenaMax)
	}

	n, why, heaps = runArenaHelper(t, "MALLOC_ARENA_MAX=6")
	if n != 0 || why != "MALLOC_ARENA_MAX" {
		t.Errorf("MALLOC_ARENA_MAX=6: decided (%d, %q)", n, why)
	}
	if heaps > 6 {
		t.Errorf("MALLOC_ARENA_MAX=6: %d arenas", heaps)
	}

	n, why, heaps = runArenaHelper(t, "DATAGO_MALLOC_ARENA_MAX=0")
	if n != 0 || why != "DATAGO_MALLOC_ARENA_MAX" {
		t.Errorf("DATAGO_MALLOC_ARENA_MAX=0: decided (%d, %q)", n, why)
	}
	// glibc's own policy: a new thread's first malloc gets a new arena while fewer than 8 exist
	if heaps <= DefaultArenaMax {
		t.Errorf("DATAGO_MALLOC_ARENA_MAX=0: %d arenas after %d threads allocated; glibc's default should give more", heaps, helperThreads)
	}
}

// No mmap threshold is set at load (glibc's dynamic one) unless DATAGO_MALLOC_MMAP_THRESHOLD asks.
func TestMmapThresholdAtLoad(t *testing.T) {
	for _, c := range []struct {
		env       []string
		threshold int
	}{
		{nil, 0},
		{[]string{"MALLOC_MMAP_THRESHOLD_=4194304"}, 0}, // glibc applies the user's
		{[]string{"DATAGO_MALLOC_MMAP_THRESHOLD=0"}, 0}, // glibc's dynamic threshold
		{[]string{"DATAGO_MALLOC_MMAP_THRESHOLD=524288"}, 524288},
		{[]string{"DATAGO_MALLOC_MMAP_THRESHOLD=1048576", "MALLOC_MMAP_THRESHOLD_=4194304"}, 0}, // the user's wins
		{[]string{"GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304"}, 0},
	} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestArenaHelper$", "-test.v")
		cmd.Env = append([]string{"CMEM_ARENA_HELPER=1", "PATH=" + os.Getenv("PATH")}, c.env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("helper %v: %v\n%s", c.env, err, out)
		}
		want := fmt.Sprintf("MMAP %d", c.threshold)
		if !strings.Contains(string(out), want+"\n") {
			t.Errorf("env %v: want %q in\n%s", c.env, want, out)
		}
	}
}

func TestTrimCounts(t *testing.T) {
	before := Trims()
	Trim()
	if Trims() != before+1 {
		t.Errorf("Trims %d, want %d", Trims(), before+1)
	}
}
