// Package fetch is the second pipeline stage: it reads the bytes of every payload of a sample into
// C memory (local files here; HTTP joins it for remote sources).
package fetch

import (
	"context"
	"fmt"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/remote"
	"github.com/datago-dev/datago/go/source"
)

// Fetcher fills p.Data for payloads that do not carry their bytes yet.
type Fetcher struct {
	MaxBytes int64 // per payload; larger files are refused
	// HTTP fetches URL payloads: the pipeline's shared client (see pipeline.New).
	HTTP *remote.Client
}

// Payload reads one payload. It returns the number of bytes read.
func (f *Fetcher) Payload(ctx context.Context, p *source.Payload) (int64, error) {
	if p.Data.Ptr != nil {
		return int64(p.Data.Len), nil
	}
	switch {
	case p.Path != "":
		b, err := cmem.ReadFile(p.Path, f.MaxBytes)
		if err != nil {
			return 0, err
		}
		p.Data = b
		return int64(b.Len), nil
	case p.URL != "":
		b, err := f.HTTP.Get(ctx, p.URL, remote.WithMaxBytes(f.MaxBytes))
		if err != nil {
			return 0, err
		}
		p.Data = b
		return int64(b.Len), nil
	default:
		return 0, fmt.Errorf("payload %q has no path, URL or bytes", p.Name)
	}
}

// Item reads every payload of it. On error, it.Free() is left to the caller.
func (f *Fetcher) Item(ctx context.Context, it *source.Item) (int64, error) {
	var total int64
	var firstErr error
	it.Payloads(func(p *source.Payload) {
		if firstErr != nil {
			return
		}
		n, err := f.Payload(ctx, p)
		total += n
		if err != nil {
			firstErr = err
		}
	})
	return total, firstErr
}
