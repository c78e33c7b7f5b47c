package source

import (
	"context"
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

// s3Root is the file source's s3:// root_path (Filesystem.bucket): the objects below the prefix
// with an image extension, listed with ListObjectsV2 (paginated); the Filesystem then orders,
// splits by rank and resumes them exactly like a local folder's files. Each sample's image is a
// presigned GET fetched through the pipeline's HTTP layer (retries, byte budget).
type s3Root struct {
	s3             *remote.S3
	root           string // s3://bucket/prefix/ (the prefix ends with "/" unless empty)
	bucket, prefix string
}

// newS3Root checks the bucket now: a missing bucket, a refusal or a wrong region fail the
// constructor, naming the URL.
func newS3Root(rootPath string, c *config.Config) (*s3Root, error) {
	s3, err := remote.S3For(c)
	if err != nil {
		return nil, err
	}
	bucket, prefix, err := remote.ParseS3(rootPath)
	if err != nil {
		return nil, errs.Errorf(errs.Value, "config key source_config.root_path: %v", err)
	}
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	r := &s3Root{s3: s3, root: remote.S3URL(bucket, prefix), bucket: bucket, prefix: prefix}
	ctx, cancel := context.WithTimeout(context.Background(), s3Timeout)
	defer cancel()
	if err := s3.CheckBucket(ctx, r.root); err != nil {
		return nil, err
	}
	return r, nil
}

// keys returns the image keys below the prefix, relative to it, sorted. A prefix without any
// object is errs.NotFound (as a local root_path that does not exist).
func (r *s3Root) keys(ctx context.Context) ([]string, error) {
	objs, err := r.s3.List(ctx, r.root)
	if err != nil {
		return nil, err
	}
	if len(objs) == 0 {
		return nil, errs.Errorf(errs.NotFound, "source_config.root_path %s: no object below this prefix", r.root)
	}
	var all []string
	for _, o := range objs {
		rel := strings.TrimPrefix(o.Key, r.prefix)
		if ImageExtensions[strings.ToLower(path.Ext(rel))] {
			all = append(all, rel)
		}
	}
	sort.Strings(all)
	return all, nil
}

// item is the sample of one key: its image a presigned URL, its source the root URL.
func (r *s3Root) item(ctx context.Context, rel string) (*Item, error) {
	u, err := r.s3.Presign(ctx, remote.S3URL(r.bucket, r.prefix+rel))
	if err != nil {
		return nil, err
	}
	return &Item{ID: rel, Source: r.root, Image: &Payload{URL: u}}, nil
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
