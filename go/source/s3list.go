package source

import (
	"context"
	"math/rand/v2"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

// s3Timeout bounds the requests a constructor sends (the bucket check, a shard prefix's listing).
const s3Timeout = 2 * time.Minute

// S3Folder is the file source over s3://bucket/prefix: the objects below the prefix with an image
// extension, listed with ListObjectsV2 (paginated), then split by rank and ordered exactly like a
// local folder (sorted keys, every world_size-th to a rank, a seeded shuffle). Each sample's image
// is a presigned GET fetched through the pipeline's HTTP layer (retries, byte budget).
type S3Folder struct {
	s3              *remote.S3
	root            string // s3://bucket/prefix/ (the prefix ends with "/" unless empty)
	bucket, prefix  string
	random          bool
	seed            int64
	rank, worldSize int
}

// newS3Folder builds the file source for an s3:// root_path; the bucket is checked now (a
// missing bucket, a refusal or a wrong region fail the constructor, naming the URL).
func newS3Folder(fc FileConfig, c *config.Config) (Source, error) {
	s3, err := remote.S3For(c)
	if err != nil {
		return nil, err
	}
	bucket, prefix, err := remote.ParseS3(fc.RootPath)
	if err != nil {
		return nil, errs.Errorf(errs.Value, "config key source_config.root_path: %v", err)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	r, w, err := rankOf("source_config.", fc.Rank, fc.WorldSize, c)
	if err != nil {
		return nil, err
	}
	f := &S3Folder{s3: s3, root: remote.S3URL(bucket, prefix), bucket: bucket, prefix: prefix,
		random: fc.RandomSampling, rank: r, worldSize: w}
	if fc.Seed != nil {
		f.seed = *fc.Seed
	} else {
		f.seed = time.Now().UnixNano()
	}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	if err := s3.CheckBucket(ctx, f.root); err != nil {
		return nil, err
	}
	return f, nil
}

// List returns this rank's keys relative to the prefix, sorted, or shuffled with random_sampling
// (the same order a local folder with the same files gives). A prefix without any object is
// errs.NotFound (a local root_path that does not exist is too).
func (f *S3Folder) List(ctx context.Context) ([]string, error) {
	objs, err := f.s3.List(ctx, f.root)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, errs.Errorf(errs.NotFound, "source_config.root_path %s: no object below this prefix", f.root)
	}
	var all []string
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, f.prefix)
		if ImageExtensions[strings.ToLower(path.Ext(rel))] {
			all = append(all, rel)
		}
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

// Run lists the prefix, then emits one item per object, its image a presigned URL.
func (f *S3Folder) Run(ctx context.Context, out chan<- *Item) error {
	keys, err := f.List(ctx)
	if err != nil {
		return err
	}
	for _, rel := range keys {
		u, err := f.s3.Presign(ctx, remote.S3URL(f.bucket, f.prefix+rel))
		if err != nil {
			return err
		}
		it := &Item{ID: rel, Source: f.root, Image: &Payload{URL: u}}
		if err := Send(ctx, out, it); err != nil {
			return err
		}
	}
	return nil
}

// s3Shards expands one s3:// url entry of a WebDataset config: an object key ending in ".tar" is
// one shard; anything else (a prefix, "s3://bucket/shards/") is listed and every ".tar" object
// below it becomes a shard, in key order. The bucket is checked here.
func s3Shards(s3 *remote.S3, loc string) ([]string, error) {
	bucket, key, err := remote.ParseS3(loc)
	if err != nil {
		return nil, errs.Errorf(errs.Value, "config key source_config.url: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	if err := s3.CheckBucket(ctx, loc); err != nil {
		return nil, err
	}
	if strings.HasSuffix(strings.ToLower(key), ".tar") {
		return []string{loc}, nil
	}
	objs, err := s3.List(ctx, loc)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, o := range objs {
		if strings.HasSuffix(strings.ToLower(o.Key), ".tar") {
			out = append(out, remote.S3URL(bucket, o.Key))
		}
	}
	if len(out) == 0 {
		return nil, errs.Errorf(errs.NotFound, "source_config.url: no .tar shard below %s", loc)
	}
	sort.Strings(out)
	return out, nil
}

// addS3Shards appends the shards of one s3:// url entry.
func (w *WebDataset) addS3Shards(loc string, c *config.Config) error {
	if w.s3 == nil {
		s3, err := remote.S3For(c)
		if err != nil {
			return err
		}
		w.s3 = s3
	}
	locs, err := s3Shards(w.s3, loc)
	if err != nil {
		return err
	}
	for _, l := range locs {
		if len(w.shards) >= maxShards {
			return errs.Errorf(errs.Value, "config key source_config.url: more than %d shards", maxShards)
		}
		w.shards = append(w.shards, shard{index: len(w.shards), loc: l, remote: true})
	}
	return nil
}

// openS3 opens an s3:// shard: a presigned GET streamed through the HTTP layer (so a cut shard is
// resumed with a Range GET). A failure names the s3:// URL and S3's error code.
func (w *WebDataset) openS3(ctx context.Context, loc string) (*remote.Stream, error) {
	u, err := w.s3.Presign(ctx, loc)
	if err != nil {
		return nil, err
	}
	s, err := w.http.Open(ctx, u)
	if err != nil {
		return nil, w.s3.S3ErrorFrom(loc, err)
	}
	return s, nil
}
