package config

import (
	"bytes"
	"encoding/json"
	"github.com/datago-dev/datago/go/errs"
	"strings"
)

// Batch holds the keys of batched, ordered and resumable delivery (our extensions, top level).
type Batch struct {
	// BatchSize > 0 groups samples of one bucket into batches (needs image_config.crop_and_resize).
	BatchSize int `json:"batch_size"`
	// ImageLayout of a batch's image arrays: "HWC" (default) or "CHW".
	ImageLayout string `json:"image_layout"`
	// BatchMode is the colour mode of a batch's images: "RGB" (default), "L" or "RGBA".
	BatchMode string `json:"batch_mode"`
	// DropLast drops the partial batches left at the end of an epoch.
	DropLast bool `json:"drop_last"`
	// MaxHeldSamples bounds the samples held in partial batches (default 16 x batch_size); over it
	// the partial batch with the oldest sample is delivered as it is.
	MaxHeldSamples int `json:"max_held_samples"`
	// Seed fixes the delivery order (also accepted as source_config.seed).
	Seed *int64 `json:"seed"`
	// Epoch is the epoch number of the first run (each later start is the next epoch).
	Epoch int64 `json:"epoch"`
}

// Channels is the channel count of BatchMode.
func (b *Batch) Channels() int {
	switch b.BatchMode {
	case "L":
		return 1
	case "RGBA":
		return 4
	}
	return 3
}

// CHW reports the planar layout.
func (b *Batch) CHW() bool { return b.ImageLayout == "CHW" }

// SourceSeed returns source_config.seed when the source config sets one.
func (c *Config) SourceSeed() *int64 {
	var s struct {
		Seed *int64 `json:"seed"`
	}
	if len(bytes.TrimSpace(c.SourceConfig)) == 0 {
		return nil
	}
	if json.Unmarshal(c.SourceConfig, &s) != nil {
		return nil
	}
	return s.Seed
}

// EffectiveSeed is the seed of the delivery order: source_config.seed, else the top-level seed.
func (c *Config) EffectiveSeed() *int64 {
	if s := c.SourceSeed(); s != nil {
		return s
	}
	return c.Seed
}

func (c *Config) validateBatch() error {
	b := &c.Batch
	if b.BatchSize < 0 {
		return errs.Errorf(errs.Value, "config key batch_size must be >= 0 (0: one sample at a time), got %d", b.BatchSize)
	}
	switch strings.ToUpper(b.ImageLayout) {
	case "", "HWC":
		b.ImageLayout = "HWC"
	case "CHW":
		b.ImageLayout = "CHW"
	default:
		return errs.Errorf(errs.Value, "config key image_layout must be HWC or CHW, got %q", b.ImageLayout)
	}
	switch strings.ToUpper(b.BatchMode) {
	case "", "RGB":
		b.BatchMode = "RGB"
	case "L":
		b.BatchMode = "L"
	case "RGBA":
		b.BatchMode = "RGBA"
	default:
		return errs.Errorf(errs.Value, "config key batch_mode must be RGB, L or RGBA, got %q", b.BatchMode)
	}
	if b.MaxHeldSamples < 0 {
		return errs.Errorf(errs.Value, "config key max_held_samples must be >= 0 (0: 16 x batch_size), got %d", b.MaxHeldSamples)
	}
	if b.Epoch < 0 {
		return errs.Errorf(errs.Value, "config key epoch must be >= 0, got %d", b.Epoch)
	}
	if b.BatchSize > 0 {
		if !c.ImageConfig.CropAndResize {
			return errs.Errorf(errs.Value, "config key batch_size needs image_config.crop_and_resize: true (a batch holds images of one bucket)")
		}
		if c.ImageConfig.PreEncodeImages {
			return errs.Errorf(errs.Value, "config key batch_size cannot be combined with image_config.pre_encode_images (a batch holds raw pixels)")
		}
		if b.MaxHeldSamples == 0 {
			b.MaxHeldSamples = 16 * b.BatchSize
		}
		if b.MaxHeldSamples < b.BatchSize {
			return errs.Errorf(errs.Value, "config key max_held_samples (%d) must be >= batch_size (%d)", b.MaxHeldSamples, b.BatchSize)
		}
	}
	return nil
}
