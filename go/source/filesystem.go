package source

import (
	"context"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
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
	rank, worldSize int
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
	if remote.IsS3(fc.RootPath) {
		return newS3Folder(fc, c) // s3list.go
	}
	if err := remote.CheckScheme("source_config.root_path", fc.RootPath); err != nil {
		return nil, err
	}
	fc.RootPath = strings.TrimPrefix(fc.RootPath, "file://")
	st, err := os.Stat(fc.RootPath)
	if err != nil {
		return nil, errs.Errorf(errs.NotFound, "source_config.root_path %q: %v", fc.RootPath, err)
	}
	if !st.IsDir() {
		return nil, errs.Errorf(errs.Value, "source_config.root_path %q is not a folder", fc.RootPath)
	}
	if d, err := os.Open(fc.RootPath); err != nil {
		return nil, errs.Errorf(errs.OS, "source_config.root_path %q is not readable: %v", fc.RootPath, err)
	} else {
		d.Close()
	}
	r, w, err := rankOf("source_config.", fc.Rank, fc.WorldSize, c)
	if err != nil {
		return nil, err
	}
	fs := &Filesystem{root: fc.RootPath, random: fc.RandomSampling, rank: r, worldSize: w}
	if fc.Seed != nil {
		fs.seed = *fc.Seed
	} else {
		fs.seed = time.Now().UnixNano()
	}
	return fs, nil
}

// List returns this rank's files (paths relative to the root), sorted, or shuffled with
// random_sampling. Every rank sees the same sorted listing and takes every world_size-th file, so
// the ranks are disjoint and complete whether or not they shuffle.
func (f *Filesystem) List(ctx context.Context) ([]string, error) {
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
	idx := RankSlice(len(all), f.rank, f.worldSize)
	mine := make([]string, len(idx))
	for i, j := range idx {
		mine[i] = all[j]
	}
	if f.random {
		rng := rand.New(rand.NewPCG(uint64(f.seed), 0x9e3779b97f4a7c15))
		f.seed++ // the next epoch (start after stop) gets another order
		rng.Shuffle(len(mine), func(i, j int) { mine[i], mine[j] = mine[j], mine[i] })
	}
	return mine, nil
}

// Run lists the folder, then emits one item per file.
func (f *Filesystem) Run(ctx context.Context, out chan<- *Item) error {
	files, err := f.List(ctx)
	if err != nil {
		return err
	}
	for _, rel := range files {
		it := &Item{ID: rel, Source: "filesystem", Image: &Payload{Path: filepath.Join(f.root, filepath.FromSlash(rel))}}
		if err := Send(ctx, out, it); err != nil {
			return err
		}
	}
	return nil
}
