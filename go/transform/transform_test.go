package transform

import (
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/errs"
)

// photos returns the real photographs committed in tests/data/photos (JPEG and PNG).
func photos(t *testing.T) []string {
	t.Helper()
	jpegs, _ := filepath.Glob("../../tests/data/photos/*.jpg")
	pngs, _ := filepath.Glob("../../tests/data/photos/*.png")
	if len(jpegs) == 0 || len(pngs) == 0 {
		t.Fatal("the test photos are missing from tests/data/photos (they are committed in the repository)")
	}
	return append(jpegs, pngs...)
}

func load(t *testing.T, path string) cmem.Buf {
	t.Helper()
	b, err := cmem.ReadFile(path, 0)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func opts(t *testing.T) *Options {
	bs, err := BuildBuckets(512, 16, 0.5, 2.0)
	if err != nil {
		t.Fatal(err)
	}
	return &Options{CropAndResize: true, Buckets: bs, JPEGQuality: 90, MaxPixels: 100_000_000}
}

func TestProcessRealPhotos(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	o := opts(t)
	for _, path := range photos(t) {
		buf := load(t, path)
		im, err := Process(buf, o, nil, false)
		buf.Free()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		want := o.Buckets.Nearest(im.OriginalWidth, im.OriginalHeight)
		if im.Width != want.W || im.Height != want.H || im.Channels != 3 {
			t.Errorf("%s: got %dx%dx%d, want bucket %v x3", path, im.Width, im.Height, im.Channels, want)
		}
		if im.Len != im.Width*im.Height*im.PixelStride {
			t.Errorf("%s: %d bytes for %dx%d stride %d", path, im.Len, im.Width, im.Height, im.PixelStride)
		}
		// a photograph is not a flat image: the pixels vary
		px := unsafe.Slice((*byte)(im.Data), im.Len)
		lo, hi := byte(255), byte(0)
		for _, v := range px {
			lo, hi = min(lo, v), max(hi, v)
		}
		if hi-lo < 100 {
			t.Errorf("%s: pixel range %d..%d looks wrong for a photo", path, lo, hi)
		}
		im.Free()
	}
}

func TestProcessRejectsBadInput(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	o := opts(t)
	good := load(t, photos(t)[0])
	defer good.Free()
	trunc := cmem.Alloc(good.Len / 2)
	copy(trunc.Bytes(), good.Bytes())
	defer trunc.Free()
	text := cmem.Alloc(64)
	copy(text.Bytes(), []byte("this is not an image, just some text that pretends to be one..."))
	defer text.Free()
	for name, tc := range map[string]struct {
		buf    cmem.Buf
		reason errs.Reason
	}{
		"empty":     {cmem.Buf{}, errs.ReasonDecode},
		"text":      {text, errs.ReasonDecode},
		"truncated": {trunc, errs.ReasonCorrupt}, // the scan stops half way: damaged data
	} {
		_, err := Process(tc.buf, o, nil, false)
		if err == nil || errs.ReasonOf(err, errs.ReasonTransform) != tc.reason {
			t.Errorf("%s: got %v, want reason %s", name, err, tc.reason)
		}
	}
	small := *o
	small.MaxPixels = 1000
	if _, err := Process(good, &small, nil, false); errs.ReasonOf(err, errs.ReasonTransform) != errs.ReasonTooManyPixels {
		t.Errorf("pixel cap: got %v", err)
	}
}

func TestMain(m *testing.M) {
	if err := Init(); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}
