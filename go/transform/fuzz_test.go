package transform

import (
	"bytes"
	"slices"
	"testing"
	"unsafe"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/errs"
)

// Fuzz targets of the decoders we wrote (jpegdec.c, pngdec.c), reached the way the pipeline
// reaches them: Process, with libvips' header first. Each input is decoded twice, with our decoder
// on and off (libvips decodes): the two must agree (same verdict, same pixels), and an accepted
// image must have the bucket's size. Seeds: testdata/fuzz/<FuzzName>/ (tiny real photos, odd
// sizes, damaged copies); scripts/fuzz.sh runs them under AddressSanitizer.

// fuzzMaxPixels caps the images a fuzz input may declare: a few-byte header can claim a huge
// image, and decoding it would only make the run slow.
const fuzzMaxPixels = 1 << 20

// fuzzWholeMaxPixels caps the images also decoded without crop (the verdict must be the same).
const fuzzWholeMaxPixels = 1 << 15

var fuzzSizes = []int{64, 128, 256}

// fuzzOptions maps the mode byte of a fuzz input to options: bits 0-1 the bucket size, bit 2
// image_to_rgb8, bit 3 flatten_alpha, bit 4 pad_rgb, bits 5-6 fail_on (warning, error, none;
// 3 is warning).
func fuzzOptions(t *testing.T, mode uint8) *Options {
	t.Helper()
	bs, err := BuildBuckets(fuzzSizes[int(mode&3)%len(fuzzSizes)], 16, 0.5, 2.0)
	if err != nil {
		t.Fatal(err)
	}
	return &Options{CropAndResize: true, Buckets: bs, JPEGQuality: 90, MaxPixels: fuzzMaxPixels,
		ToRGB8: mode&4 != 0, FlattenAlpha: mode&8 != 0, PadRGB: mode&16 != 0, FailOn: FailOn(mode >> 5 & 3 % 3)}
}

// fuzzOutcome is what Process made of an input: the pixels (Go copy) and header, or the skip reason.
type fuzzOutcome struct {
	pixels []byte
	im     Image
	reason errs.Reason
	err    error
}

func fuzzProcess(data []byte, o *Options) fuzzOutcome {
	buf := cmem.Alloc(len(data))
	defer buf.Free()
	copy(buf.Bytes(), data)
	im, err := Process(buf, o, nil, false)
	if err != nil {
		return fuzzOutcome{reason: errs.ReasonOf(err, ""), err: err}
	}
	defer im.Free()
	out := fuzzOutcome{im: im}
	if im.Data != nil {
		out.pixels = slices.Clone(unsafe.Slice((*byte)(im.Data), im.Len))
	}
	out.im.Data = nil
	return out
}

// checkDecoderAgainstLibvips is the property of both targets: toggle switches one of our decoders.
// The verdict must also be the one of a full decode (no crop: libvips alone reads every row).
func checkDecoderAgainstLibvips(t *testing.T, data []byte, mode uint8, toggle func(int) int) {
	o := fuzzOptions(t, mode)
	prev := toggle(1)
	defer toggle(prev)
	ours := fuzzProcess(data, o)
	toggle(0)
	vips := fuzzProcess(data, o)

	if (ours.err == nil) != (vips.err == nil) || ours.reason != vips.reason {
		t.Fatalf("verdicts differ: with our decoder %v, libvips alone %v", ours.err, vips.err)
	}
	// the full decode is capped smaller: libvips takes minutes over an image of a million rows
	whole := *o
	whole.CropAndResize, whole.MaxPixels = false, fuzzWholeMaxPixels
	full := fuzzProcess(data, &whole)
	// (fail_on "none" is libvips' own rule, which can depend on the rows it reads)
	if o.FailOn != FailOnNone && full.reason != errs.ReasonTooManyPixels && ours.reason != errs.ReasonTooManyPixels &&
		(full.err == nil) != (ours.err == nil) {
		t.Fatalf("verdicts differ with fail_on %v: with crop %v, without crop %v", o.FailOn, ours.err, full.err)
	}
	if ours.err != nil {
		switch ours.reason {
		case errs.ReasonDecode, errs.ReasonTransform, errs.ReasonTooManyPixels, errs.ReasonCorrupt:
		default:
			t.Fatalf("refused without a per-image skip reason: %v", ours.err)
		}
		return
	}
	im := ours.im
	if im.OriginalWidth < 1 || im.OriginalHeight < 1 || int64(im.OriginalWidth)*int64(im.OriginalHeight) > fuzzMaxPixels {
		t.Fatalf("accepted an image of %dx%d (cap %d pixels)", im.OriginalWidth, im.OriginalHeight, fuzzMaxPixels)
	}
	want := o.Buckets.Nearest(im.OriginalWidth, im.OriginalHeight)
	if im.Width != want.W || im.Height != want.H || im.Bucket != want {
		t.Fatalf("%dx%d image came out %dx%d (bucket %v), want the nearest bucket %v",
			im.OriginalWidth, im.OriginalHeight, im.Width, im.Height, im.Bucket, want)
	}
	if im.Channels < 1 || im.Channels > 4 || im.PixelStride < im.Channels || im.PixelStride > 4 {
		t.Fatalf("%d channels, %d bytes per pixel", im.Channels, im.PixelStride)
	}
	if o.ToRGB8 && im.Channels != 3 {
		t.Fatalf("image_to_rgb8 gave %d channels", im.Channels)
	}
	if im.Len != im.Width*im.Height*im.PixelStride || len(ours.pixels) != im.Len {
		t.Fatalf("%d bytes for %dx%d at %d bytes per pixel", im.Len, im.Width, im.Height, im.PixelStride)
	}
	if im != vips.im {
		t.Fatalf("headers differ: with our decoder %+v, libvips alone %+v", im, vips.im)
	}
	if bytes.Equal(ours.pixels, vips.pixels) {
		return
	}
	// a PNG with an alpha channel, flattened: our decoder flattens before resizing, libvips after
	// (TestPNGAlphaFlattenedLikeLibvips); the same arithmetic up to rounding and the kernel's
	// ringing at alpha edges, which tiny upscaled images magnify (seeds: mean 3.8, worst 66)
	sum, worst := 0, 0
	for i := range ours.pixels {
		d := int(ours.pixels[i]) - int(vips.pixels[i])
		sum, worst = sum+max(d, -d), max(worst, max(d, -d))
	}
	mean := float64(sum) / float64(len(ours.pixels))
	if !pngAlphaFlattened(data, o) || mean > 8 {
		t.Fatalf("%dx%d -> %v: our decoder's pixels differ from libvips' (mean %.2f, worst %d levels)",
			im.OriginalWidth, im.OriginalHeight, want, mean, worst)
	}
}

// pngAlphaFlattened reports a PNG whose header declares grey+alpha or RGBA (colour type 4 or 6),
// with options that flatten it.
func pngAlphaFlattened(data []byte, o *Options) bool {
	return len(data) > 25 && bytes.HasPrefix(data, []byte("\x89PNG\r\n\x1a\n")) && string(data[12:16]) == "IHDR" &&
		(data[25] == 4 || data[25] == 6) && (o.FlattenAlpha || o.ToRGB8)
}

// FuzzJPEG: the JPEG window read (jpegdec.c) against libvips' own decode of the same bytes.
func FuzzJPEG(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		checkDecoderAgainstLibvips(t, data, mode, jpegFast)
	})
}

// FuzzPNG: our PNG decoder (pngdec.c) against libvips' own decode of the same bytes.
func FuzzPNG(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, mode uint8) {
		checkDecoderAgainstLibvips(t, data, mode, pngFast)
	})
}
