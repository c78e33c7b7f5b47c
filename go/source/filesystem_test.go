package source

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

func tree(t *testing.T, n int) string {
	t.Helper()
	root := t.TempDir()
	for i := 0; i < n; i++ {
		ext := []string{".jpg", ".JPEG", ".png", ".WebP"}[i%4]
		dir := filepath.Join(root, fmt.Sprintf("d%d/e%d", i%3, i%5))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("img%04d%s", i, ext)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// not images: never listed
	os.WriteFile(filepath.Join(root, "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(root, "d0", "meta.json"), []byte("{}"), 0o644)
	return root
}

func newFS(t *testing.T, sc map[string]any) *Filesystem {
	t.Helper()
	raw, _ := json.Marshal(map[string]any{"source_type": "file", "source_config": sc})
	c, err := config.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(c, remote.NewFor(c))
	if err != nil {
		t.Fatal(err)
	}
	return s.(*Filesystem)
}

func TestFullListing(t *testing.T) {
	root := tree(t, 1234)
	files, err := newFS(t, map[string]any{"root_path": root}).List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1234 {
		t.Fatalf("listed %d files, want all 1234", len(files))
	}
	if !slices.IsSorted(files) {
		t.Error("listing is not sorted")
	}
}

func TestRankSplitDisjointComplete(t *testing.T) {
	root := tree(t, 101)
	all, _ := newFS(t, map[string]any{"root_path": root}).List(context.Background())
	for ws := 1; ws <= 8; ws++ {
		for _, random := range []bool{false, true} {
			seen := map[string]int{}
			for r := 0; r < ws; r++ {
				files, err := newFS(t, map[string]any{"root_path": root, "rank": r, "world_size": ws, "random_sampling": random}).List(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				for _, f := range files {
					seen[f]++
				}
			}
			if len(seen) != len(all) {
				t.Errorf("world_size %d random %v: %d distinct files, want %d", ws, random, len(seen), len(all))
			}
			for f, n := range seen {
				if n != 1 {
					t.Errorf("world_size %d: %s read by %d ranks", ws, f, n)
				}
			}
		}
	}
}

func TestRandomSampling(t *testing.T) {
	root := tree(t, 200)
	a, _ := newFS(t, map[string]any{"root_path": root, "random_sampling": true}).List(context.Background())
	b, _ := newFS(t, map[string]any{"root_path": root, "random_sampling": true}).List(context.Background())
	if slices.Equal(a, b) {
		t.Error("two unseeded random listings gave the same order")
	}
	sa, sb := slices.Clone(a), slices.Clone(b)
	slices.Sort(sa)
	slices.Sort(sb)
	if !slices.Equal(sa, sb) || len(sa) != 200 {
		t.Error("random listings do not cover the same set")
	}
	s1, _ := newFS(t, map[string]any{"root_path": root, "random_sampling": true, "seed": 7}).List(context.Background())
	s2, _ := newFS(t, map[string]any{"root_path": root, "random_sampling": true, "seed": 7}).List(context.Background())
	if !slices.Equal(s1, s2) {
		t.Error("the same seed gave two orders")
	}
}

func TestFilesystemConfigErrors(t *testing.T) {
	root := t.TempDir()
	for name, tc := range map[string]struct {
		cfg  map[string]any
		kind errs.Kind
	}{
		"missing root":  {map[string]any{"source_type": "file", "source_config": map[string]any{"root_path": root + "/nope"}}, errs.NotFound},
		"no root":       {map[string]any{"source_type": "file", "source_config": map[string]any{}}, errs.Value},
		"unknown key":   {map[string]any{"source_type": "file", "source_config": map[string]any{"root_path": root, "bogus": 1}}, errs.Value},
		"rank too high": {map[string]any{"source_type": "file", "source_config": map[string]any{"root_path": root, "rank": 2, "world_size": 2}}, errs.Value},
	} {
		raw, _ := json.Marshal(tc.cfg)
		c, err := config.Parse(raw)
		if err == nil {
			_, err = New(c, remote.NewFor(c))
		}
		if err == nil || errs.KindOf(err) != tc.kind {
			t.Errorf("%s: got %v, want a %s", name, err, tc.kind)
		}
	}
}

// datago's spellings reach the source: source_config.random_order is random_sampling, and the
// Go edition's page_size is accepted (and ignored).
func TestFilesystemDatagoAliases(t *testing.T) {
	root := tree(t, 50)
	sorted, _ := newFS(t, map[string]any{"root_path": root, "page_size": 512}).List(context.Background())
	byAlias, _ := newFS(t, map[string]any{"root_path": root, "random_order": true, "seed": 7}).List(context.Background())
	byName, _ := newFS(t, map[string]any{"root_path": root, "random_sampling": true, "seed": 7}).List(context.Background())
	if !slices.Equal(byAlias, byName) || slices.Equal(byAlias, sorted) || len(byAlias) != 50 {
		t.Errorf("random_order did not shuffle like random_sampling: %v / %v", byAlias[:5], byName[:5])
	}
	if fs := newFS(t, map[string]any{"root_path": root, "random_order": true}); !fs.random {
		t.Error("random_order not applied")
	}
}
