package source

/*
#include <stdlib.h>
*/
import "C"

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
	"github.com/datago-dev/datago/go/stats"
)

// DBConfig is source_config for source_type "db": Photoroom datago's dataroom source. The keys and
// their meaning follow datago; the filters become query parameters of the dataroom image API.
type DBConfig struct {
	// APIURL and APIKey override the DATAROOM_API_URL / DATAROOM_API_KEY environment variables.
	// The URL is the API root, like "http://host:port/api/" (a missing trailing slash is added).
	APIURL string `json:"api_url"`
	APIKey string `json:"api_key"`

	Sources   dbParam `json:"sources"`    // comma-separated (a JSON list is joined)
	SourcesNE dbParam `json:"sources_ne"` // → sources__ne
	PageSize  int     `json:"page_size"`  // results per page (default 512, at most 2000)

	// RequireImages asks for image_direct_url and skips (and counts) rows without it (default
	// true); false does not load images at all, as in datago.
	RequireImages     *bool `json:"require_images"`
	RequireEmbeddings bool  `json:"require_embeddings"` // asks for coca_embedding

	Tags      dbParam `json:"tags"`        // any of → tags
	TagsNE    dbParam `json:"tags_ne"`     // none of → tags__ne
	TagsAll   dbParam `json:"tags_all"`    // all of → tags__all
	TagsNEAll dbParam `json:"tags_ne_all"` // not all of → tags__ne_all
	TagsEmpty dbParam `json:"tags_empty"`  // "true" / "false" → tags__empty

	HasAttributes   dbParam `json:"has_attributes"`
	LacksAttributes dbParam `json:"lacks_attributes"`
	HasMasks        dbParam `json:"has_masks"` // also asks for the latents field, these masks returned
	LacksMasks      dbParam `json:"lacks_masks"`
	HasLatents      dbParam `json:"has_latents"` // also asks for the latents field, these latents returned
	LacksLatents    dbParam `json:"lacks_latents"`
	// ReturnLatents adds latent types to those returned (return_latents = has_latents, has_masks
	// and these); set, it also asks for the latents field.
	ReturnLatents dbParam `json:"return_latents"`

	// Bounds on the short edge and pixel count; <= 0 (datago's -1) is no bound.
	MinShortEdge  int `json:"min_short_edge"`
	MaxShortEdge  int `json:"max_short_edge"`
	MinPixelCount int `json:"min_pixel_count"`
	MaxPixelCount int `json:"max_pixel_count"`

	// DuplicateState filters on the duplicate state: absent, null or negative is no filter; 0 asks
	// for rows without a duplicate state (sent as "None", as datago does); n > 0 for state n.
	DuplicateState *int `json:"duplicate_state"`

	Attributes dbParam `json:"attributes"` // "name__op:value,..." → attributes

	// RandomSampling reads GET {api_url}/images/random/ (with seed when given: epoch e of a client
	// sends seed+e, so each epoch has another order and a rerun the same ones).
	RandomSampling bool   `json:"random_sampling"`
	Seed           *int64 `json:"seed"`

	// Rank splitting is done by the server (partitions_count / partition), disjoint and complete.
	// Absent, null or -1 (datago's "unset") take the top-level rank / world_size.
	Rank      *int `json:"rank"`
	WorldSize *int `json:"world_size"`

	// The spellings of datago's Go db source, accepted as they were: sources__ne and tags__ne
	// for sources_ne and tags_ne (setting both spellings is an error), and return_duplicate_state
	// (duplicate_state is always asked for).
	SourcesNEGo          dbParam `json:"sources__ne"`
	TagsNEGo             dbParam `json:"tags__ne"`
	ReturnDuplicateState *bool   `json:"return_duplicate_state"`

	// Extensions of datago's own engine server (python/datago/engine), sent only when set:
	// an engine query (JSON text or object) AND-ed with the filters, and a time-travel instant.
	Query dbJSONParam `json:"query"`
	AsOf  *int64      `json:"as_of"`
}

// Defaults and limits of the db source.
const (
	DefaultDBPageSize = 512
	// MaxDBPageSize is the largest page_size of the dataroom image API.
	MaxDBPageSize = 2000
	// dbPagesAhead is how many decoded pages may wait for the emitter; the page reader blocks
	// beyond that, so that listing never runs far ahead of the workers.
	dbPagesAhead = 2
	// dbMaxPageBytes caps one page's JSON (a page of 2000 rows with embeddings is ~30 MB).
	dbMaxPageBytes = 256 << 20
	// dbWarnSkips: the first skips of each reason are logged as warnings, the rest at debug level.
	dbWarnSkips = 10
	// dbLoopWindow is how many of the latest page URLs are remembered to catch a next link that
	// loops back: the memory stays the same however many pages a listing has.
	dbLoopWindow = 1024
)

// Environment variables of the db source (datago's).
const (
	EnvDataroomURL = "DATAROOM_API_URL"
	EnvDataroomKey = "DATAROOM_API_KEY"
)

// dbParam is a filter value: a JSON string, or a list of strings / numbers (joined with ","), a
// number or a boolean (their JSON text). null and "" mean unset. Another JSON value fails as a
// *json.UnmarshalTypeError, which the decoder completes with the key's name (config.DecodeStrict
// reports it as a ValueError naming source_config.<key>).
type dbParam string

// dbParamError is the error of a value dbParam does not take.
func dbParamError(what string) error {
	return &json.UnmarshalTypeError{Value: what, Type: reflect.TypeFor[string]()}
}

func (p *dbParam) UnmarshalJSON(b []byte) error {
	t := bytes.TrimSpace(b)
	switch {
	case string(t) == "null":
		*p = ""
		return nil
	case len(t) > 0 && t[0] == '"':
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return err
		}
		*p = dbParam(strings.TrimSpace(s))
		return nil
	case len(t) > 0 && t[0] == '[':
		var list []any
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.UseNumber()
		if err := dec.Decode(&list); err != nil {
			return err
		}
		parts := make([]string, 0, len(list))
		for _, v := range list {
			switch x := v.(type) {
			case string:
				if x = strings.TrimSpace(x); x != "" {
					parts = append(parts, x)
				}
			case json.Number:
				parts = append(parts, x.String())
			default:
				return dbParamError("list holding " + jsonKind(v))
			}
		}
		*p = dbParam(strings.Join(parts, ","))
		return nil
	case string(t) == "true" || string(t) == "false":
		*p = dbParam(t)
		return nil
	default:
		var n json.Number
		if err := json.Unmarshal(t, &n); err != nil {
			return dbParamError("object")
		}
		*p = dbParam(n.String())
		return nil
	}
}

// jsonKind names the kind of a decoded JSON value, for error messages.
func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// dbTags are a row's tags: a list of strings (null entries dropped), or one comma-separated string.
type dbTags []string

func (tg *dbTags) UnmarshalJSON(b []byte) error {
	t := bytes.TrimSpace(b)
	var list []*string
	if len(t) > 0 && t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return err
		}
		for _, x := range strings.Split(s, ",") {
			list = append(list, &x)
		}
	} else if err := json.Unmarshal(t, &list); err != nil {
		return err
	}
	*tg = nil
	for _, x := range list {
		if x != nil && strings.TrimSpace(*x) != "" {
			*tg = append(*tg, strings.TrimSpace(*x))
		}
	}
	return nil
}

// dbJSONParam is a JSON value sent as text: a string as it is, anything else compacted.
type dbJSONParam string

func (p *dbJSONParam) UnmarshalJSON(b []byte) error {
	t := bytes.TrimSpace(b)
	if string(t) == "null" {
		*p = ""
		return nil
	}
	if len(t) > 0 && t[0] == '"' {
		var s string
		if err := json.Unmarshal(t, &s); err != nil {
			return err
		}
		*p = dbJSONParam(strings.TrimSpace(s))
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, t); err != nil {
		return err
	}
	*p = dbJSONParam(buf.String())
	return nil
}

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
// the run with an OSError naming the URL. A row that cannot be used is skipped, logged and
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
	if _, err := remote.SettingsFrom(c); err != nil {
		return nil, err
	}
	d.http = http
	if key == "" {
		slog.Warn("datago: db source: no API key (" + EnvDataroomKey + " or source_config.api_key): requests go without Authorization")
	}
	return d, nil
}

// merge folds datago's other spellings and "unset" values into the fields the source reads, and
// checks the engine query.
func (dc *DBConfig) merge() error {
	for _, a := range []struct {
		name, goName string
		v, goV       *dbParam
	}{
		{"sources_ne", "sources__ne", &dc.SourcesNE, &dc.SourcesNEGo},
		{"tags_ne", "tags__ne", &dc.TagsNE, &dc.TagsNEGo},
	} {
		if *a.goV == "" {
			continue
		}
		if *a.v != "" {
			return errs.Errorf(errs.Value, "config keys source_config.%s and source_config.%s are the same filter: set one of them",
				a.name, a.goName)
		}
		*a.v, *a.goV = *a.goV, ""
	}
	for _, v := range []**int{&dc.Rank, &dc.WorldSize} {
		if *v != nil && **v == -1 {
			*v = nil
		}
	}
	if q := strings.TrimSpace(string(dc.Query)); q != "" {
		var obj map[string]json.RawMessage
		if err := json.Unmarshal([]byte(q), &obj); err != nil || obj == nil {
			return errs.Errorf(errs.Value, "config key source_config.query must be an engine query: a JSON object, or a string holding one; got %s",
				snippet([]byte(q)))
		}
	}
	return nil
}

// getenv reads the process environment through libc: in libdatago.so, Go's own copy of the
// environment is taken when the library loads, and misses what Python sets later (os.environ
// calls putenv). Go's os.Setenv reaches libc too (cgo), so tests see their t.Setenv.
func getenv(key string) string {
	ck := C.CString(key)
	defer C.free(unsafe.Pointer(ck))
	if v := C.getenv(ck); v != nil {
		return C.GoString(v)
	}
	return ""
}

// params are the query parameters of the first page, as datago sends them: only dataroom's
// documented names, a filter only when it is set; query and as_of (engine extensions) only when
// set.
func (d *DB) params(dc *DBConfig) url.Values {
	q := url.Values{}
	// the latents returned are the ones asked for
	var ret []string
	for _, v := range []dbParam{dc.HasLatents, dc.HasMasks, dc.ReturnLatents} {
		for _, t := range strings.Split(string(v), ",") {
			if t = strings.TrimSpace(t); t != "" && !slices.Contains(ret, t) {
				ret = append(ret, t)
			}
		}
	}
	fields := []string{"id", "source", "attributes", "width", "height", "tags", "duplicate_state"}
	if d.requireImages {
		fields = append(fields, "image_direct_url")
	}
	if len(ret) > 0 {
		fields = append(fields, "latents")
	}
	if dc.RequireEmbeddings {
		fields = append(fields, "coca_embedding")
	}
	q.Set("fields", strings.Join(fields, ","))
	q.Set("page_size", strconv.Itoa(dc.PageSize))
	for _, f := range []struct {
		key string
		v   dbParam
	}{
		{"sources", dc.Sources}, {"sources__ne", dc.SourcesNE},
		{"tags", dc.Tags}, {"tags__ne", dc.TagsNE}, {"tags__all", dc.TagsAll},
		{"tags__ne_all", dc.TagsNEAll}, {"tags__empty", dc.TagsEmpty},
		{"has_attributes", dc.HasAttributes}, {"lacks_attributes", dc.LacksAttributes},
		{"has_masks", dc.HasMasks}, {"lacks_masks", dc.LacksMasks},
		{"has_latents", dc.HasLatents}, {"lacks_latents", dc.LacksLatents},
		{"return_latents", dbParam(strings.Join(ret, ","))},
		{"attributes", dc.Attributes},
	} {
		if f.v != "" {
			q.Set(f.key, string(f.v))
		}
	}
	for _, f := range []struct {
		key string
		v   int
	}{
		{"short_edge__gte", dc.MinShortEdge}, {"short_edge__lte", dc.MaxShortEdge},
		{"pixel_count__gte", dc.MinPixelCount}, {"pixel_count__lte", dc.MaxPixelCount},
	} {
		if f.v > 0 {
			q.Set(f.key, strconv.Itoa(f.v))
		}
	}
	if ds := dc.DuplicateState; ds != nil && *ds >= 0 {
		if *ds == 0 {
			q.Set("duplicate_state", "None")
		} else {
			q.Set("duplicate_state", strconv.Itoa(*ds))
		}
	}
	if d.worldSize > 1 {
		q.Set("partitions_count", strconv.Itoa(d.worldSize))
		q.Set("partition", strconv.Itoa(d.rank))
	}
	if dc.Query != "" {
		q.Set("query", string(dc.Query))
	}
	if dc.AsOf != nil {
		q.Set("as_of", strconv.FormatInt(*dc.AsOf, 10))
	}
	return q
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

// dbLatent is an entry of a row's latents.
type dbLatent struct {
	LatentType    string  `json:"latent_type"`
	FileDirectURL *string `json:"file_direct_url"`
	IsMask        bool    `json:"is_mask"`
}

// dbRow is one result of a page; every field may be null or absent.
type dbRow struct {
	ID             json.RawMessage `json:"id"`
	Source         *string         `json:"source"`
	Attributes     json.RawMessage `json:"attributes"`
	ImageDirectURL *string         `json:"image_direct_url"`
	Latents        []dbLatent      `json:"latents"`
	Tags           dbTags          `json:"tags"`
	CocaEmbedding  *struct {
		Vector []float32 `json:"vector"`
	} `json:"coca_embedding"`
	DuplicateState *json.Number `json:"duplicate_state"`
}

// dbPage is a decoded page, or the error that ends the listing.
type dbPage struct {
	url  *url.URL
	rows []json.RawMessage
	err  error
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
			it := d.item(pg.url, raw)
			if it == nil {
				continue
			}
			if err := Send(ctx, out, it); err != nil {
				return err
			}
		}
	}
	return ctx.Err()
}

// readPages follows the next links from first and sends each page (or the error that ends the
// listing) to pages, until next is null or ctx is cancelled.
func (d *DB) readPages(ctx context.Context, first string, pages chan<- dbPage) {
	send := func(pg dbPage) bool {
		select {
		case pages <- pg:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var recent recentURLs
	next := first
	n := 0
	for next != "" {
		if !recent.add(next) {
			send(dbPage{err: errs.Errorf(errs.OS, "db source: the API's next link loops back to %s", next)})
			return
		}
		u, rows, nextURL, err := d.page(ctx, next)
		if err != nil {
			if ctx.Err() == nil {
				send(dbPage{err: err})
			}
			return
		}
		n++
		if !send(dbPage{url: u, rows: rows}) {
			return
		}
		next = nextURL
	}
	slog.Debug("datago: db source: listing done", "pages", n, "first", first)
}

// recentURLs remembers the latest dbLoopWindow page URLs (a next link back to one of them is a
// loop), in fixed memory.
type recentURLs struct {
	set  map[string]struct{}
	ring []string
	i    int
}

// add remembers u; false when u is remembered already.
func (r *recentURLs) add(u string) bool {
	if _, ok := r.set[u]; ok {
		return false
	}
	if r.set == nil {
		r.set = make(map[string]struct{})
	}
	if len(r.ring) < dbLoopWindow {
		r.ring = append(r.ring, u)
	} else {
		delete(r.set, r.ring[r.i])
		r.ring[r.i] = u
		r.i = (r.i + 1) % dbLoopWindow
	}
	r.set[u] = struct{}{}
	return true
}

// dbAnswer is a page of the image API.
type dbAnswer struct {
	Next    *string         `json:"next"`
	Results json.RawMessage `json:"results"`
}

// page GETs one page and decodes it. The HTTP layer retries connection errors and retryable
// statuses; a body that breaks and cannot be resumed is fetched again from the start (pages are
// idempotent), up to the layer's retry count. next is "" on the last page.
func (d *DB) page(ctx context.Context, pageURL string) (u *url.URL, rows []json.RawMessage, next string, err error) {
	u, err = url.Parse(pageURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: invalid page URL %q", pageURL)
	}
	opts := []remote.Option{remote.WithHeader("Accept", "application/json")}
	if d.key != "" {
		if strings.EqualFold(u.Host, d.apiHost) {
			opts = append(opts, remote.WithHeader("Authorization", "Token "+d.key))
		} else {
			slog.Warn("datago: db source: a next link leaves the API's host; the API key is not sent there",
				"api_host", d.apiHost, "url", pageURL)
		}
	}
	s := d.http.Settings()
	var body []byte
	for attempt := 0; ; attempt++ {
		var broke bool
		body, broke, err = d.get(ctx, pageURL, opts)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, nil, "", ctx.Err()
		}
		var se *remote.StatusError
		if errors.As(err, &se) {
			return nil, nil, "", errs.Errorf(errs.OS, "db source: %v%s", se, statusHint(se.Code))
		}
		if !broke || attempt >= s.MaxRetries {
			var ce *errs.Error
			if errors.As(err, &ce) && ce.K == errs.OS && strings.HasPrefix(ce.Msg, "db source:") {
				return nil, nil, "", ce
			}
			return nil, nil, "", errs.Errorf(errs.OS, "db source: %v", err)
		}
		wait := d.http.Backoff(attempt)
		slog.Debug("datago: db source: page body broke, fetching it again", "url", pageURL, "wait", wait, "error", err)
		if err := remote.Sleep(ctx, wait); err != nil {
			return nil, nil, "", err
		}
	}
	var ans dbAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: the answer is not valid JSON: %v (%s)", pageURL, err, snippet(body))
	}
	if len(ans.Results) == 0 {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: the answer has no \"results\" (is %s the dataroom API root?): %s",
			pageURL, strings.TrimSuffix(strings.TrimSuffix(d.images, "random/"), "images/"), snippet(body))
	}
	if err := json.Unmarshal(ans.Results, &rows); err != nil {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: \"results\" is not a list: %v", pageURL, err)
	}
	if ans.Next != nil && strings.TrimSpace(*ans.Next) != "" {
		nu, err := u.Parse(strings.TrimSpace(*ans.Next)) // a relative link is resolved against the page
		if err != nil || (nu.Scheme != "http" && nu.Scheme != "https") {
			return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: invalid next link %q", pageURL, *ans.Next)
		}
		next = nu.String()
	}
	return u, rows, next, nil
}

// get reads a whole page body (capped at dbMaxPageBytes). broke reports a body that failed
// while being read (after the HTTP layer's resume attempts): the page may be asked for again.
func (d *DB) get(ctx context.Context, pageURL string, opts []remote.Option) (body []byte, broke bool, err error) {
	st, err := d.http.Open(ctx, pageURL, opts...)
	if err != nil {
		return nil, false, err
	}
	defer st.Close()
	if st.Size() > dbMaxPageBytes {
		return nil, false, errs.Errorf(errs.OS, "db source: GET %s: a page of %d bytes is larger than %d", pageURL, st.Size(), dbMaxPageBytes)
	}
	body, err = io.ReadAll(io.LimitReader(st, dbMaxPageBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		var re *remote.Error
		if errors.As(err, &re) {
			return nil, true, re // its message names the URL
		}
		return nil, true, fmt.Errorf("GET %s: reading the answer: %w", pageURL, err)
	}
	if len(body) > dbMaxPageBytes {
		return nil, false, errs.Errorf(errs.OS, "db source: GET %s: a page is larger than %d bytes", pageURL, dbMaxPageBytes)
	}
	return body, false, nil
}

func statusHint(code int) string {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return " (check " + EnvDataroomKey + " or source_config.api_key)"
	case http.StatusNotFound:
		return " (check " + EnvDataroomURL + " or source_config.api_url: the API root, like http://host:port/api/)"
	case http.StatusBadRequest:
		return " (the server refused a parameter: check the filters of source_config)"
	}
	return ""
}

// snippet is the start of a body, for error messages.
func snippet(b []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "\uFFFD")
	if len(b) > n {
		s += "..."
	}
	return strconv.Quote(s)
}

// item maps one row to an Item, or skips it (nil).
func (d *DB) item(page *url.URL, raw json.RawMessage) *Item {
	var r dbRow
	if err := json.Unmarshal(raw, &r); err != nil {
		d.skip(errs.ReasonBadRecord, rowID(raw), page.String(), err.Error())
		return nil
	}
	id := idText(r.ID)
	if id == "" {
		d.skip(errs.ReasonBadRecord, "", page.String(), "no id")
		return nil
	}
	it := &Item{ID: id}
	if r.Source != nil {
		it.Source = *r.Source
	}
	if a := bytes.TrimSpace(r.Attributes); len(a) > 0 && string(a) != "null" {
		if a[0] == '{' {
			var buf bytes.Buffer
			if err := json.Compact(&buf, a); err == nil {
				it.AttributesJSON = buf.String()
			}
		} else {
			slog.Debug("datago: db source: attributes is not a JSON object, ignored", "id", id)
		}
	}
	if len(r.Tags) > 0 {
		it.Tags = r.Tags
	}
	if r.CocaEmbedding != nil && len(r.CocaEmbedding.Vector) > 0 {
		it.Embedding = r.CocaEmbedding.Vector
	}
	if r.DuplicateState != nil {
		it.DuplicateState = numberToInt(*r.DuplicateState)
	}
	resolve := func(ref string) (string, bool) {
		u, err := page.Parse(strings.TrimSpace(ref))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", false
		}
		return u.String(), true
	}
	if d.requireImages {
		if r.ImageDirectURL == nil || strings.TrimSpace(*r.ImageDirectURL) == "" {
			d.skip(errs.ReasonNoImage, id, page.String(), "no image_direct_url")
			return nil
		}
		u, ok := resolve(*r.ImageDirectURL)
		if !ok {
			d.skip(errs.ReasonBadRecord, id, page.String(), "invalid image_direct_url "+strconv.Quote(*r.ImageDirectURL))
			return nil
		}
		it.Image = &Payload{URL: u}
	}
	for _, l := range r.Latents {
		if l.FileDirectURL == nil || strings.TrimSpace(*l.FileDirectURL) == "" {
			d.skip(errs.ReasonBadRecord, id, page.String(), "latent "+strconv.Quote(l.LatentType)+" has no file_direct_url")
			return nil
		}
		u, ok := resolve(*l.FileDirectURL)
		if !ok {
			d.skip(errs.ReasonBadRecord, id, page.String(), "latent "+strconv.Quote(l.LatentType)+": invalid file_direct_url "+strconv.Quote(*l.FileDirectURL))
			return nil
		}
		p := &Payload{Name: l.LatentType, URL: u}
		switch {
		case strings.Contains(l.LatentType, "image") && !strings.Contains(l.LatentType, "latent_"):
			putPayload(&it.AdditionalImages, p)
		case l.IsMask:
			putPayload(&it.Masks, p)
		default:
			putPayload(&it.Latents, p)
		}
	}
	return it
}

// idText is a row id: a JSON string, or a number's text; "" when null or absent.
func idText(raw json.RawMessage) string {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return ""
	}
	if t[0] == '"' {
		var s string
		if json.Unmarshal(t, &s) == nil {
			return s
		}
		return ""
	}
	var n json.Number
	if json.Unmarshal(t, &n) == nil {
		return n.String()
	}
	return ""
}

// rowID is the id of a row that does not decode, for the log.
func rowID(raw json.RawMessage) string {
	var r struct {
		ID json.RawMessage `json:"id"`
	}
	if json.Unmarshal(raw, &r) != nil {
		return ""
	}
	return idText(r.ID)
}

func numberToInt(n json.Number) int {
	if i, err := n.Int64(); err == nil {
		return int(i)
	}
	if f, err := n.Float64(); err == nil {
		return int(f)
	}
	return 0
}
