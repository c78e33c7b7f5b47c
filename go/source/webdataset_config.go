package source

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/datago-dev/datago/go/errs"
)

// WebDatasetConfig is source_config for source_type "webdataset".
type WebDatasetConfig struct {
	// URL is a local path or an http(s) URL of a shard, a brace pattern of them
	// ("shards/train-{000000..000127}.tar", "{a,b}"), or a JSON list of those.
	URL json.RawMessage `json:"url"`
	// ReferenceImageType names the main image's extension, or several in order of preference
	// (webdataset's "jpg;png"; default DefaultReferenceImageType): the first present is the image.
	ReferenceImageType  *string `json:"reference_image_type"`
	RandomSampling      bool    `json:"random_sampling"`      // shuffle shards, and samples in a buffer
	ConcurrentDownloads int     `json:"concurrent_downloads"` // shards read at a time (default 4)
	AuthToken           string  `json:"auth_token"`           // sent as "Authorization: Bearer ..."
	Rank                *int    `json:"rank"`
	WorldSize           *int    `json:"world_size"`
	Seed                *int64  `json:"seed"`                // with random_sampling: the same seed, the same order
	ShuffleBufferSize   int     `json:"shuffle_buffer_size"` // samples in the shuffle buffer (default 256)
	MaskSuffix          string  `json:"mask_suffix"`         // extension of masks, besides "mask.<image ext>"
}

// Defaults of the WebDataset source.
const (
	DefaultConcurrentDownloads = 4
	DefaultShuffleBufferSize   = 256
	shardReadAhead             = 8 // samples read ahead per open shard
	maxShards                  = 1_000_000
)

// urlList reads source_config.url: a string or a list of strings.
func urlList(raw json.RawMessage) ([]string, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || string(t) == "null" {
		return nil, errs.Errorf(errs.Value, "config key source_config.url is required (a shard path or URL, a brace pattern, or a list of them)")
	}
	var one string
	if err := json.Unmarshal(t, &one); err == nil {
		if one == "" {
			return nil, errs.Errorf(errs.Value, "config key source_config.url is empty")
		}
		return []string{one}, nil
	}
	var list []string
	if err := json.Unmarshal(t, &list); err != nil {
		return nil, errs.Errorf(errs.Value, "config key source_config.url must be a string or a list of strings, got %s", t)
	}
	if len(list) == 0 {
		return nil, errs.Errorf(errs.Value, "config key source_config.url is an empty list")
	}
	for i, s := range list {
		if s == "" {
			return nil, errs.Errorf(errs.Value, "config key source_config.url[%d] is empty", i)
		}
	}
	return list, nil
}

func checkLocalShard(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errs.Errorf(errs.NotFound, "source_config.url: shard %q does not exist", p)
		}
		return errs.Errorf(errs.OS, "source_config.url: shard %q: %v", p, err)
	}
	if st.IsDir() {
		return errs.Errorf(errs.Value, "source_config.url: shard %q is a folder, not a tar file", p)
	}
	return nil
}

// DefaultReferenceImageType: a sample's image is its first present entry of these extensions.
const DefaultReferenceImageType = "jpg;jpeg;png;webp"

// referenceTypes reads reference_image_type: extensions separated by ';' (webdataset's syntax)
// or ',', in order of preference, normalised (lower case, no leading dot); absent or empty gives
// DefaultReferenceImageType.
func referenceTypes(v *string) []string {
	spec := DefaultReferenceImageType
	if v != nil && strings.TrimSpace(*v) != "" {
		spec = *v
	}
	var out []string
	for _, part := range strings.FieldsFunc(spec, func(r rune) bool { return r == ';' || r == ',' }) {
		if e := normExt(part); e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}

func normExt(s string) string { return strings.ToLower(strings.TrimPrefix(strings.TrimSpace(s), ".")) }

// ExpandBraces expands brace patterns: "{000..127}" is a zero-padded numeric range (padded to the
// width of its first bound when that has a leading zero, or when both bounds have the same width),
// "{a,b,c}" a list; several groups multiply. Nested braces are refused.
func ExpandBraces(pattern string) ([]string, error) {
	open := strings.IndexByte(pattern, '{')
	if open < 0 {
		if strings.IndexByte(pattern, '}') >= 0 {
			return nil, fmt.Errorf("unbalanced '}' in %q", pattern)
		}
		return []string{pattern}, nil
	}
	end := strings.IndexByte(pattern[open:], '}')
	if end < 0 {
		return nil, fmt.Errorf("unbalanced '{' in %q", pattern)
	}
	end += open
	body := pattern[open+1 : end]
	if strings.IndexByte(body, '{') >= 0 {
		return nil, fmt.Errorf("nested braces in %q", pattern)
	}
	prefix, suffix := pattern[:open], pattern[end+1:]
	if strings.IndexByte(prefix, '}') >= 0 {
		return nil, fmt.Errorf("unbalanced '}' in %q", pattern)
	}
	var alts []string
	if lo, hi, ok := strings.Cut(body, ".."); ok && !strings.Contains(body, ",") {
		a, err1 := strconv.ParseInt(lo, 10, 64)
		b, err2 := strconv.ParseInt(hi, 10, 64)
		if err1 != nil || err2 != nil || a < 0 || b < 0 {
			return nil, fmt.Errorf("invalid range {%s} in %q (want {FIRST..LAST} with non-negative integers)", body, pattern)
		}
		if b < a {
			return nil, fmt.Errorf("empty range {%s} in %q (LAST < FIRST)", body, pattern)
		}
		if b-a >= maxShards {
			return nil, fmt.Errorf("range {%s} in %q has more than %d values", body, pattern, maxShards)
		}
		width := 0
		if (len(lo) > 1 && lo[0] == '0') || len(lo) == len(hi) {
			width = len(lo)
		}
		for i := a; i <= b; i++ {
			alts = append(alts, fmt.Sprintf("%0*d", width, i))
		}
	} else {
		alts = strings.Split(body, ",")
	}
	rest, err := ExpandBraces(suffix)
	if err != nil {
		return nil, err
	}
	if len(alts)*len(rest) > maxShards {
		return nil, fmt.Errorf("%q expands to more than %d names", pattern, maxShards)
	}
	out := make([]string, 0, len(alts)*len(rest))
	for _, a := range alts {
		for _, r := range rest {
			out = append(out, prefix+a+r)
		}
	}
	return out, nil
}

// SplitKey splits a tar entry name into its WebDataset key (the path up to the first dot of the
// base name, directory included) and extension (the rest, without the dot). Names without an
// extension and hidden files ("._x.jpg") give "", "".
func SplitKey(name string) (key, ext string) {
	name = strings.TrimPrefix(name, "./")
	dir, base := path.Split(name)
	i := strings.IndexByte(base, '.')
	if i <= 0 || i == len(base)-1 {
		return "", ""
	}
	return dir + base[:i], base[i+1:]
}
