package config

import (
	"github.com/datago-dev/datago/go/errs"
	"strings"
	"testing"
)

func TestParseErrorsNameTheKey(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"source_type": "file", "bogus_key": 1}`:                                        "bogus_key",
		`{"source_type": "file", "image_config": {"crop_and_resize": true, "sizee": 1}}`: "sizee",
		`{"source_type": "file", "limit": -1}`:                                           "limit",
		`{"source_type": "file", "max_file_bytes": -1}`:                                  "max_file_bytes",
		`{"source_type": "file", "rank": 3, "world_size": 2}`:                            "rank",
		`{"source_type": "file", "image_config": {"encode_format": "gif"}}`:              "encode_format",
		`{"source_type": "file", "image_config": {"jpeg_quality": 101}}`:                 "jpeg_quality",
		`{"limit": 1}`: "source_type",
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
