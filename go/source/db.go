package source

import (
	"context"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
	"github.com/datago-dev/datago/go/stats"
)

// DB streams the rows of a dataroom-compatible image API (Photoroom's dataroom, or datago's own
// engine server), following datago's db source.
//
// Requests: GET {api_url}images/ (images/random/ with random_sampling) with page_size, fields, the
// filters as dataroom query parameters and, for world_size > 1, partitions_count=world_size and
// partition=rank (the server splits the rows: disjoint and complete). Every page request carries
// "Authorization: Token <key>" (only to the API's host: a next link elsewhere goes without it). The
// pages are followed through "next" until it is null, by one goroutine that keeps at most
// dbPagesAhead decoded pages ahead of the emitter.
//
// Rows → items: id, source, attributes (the JSON object verbatim: values keep their types), tags,
// coca_embedding.vector, duplicate_state (null → 0); image_direct_url → the image's URL; each
// entry of latents by latent_type: a type containing "image" (not "latent_") → an additional
// image, is_mask → a mask, anything else → a latent (bytes), fetched from file_direct_url.
//
// Errors: a page request that fails (401, 403, 404, a 5xx or connection errors still failing after
// the HTTP layer's retries) or a page that is not a dataroom answer (bad JSON, no "results") ends
// the run with an OSError naming the URL; a 404 saying a datasource of source_config.sources does
// not exist (datago's engine server) ends it with a ValueError naming the key and the names. A row that cannot be used is skipped, logged and
// counted (Skipped); an image that cannot be fetched is the fetch stage's skip.
type DB struct {
	images          string // {api_url}images/ or images/random/
	apiHost         string // the host the token may go to
	key             string
	query           url.Values // parameters of the first page (seed added per epoch)
	requireImages   bool
	seed            *int64
	epoch           atomic.Int64
	rank, worldSize int
	http            *remote.Client
	keep            func() bool   // client-side rank split (see SetKeep); nil: the server splits
	localRoots      []dbLocalRoot // source_config.local_roots, longest prefix first

	skipped stats.Counts
}

func init() { Register("db", NewDB) }

// NewDB validates the config and builds the first page's request; nothing is fetched yet.
func NewDB(raw []byte, c *config.Config, http *remote.Client) (Source, error) {
	var dc DBConfig
	if err := config.DecodeStrict(raw, "source_config.", &dc); err != nil {
		return nil, err
	}
	apiURL := strings.TrimSpace(dc.APIURL)
	if apiURL == "" {
		apiURL = strings.TrimSpace(getenv(EnvDataroomURL))
	}
	if apiURL == "" {
		return nil, errs.Errorf(errs.Value,
			"source_type db: the API URL is not set: set the %s environment variable (like http://host:port/api/) or source_config.api_url", EnvDataroomURL)
	}
	if err := remote.CheckURL(apiURL); err != nil {
		return nil, errs.Errorf(errs.Value, "source_type db: %s / source_config.api_url: %v", EnvDataroomURL, err)
	}
	u, _ := url.Parse(apiURL)
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errs.Errorf(errs.Value, "source_type db: the API URL %q must not have a query or fragment", apiURL)
	}
	key := dc.APIKey
	if key == "" {
		key = getenv(EnvDataroomKey)
	}
	key = strings.TrimSpace(key)
	if dc.PageSize < 0 || dc.PageSize > MaxDBPageSize {
		return nil, errs.Errorf(errs.Value, "config key source_config.page_size must be in [1, %d] (the image API's largest page), got %d",
			MaxDBPageSize, dc.PageSize)
	}
	if dc.PageSize == 0 {
		dc.PageSize = DefaultDBPageSize
	}
	if err := dc.merge(); err != nil {
		return nil, err
	}
	d := &DB{
		images:        strings.TrimSuffix(apiURL, "/") + "/images/",
		apiHost:       strings.ToLower(u.Host),
		key:           key,
		requireImages: dc.RequireImages == nil || *dc.RequireImages,
		seed:          dc.Seed,
	}
	if dc.RandomSampling {
		d.images += "random/"
	}
	var err error
	if d.rank, d.worldSize, err = rankOf("source_config.", dc.Rank, dc.WorldSize, c); err != nil {
		return nil, err
	}
	d.query = d.params(&dc)
	if d.localRoots, err = parseLocalRoots(dc.LocalRoots); err != nil {
		return nil, err
	}
	if _, err := remote.SettingsFrom(c); err != nil {
		return nil, err
	}
	d.http = http
	if key == "" {
		slog.Warn("datago: db source: no API key (" + EnvDataroomKey + " or source_config.api_key): requests go without Authorization")
	}
	return d, nil
}

// FirstURL is the URL of the first page of epoch (0 for the first run).
func (d *DB) FirstURL(epoch int64) string {
	q := url.Values{}
	for k, v := range d.query {
		q[k] = v
	}
	if d.seed != nil && strings.HasSuffix(d.images, "/random/") {
		q.Set("seed", strconv.FormatInt(*d.seed+epoch, 10))
	}
	if d.keep != nil { // every rank pages the whole query and keeps its positions
		q.Del("partitions_count")
		q.Del("partition")
	}
	return d.images + "?" + q.Encode()
}

// Skipped returns the rows the latest run skipped, per reason (merged into the client's stats).
func (d *DB) Skipped() map[string]int64 { return d.skipped.Snapshot() }

func (d *DB) skip(reason errs.Reason, id, pageURL string, detail any) {
	n := d.skipped.Add(string(reason))
	log := slog.Debug
	if n <= dbWarnSkips {
		log = slog.Warn
	}
	log("datago: db source: skipping row", "id", id, "reason", reason, "detail", detail, "page", pageURL)
	if n == dbWarnSkips {
		slog.Warn("datago: db source: further skips of this reason are logged at debug level", "reason", reason)
	}
}

// Run reads the pages (one goroutine, at most dbPagesAhead pages ahead) and emits their rows. It
// returns when the last page is done, ctx is cancelled, or a page fails; the page reader has
// returned by then.
func (d *DB) Run(ctx context.Context, out chan<- *Item) error {
	epoch := d.epoch.Add(1) - 1
	d.skipped.Reset()
	pctx, cancel := context.WithCancel(ctx)
	pages := make(chan dbPage, dbPagesAhead)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(pages)
		d.readPages(pctx, d.FirstURL(epoch), pages)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()
	for pg := range pages {
		if pg.err != nil {
			return pg.err
		}
		for _, raw := range pg.rows {
			if d.keep != nil && !d.keep() {
				continue // another rank's row
			}
			it := d.item(pg.url, raw)
			if it == nil {
				if d.keep == nil {
					continue
				}
				it = &Item{ID: rowID(raw), Failed: true} // keeps the rank's positions in step
			}
			if err := Send(ctx, out, it); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}
