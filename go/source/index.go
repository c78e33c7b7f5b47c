package source

import (
	"context"
	"path/filepath"
)

// Indexer is a source whose samples can be listed up front as a fixed sequence, so that sample i
// can be fetched and decoded on its own (random access, map-style datasets).
type Indexer interface {
	// Index returns the dataset's items in index order. Their payloads say where to fetch the
	// bytes (no bytes are read).
	Index(ctx context.Context) ([]*Item, error)
}

// Index lists the folder: item i is the i-th file of the sorted listing (paths relative to the
// root), whatever random_sampling, rank or world_size say — a sampler chooses the order and the
// ranks' shares of a map-style dataset.
func (f *Filesystem) Index(ctx context.Context) ([]*Item, error) {
	files, err := f.Sorted(ctx)
	if err != nil {
		return nil, err
	}
	items := make([]*Item, len(files))
	for i, rel := range files {
		if f.bucket != nil { // an s3:// root: a presigned GET (s3list.go)
			if items[i], err = f.bucket.item(ctx, rel); err != nil {
				return nil, err
			}
			continue
		}
		items[i] = &Item{ID: rel, Source: "filesystem", Image: &Payload{Path: filepath.Join(f.root, filepath.FromSlash(rel))}}
	}
	return items, nil
}
