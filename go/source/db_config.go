package source

/*
#include <stdlib.h>
*/
import "C"

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/datago-dev/datago/go/errs"
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

	// LocalRoots maps file URL prefixes (like "http://127.0.0.1:8000/files/3/") to folders on
	// this machine (absolute paths): an image or latent URL under a prefix is read from the folder
	// (the path after the prefix, the query dropped), not requested; a path that would leave the
	// folder is refused (the row is skipped). The engine sets it for its in-process server.
	LocalRoots map[string]string `json:"local_roots"`
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
