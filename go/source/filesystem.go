package source

import (
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

// ImageExtensions are the file extensions the filesystem source lists (compared lower-case).
var ImageExtensions = map[string]bool{
	".jpg": true, ".jpeg": true, ".png": true, ".webp": true, ".gif": true, ".tif": true,
	".tiff": true, ".bmp": true, ".avif": true, ".heic": true, ".heif": true, ".jxl": true,
	".jp2": true, ".ppm": true, ".pgm": true, ".pnm": true,
}

// FileConfig is source_config for source_type "file".
type FileConfig struct {
	RootPath       string `json:"root_path"`
	RandomSampling bool   `json:"random_sampling"`
	Rank           *int   `json:"rank"`
	WorldSize      *int   `json:"world_size"`
	Seed           *int64 `json:"seed"` // with random_sampling: the same seed gives the same order
	// PageSize is accepted and ignored: the Go edition of datago's README sets it for this source.
	PageSize int `json:"page_size"`
}

// Filesystem lists the images below a folder.
type Filesystem struct {
	root            string
	random          bool
	seed            int64
	seeded          bool // the seed was given: random_sampling shuffles the whole listing
	rank, worldSize int
	epoch           atomic.Int64
	plan            func(n int) ([]int, error) // this rank's positions in the epoch's global order
	bucket          *s3Root                    // an s3:// root_path (s3list.go); nil for a folder
}

func init() { Register("file", NewFilesystem) }

// NewFilesystem validates the config: root_path must be a readable folder.
func NewFilesystem(raw []byte, c *config.Config, _ *remote.Client) (Source, error) {
	var fc FileConfig
	if err := config.DecodeStrict(raw, "source_config.", &fc); err != nil {
		return nil, err
	}
	if fc.RootPath == "" {
		return nil, errs.Errorf(errs.Value, "config key source_config.root_path is required")
	}
	var bucket *s3Root
	var err error
	if remote.IsS3(fc.RootPath) {
		if bucket, err = newS3Root(fc.RootPath, c); err != nil { // s3list.go
			return nil, err
		}
		fc.RootPath = bucket.root
	} else if fc.RootPath, err = checkFolder(fc.RootPath); err != nil {
		return nil, err
	}
	r, w, err := rankOf("source_config.", fc.Rank, fc.WorldSize, c)
	if err != nil {
		return nil, err
	}
	fs := &Filesystem{root: fc.RootPath, random: fc.RandomSampling, rank: r, worldSize: w, bucket: bucket}
	if fc.Seed != nil {
		fs.seed, fs.seeded = *fc.Seed, true
	} else {
		fs.seed = time.Now().UnixNano()
	}
	return fs, nil
}

// checkFolder checks a local root_path (a file:// URL is a path; other schemes are refused) and
// returns it as a path.
func checkFolder(root string) (string, error) {
	if err := remote.CheckScheme("source_config.root_path", root); err != nil {
		return "", err
	}
	root = strings.TrimPrefix(root, "file://")
	st, err := os.Stat(root)
	if err != nil {
		return "", errs.Errorf(errs.NotFound, "source_config.root_path %q: %v", root, err)
	}
	if !st.IsDir() {
		return "", errs.Errorf(errs.Value, "source_config.root_path %q is not a folder", root)
	}
	if d, err := os.Open(root); err != nil {
		return "", errs.Errorf(errs.OS, "source_config.root_path %q is not readable: %v", root, err)
	} else {
		d.Close()
	}
	return root, nil
}

// Global returns the epoch's global order of the files (paths relative to the root): the sorted
// listing, shuffled as a whole with (seed, epoch) under random_sampling with a seed. It does not
// depend on the rank or world_size, so the ranks' streams are sub-sequences of one order (see List).
func (f *Filesystem) Global(ctx context.Context, epoch int64) ([]string, error) {
	all, err := f.Sorted(ctx)
	if err != nil {
		return nil, err
	}
	return f.shuffleGlobal(all, epoch), nil
}

// Sorted returns the sorted listing of the folder or bucket prefix (paths relative to the root,
// '/'-separated): the order of every epoch before shuffling, and the index of random access (Index).
func (f *Filesystem) Sorted(ctx context.Context) ([]string, error) {
	if f.bucket != nil {
		return f.bucket.keys(ctx) // sorted
	}
	var all []string
	err := filepath.WalkDir(f.root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == f.root {
				return err
			}
			return nil // an unreadable subfolder is skipped, not fatal
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if d.IsDir() || !ImageExtensions[strings.ToLower(filepath.Ext(path))] {
			return nil
		}
		rel, err := filepath.Rel(f.root, path)
		if err != nil {
			return err
		}
		all = append(all, filepath.ToSlash(rel))
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(all)
	return all, nil
}

// shuffleGlobal shuffles the sorted listing as a whole with (seed, epoch) under random_sampling
// with a seed.
func (f *Filesystem) shuffleGlobal(all []string, epoch int64) []string {
	if f.random && f.seeded {
		rng := rand.New(rand.NewPCG(uint64(f.seed), uint64(epoch)^0x9e3779b97f4a7c15))
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	}
	return all
}

// SetEpoch sets the epoch of the next Run (each Run then moves to the next one).
func (f *Filesystem) SetEpoch(e int64) { f.epoch.Store(e) }

// SetPlan replaces the rank split (positions r, r+W, ... of the global order) by plan, which maps
// the global order's length to this rank's positions, in delivery order (elastic resume).
func (f *Filesystem) SetPlan(plan func(n int) ([]int, error)) { f.plan = plan }

// List returns this rank's files for the next epoch: every world_size-th file of the global order
// (Global), so the ranks are disjoint and complete whether or not they shuffle. Without a seed
// (each rank then draws its own), random_sampling shuffles the rank's own files instead.
func (f *Filesystem) List(ctx context.Context) ([]string, error) {
	return f.list(ctx, f.epoch.Load())
}

func (f *Filesystem) list(ctx context.Context, epoch int64) ([]string, error) {
	all, err := f.Global(ctx, epoch)
	if err != nil {
		return nil, err
	}
	var idx []int
	if f.plan != nil {
		if idx, err = f.plan(len(all)); err != nil {
			return nil, err
		}
	} else {
		idx = RankSlice(len(all), f.rank, f.worldSize)
	}
	mine := make([]string, len(idx))
	for i, j := range idx {
		mine[i] = all[j]
	}
	if f.random && !f.seeded {
		rng := rand.New(rand.NewPCG(uint64(f.seed), uint64(epoch)^0x9e3779b97f4a7c15))
		rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
	}
	return mine, nil
}

// Run lists the folder, then emits one item per file.
func (f *Filesystem) Run(ctx context.Context, out chan<- *Item) error {
	files, err := f.list(ctx, f.epoch.Add(1)-1)
	if err != nil {
		return err
	}
	for _, rel := range files {
		it := &Item{ID: rel, Source: "filesystem", Image: &Payload{Path: filepath.Join(f.root, filepath.FromSlash(rel))}}
		if f.bucket != nil {
			if it, err = f.bucket.item(ctx, rel); err != nil {
				return err
			}
		}
		if err := Send(ctx, out, it); err != nil {
			return err
		}
	}
	return nil
}
