package config

import (
	"encoding/json"

	"github.com/datago-dev/datago/go/errs"
	"strings"
	"testing"
)

func TestParseErrorsNameTheKey(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"source_type": "file", "bogus_key": 1}`:                                                       "bogus_key",
		`{"source_type": "file", "image_config": {"crop_and_resize": true, "sizee": 1}}`:                "sizee",
		`{"source_type": "file", "limit": -1}`:                                                          "limit",
		`{"source_type": "file", "max_file_bytes": -1}`:                                                 "max_file_bytes",
		`{"source_type": "file", "rank": 3, "world_size": 2}`:                                           "rank",
		`{"source_type": "file", "image_config": {"encode_format": "gif"}}`:                             "encode_format",
		`{"source_type": "file", "image_config": {"jpeg_quality": 101}}`:                                "jpeg_quality",
		`{"source_type": "file", "image_config": {"fail_on": "warn"}}`:                                  "image_config.fail_on",
		`{"source_type": "file", "image_config": {"fail_on": 1}}`:                                       "fail_on",
		`{"source_type": "ftp"}`:                                                                        "",
		`{"source_type": "file", "samples_buffer_size": "ten"}`:                                         "samples_buffer_size",
		`{"source_type": "file", "image_config": {"crop_and_resize": true, "default_image_size": 500}}`: "",
	} {
		c, err := Parse([]byte(cfg))
		if want == "" { // bucket errors are reported by the pipeline, not the parser
			if err != nil {
				t.Errorf("%s: %v", cfg, err)
			}
			_ = c
			continue
		}
		if errs.KindOf(err) != errs.Value || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v, want a ValueError naming %q", cfg, err, want)
		}
	}
}

func TestDatagoKeysAccepted(t *testing.T) {
	cfg := `{"source_type": "file", "source_config": {"root_path": "/x"}, "limit": 10, "rank": 0,
	"world_size": 1, "num_threads": 2, "max_connections": 4, "samples_buffer_size": 8,
	"prefetch_buffer_size": 8, "concurrency": 2,
	"image_config": {"crop_and_resize": true, "default_image_size": 512, "downsampling_ratio": 16,
	"min_aspect_ratio": 0.5, "max_aspect_ratio": 2.0, "pre_encode_images": false,
	"image_to_rgb8": false, "encode_format": "jpeg", "jpeg_quality": 92}}`
	c, err := Parse([]byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	if c.Limit != 10 || c.NumThreads != 2 || c.ImageConfig.DefaultImageSize != 512 || c.ImageConfig.EncodeFormat != "jpeg" {
		t.Errorf("parsed %+v", c)
	}
}

func TestDatagoAliases(t *testing.T) {
	// no source_type: datago's default, the db source
	c, err := Parse([]byte(`{"source_config": {"sources": "photos"}, "limit": 1}`))
	if err != nil || c.SourceType != "db" {
		t.Fatalf("no source_type: %v, %+v", err, c)
	}
	for in, want := range map[string]string{"DB": "db", "filesystem": "file", "LocalStorage": "file", "file": "file", "WebDataset": "webdataset"} {
		c, err := Parse([]byte(`{"source_type": "` + in + `"}`))
		if err != nil || c.SourceType != want {
			t.Errorf("source_type %q: %v, got %q, want %q", in, err, c.SourceType, want)
		}
	}
	// random_order is random_sampling
	c, err = Parse([]byte(`{"source_type": "file", "source_config": {"root_path": "/x", "random_order": true, "seed": 3}}`))
	if err != nil {
		t.Fatal(err)
	}
	var sc map[string]any
	if err := json.Unmarshal(c.SourceConfig, &sc); err != nil {
		t.Fatal(err)
	}
	if _, alias := sc["random_order"]; alias || sc["random_sampling"] != true || sc["root_path"] != "/x" || sc["seed"] != 3.0 {
		t.Errorf("random_order not renamed: %v", sc)
	}
	// both spellings agreeing are fine; disagreeing is a ValueError naming both
	if _, err := Parse([]byte(`{"source_type": "file", "source_config": {"random_order": true, "random_sampling": true}}`)); err != nil {
		t.Error(err)
	}
	_, err = Parse([]byte(`{"source_type": "file", "source_config": {"random_order": true, "random_sampling": false}}`))
	if errs.KindOf(err) != errs.Value || !strings.Contains(err.Error(), "random_order") {
		t.Errorf("disagreeing aliases: %v", err)
	}
	// a key that merely contains the alias's text is left alone
	c, err = Parse([]byte(`{"source_type": "file", "source_config": {"root_path": "/random_order"}}`))
	if err != nil || !strings.Contains(string(c.SourceConfig), `"/random_order"`) {
		t.Errorf("%v %s", err, c.SourceConfig)
	}
}
