// Package config parses datago's JSON client config. Keys datago accepts are accepted unchanged;
// any other key is an error that names it.
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"runtime"
	"strings"

	"github.com/datago-dev/datago/go/errs"
)

// Image is datago's image_config.
type Image struct {
	CropAndResize     bool    `json:"crop_and_resize"`
	DefaultImageSize  int     `json:"default_image_size"`
	DownsamplingRatio int     `json:"downsampling_ratio"`
	MinAspectRatio    float64 `json:"min_aspect_ratio"`
	MaxAspectRatio    float64 `json:"max_aspect_ratio"`
	PreEncodeImages   bool    `json:"pre_encode_images"`
	ImageToRGB8       bool    `json:"image_to_rgb8"`
	EncodeFormat      string  `json:"encode_format"`
	JPEGQuality       int     `json:"jpeg_quality"`
	// datago extensions
	FlattenAlpha bool  `json:"flatten_alpha"` // flatten alpha onto white (always done with image_to_rgb8)
	MaxPixels    int64 `json:"max_pixels"`    // pixel cap per image (width*height), decompression bombs are skipped
	// FailOn is the decode policy, like libvips' fail_on: "warning" (default: any warning about
	// the image data skips the sample as corrupt_data), "error" (only errors: truncation, an
	// undecodable stream) or "none" (whatever libvips still decodes is kept).
	FailOn string `json:"fail_on"`
	// PILZeroCopy stores raw RGB as RGBX (4 bytes per pixel) so that sample.image maps the C buffer
	// without a copy (default true); false gives packed RGB (3 bytes per pixel).
	PILZeroCopy *bool `json:"pil_zero_copy"`
}

// Config is the whole client config.
type Config struct {
	SourceType   string          `json:"source_type"`
	SourceConfig json.RawMessage `json:"source_config"`
	ImageConfig  *Image          `json:"image_config"`
	Limit        int             `json:"limit"`
	Rank         int             `json:"rank"`
	WorldSize    int             `json:"world_size"`
	// SamplesBufferSize bounds the queue of finished samples waiting for the consumer.
	SamplesBufferSize int `json:"samples_buffer_size"`
	// PrefetchBufferSize bounds the queue of fetched (encoded) samples waiting for decode.
	PrefetchBufferSize int `json:"prefetch_buffer_size"`
	// NumThreads is the number of decode/transform workers (default: usable cores).
	NumThreads int `json:"num_threads"`
	// MaxConnections is the number of fetch workers (default: 2 x NumThreads).
	MaxConnections int `json:"max_connections"`
	// Accepted for compatibility with datago, unused.
	Concurrency int `json:"concurrency"`
	// MaxFileBytes caps the bytes read per payload (default 256 MiB).
	MaxFileBytes int64 `json:"max_file_bytes"`

	// HTTP settings of remote sources and URL payloads (see go/remote); 0 or absent takes the
	// default. They are validated by the sources that read over HTTP.
	HTTPConnectTimeout   float64  `json:"http_connect_timeout"`     // seconds to connect (default 10)
	HTTPHeaderTimeout    float64  `json:"http_header_timeout"`      // seconds to the response headers (default 15)
	HTTPReadTimeout      float64  `json:"http_read_timeout"`        // seconds a body read may stall (default 15)
	HTTPMinThroughput    *float64 `json:"http_min_throughput"`      // bytes/s a body must average per http_read_timeout of waiting (default 1024; 0: no minimum)
	HTTPMaxRetries       *int     `json:"http_max_retries"`         // retries per request (default 5; 0: none)
	HTTPRetryBackoff     float64  `json:"http_retry_backoff"`       // first backoff in seconds, doubled per retry (default 0.5)
	HTTPMaxConnsPerHost  int      `json:"http_max_conns_per_host"`  // connections per host (default 64)
	HTTPMaxBytesInFlight int64    `json:"http_max_bytes_in_flight"` // bytes of whole-file GETs in flight (default 512 MiB)
	// Batches, order and resume (see batch.go); absent: today's per-sample stream.
	Batch

	// S3 is the "s3" object (endpoint, region, credentials, addressing) for s3:// URLs; decoded
	// strictly by go/remote (remote.S3Config).
	S3 json.RawMessage `json:"s3"`
}

// DecodeStrict unmarshals data into v, rejecting unknown keys with a ValueError naming the key
// (prefixed with where, e.g. "source_config.").
func DecodeStrict(data []byte, where string, v any) error {
	if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		msg := err.Error()
		if k, ok := strings.CutPrefix(msg, "json: unknown field "); ok {
			return errs.Errorf(errs.Value, "unknown config key %s%s", where, strings.Trim(k, `"`))
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return errs.Errorf(errs.Value, "config key %s%s: expected %s, got JSON %s", where, te.Field, te.Type, te.Value)
		}
		return errs.Errorf(errs.Value, "invalid config %s: %v", strings.TrimSuffix(where, "."), err)
	}
	return nil
}

// Parse reads and validates a config. Source-specific keys are validated by the source.
func Parse(data []byte) (*Config, error) {
	c := &Config{}
	if err := DecodeStrict(data, "", c); err != nil {
		return nil, err
	}
	if err := c.applyDatagoAliases(); err != nil {
		return nil, err
	}
	if c.Limit < 0 {
		return nil, errs.Errorf(errs.Value, "config key limit must be >= 0 (0: no limit), got %d", c.Limit)
	}
	for _, kv := range []struct {
		name string
		v    *int
		def  int
	}{
		{"samples_buffer_size", &c.SamplesBufferSize, 64},
		{"prefetch_buffer_size", &c.PrefetchBufferSize, 64},
		{"num_threads", &c.NumThreads, runtime.GOMAXPROCS(0)},
		{"max_connections", &c.MaxConnections, 0},
	} {
		if *kv.v < 0 {
			return nil, errs.Errorf(errs.Value, "config key %s must be >= 0, got %d", kv.name, *kv.v)
		}
		if *kv.v == 0 {
			*kv.v = kv.def
		}
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = 2 * c.NumThreads
	}
	if c.MaxFileBytes < 0 {
		return nil, errs.Errorf(errs.Value, "config key max_file_bytes must be > 0 (0: the default, 256 MiB), got %d", c.MaxFileBytes)
	}
	if c.MaxFileBytes == 0 {
		c.MaxFileBytes = 256 << 20
	}
	if c.WorldSize == 0 {
		c.WorldSize = 1
	}
	if err := CheckRank("", c.Rank, c.WorldSize); err != nil {
		return nil, err
	}
	if c.ImageConfig == nil {
		c.ImageConfig = &Image{}
	}
	if err := c.ImageConfig.validate(); err != nil {
		return nil, err
	}
	if err := c.validateBatch(); err != nil {
		return nil, err
	}
	return c, nil
}

// CheckRank validates a rank / world_size pair (where prefixes the key names).
func CheckRank(where string, rank, worldSize int) error {
	if worldSize < 1 {
		return errs.Errorf(errs.Value, "config key %sworld_size must be >= 1, got %d", where, worldSize)
	}
	if rank < 0 || rank >= worldSize {
		return errs.Errorf(errs.Value, "config key %srank must be in [0, world_size=%d), got %d", where, worldSize, rank)
	}
	return nil
}

func (im *Image) validate() error {
	if im.JPEGQuality == 0 {
		im.JPEGQuality = 92
	}
	if im.JPEGQuality < 1 || im.JPEGQuality > 100 {
		return errs.Errorf(errs.Value, "config key image_config.jpeg_quality must be in [1, 100], got %d", im.JPEGQuality)
	}
	switch strings.ToLower(im.EncodeFormat) {
	case "", "png":
		im.EncodeFormat = "png"
	case "jpeg", "jpg":
		im.EncodeFormat = "jpeg"
	default:
		return errs.Errorf(errs.Value, "config key image_config.encode_format must be png or jpeg, got %q", im.EncodeFormat)
	}
	switch im.FailOn {
	case "":
		im.FailOn = "warning"
	case "warning", "error", "none":
	default:
		return errs.Errorf(errs.Value, "config key image_config.fail_on must be warning, error or none, got %q", im.FailOn)
	}
	if im.MaxPixels < 0 {
		return errs.Errorf(errs.Value, "config key image_config.max_pixels must be >= 0, got %d", im.MaxPixels)
	}
	if im.MaxPixels == 0 {
		im.MaxPixels = 100_000_000 // 100 MPix, like Pillow's bomb limit x ~1.1
	}
	if im.CropAndResize {
		if im.DefaultImageSize == 0 {
			im.DefaultImageSize = 512
		}
		if im.DownsamplingRatio == 0 {
			im.DownsamplingRatio = 16
		}
		if im.MinAspectRatio == 0 {
			im.MinAspectRatio = 0.5
		}
		if im.MaxAspectRatio == 0 {
			im.MaxAspectRatio = 2.0
		}
	}
	return nil
}

// sourceTypeAliases are the source_type spellings of Photoroom's datago editions (compared
// lower-case) and the source each one means.
var sourceTypeAliases = map[string]string{
	"file": "file", "filesystem": "file", "localstorage": "file", "local": "file",
	"db": "db", "webdataset": "webdataset", "wds": "webdataset",
}

// applyDatagoAliases accepts datago's spellings: a config without source_type means the db
// source (datago's default), source_type is matched case-insensitively with the Go edition's
// names ("DB", "filesystem", "LocalStorage"), and source_config.random_order is an alias of
// source_config.random_sampling (both given: they must agree).
func (c *Config) applyDatagoAliases() error {
	if strings.TrimSpace(c.SourceType) == "" {
		c.SourceType = "db"
	}
	if v, ok := sourceTypeAliases[strings.ToLower(strings.TrimSpace(c.SourceType))]; ok {
		c.SourceType = v
	}
	raw, err := renameSourceKey(c.SourceConfig, "random_order", "random_sampling")
	if err != nil {
		return err
	}
	c.SourceConfig = raw
	return nil
}

// renameSourceKey renames the key alias of the source_config object to name (the object is
// re-encoded only when alias is present). Both present with different values is a ValueError.
func renameSourceKey(raw json.RawMessage, alias, name string) (json.RawMessage, error) {
	t := bytes.TrimSpace(raw)
	if len(t) == 0 || t[0] != '{' || !bytes.Contains(t, []byte(alias)) {
		return raw, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(t, &obj); err != nil {
		return nil, errs.Errorf(errs.Value, "invalid config source_config: %v", err)
	}
	v, ok := obj[alias]
	if !ok {
		return raw, nil
	}
	if prev, both := obj[name]; both && !bytes.Equal(bytes.TrimSpace(prev), bytes.TrimSpace(v)) {
		return nil, errs.Errorf(errs.Value, "config keys source_config.%s and source_config.%s (its alias) disagree: %s, %s",
			name, alias, bytes.TrimSpace(prev), bytes.TrimSpace(v))
	}
	delete(obj, alias)
	obj[name] = v
	out, err := json.Marshal(obj)
	if err != nil {
		return nil, errs.Errorf(errs.Value, "invalid config source_config: %v", err)
	}
	return out, nil
}
