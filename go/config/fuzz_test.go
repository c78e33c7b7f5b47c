package config

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/datago-dev/datago/go/errs"
)

// FuzzConfigParse: a client config (JSON from the user). Property: Parse refuses it with a
// ValueError, or accepts it with every default filled in and every value in range, and the
// accepted config re-serializes stably (serialize, parse, serialize gives the same bytes, and
// the second parse accepts it). Seeds: testdata/fuzz/FuzzConfigParse/.
func FuzzConfigParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			if errs.KindOf(err) != errs.Value || err.Error() == "" {
				t.Fatalf("refused with %v (%s), want a ValueError", err, errs.KindOf(err))
			}
			if c != nil {
				t.Fatal("a config returned with an error")
			}
			return
		}
		checkParsed(t, c)
		b1, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("an accepted config does not serialize: %v", err)
		}
		c2, err := Parse(b1)
		if err != nil {
			t.Fatalf("the serialized config %s is refused: %v", b1, err)
		}
		checkParsed(t, c2)
		b2, err := json.Marshal(c2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b1, b2) {
			t.Fatalf("serialization is not stable:\n%s\n%s", b1, b2)
		}
	})
}

// checkParsed: the invariants of an accepted config.
func checkParsed(t *testing.T, c *Config) {
	t.Helper()
	im := c.ImageConfig
	switch {
	case c.SourceType == "":
		t.Fatal("no source_type")
	case c.WorldSize < 1 || c.Rank < 0 || c.Rank >= c.WorldSize:
		t.Fatalf("rank %d of world_size %d", c.Rank, c.WorldSize)
	case c.Limit < 0 || c.NumThreads < 1 || c.MaxConnections < 1 || c.SamplesBufferSize < 1 || c.PrefetchBufferSize < 1:
		t.Fatalf("limit %d, num_threads %d, max_connections %d, buffers %d/%d",
			c.Limit, c.NumThreads, c.MaxConnections, c.SamplesBufferSize, c.PrefetchBufferSize)
	case c.MaxFileBytes < 1:
		t.Fatalf("max_file_bytes %d", c.MaxFileBytes)
	case im == nil:
		t.Fatal("no image_config")
	case im.JPEGQuality < 1 || im.JPEGQuality > 100 || (im.EncodeFormat != "png" && im.EncodeFormat != "jpeg") || im.MaxPixels < 1:
		t.Fatalf("image_config %+v", *im)
	case c.ImageLayout != "HWC" && c.ImageLayout != "CHW":
		t.Fatalf("image_layout %q", c.ImageLayout)
	case c.BatchMode != "RGB" && c.BatchMode != "L" && c.BatchMode != "RGBA":
		t.Fatalf("batch_mode %q", c.BatchMode)
	case c.BatchSize < 0 || c.Epoch < 0 || c.MaxHeldSamples < 0:
		t.Fatalf("batch_size %d, epoch %d, max_held_samples %d", c.BatchSize, c.Epoch, c.MaxHeldSamples)
	case c.BatchSize > 0 && (!im.CropAndResize || im.PreEncodeImages || c.MaxHeldSamples < c.BatchSize):
		t.Fatalf("batch_size %d with crop_and_resize %v, pre_encode_images %v, max_held_samples %d",
			c.BatchSize, im.CropAndResize, im.PreEncodeImages, c.MaxHeldSamples)
	}
}
