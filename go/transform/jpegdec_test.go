package transform

import (
	"bytes"
	"image"
	"image/draw"
	"image/jpeg"
	"os"
	"testing"
)

// jpegOf re-encodes the top-left w x h of a photo as a baseline JPEG, grey or colour (4:2:0).
func jpegOf(t *testing.T, src image.Image, w, h int, grey bool) []byte {
	t.Helper()
	r := image.Rect(0, 0, min(w, src.Bounds().Dx()), min(h, src.Bounds().Dy()))
	var dst draw.Image = image.NewRGBA(r)
	if grey {
		dst = image.NewGray(r)
	}
	draw.Draw(dst, r, src, src.Bounds().Min, draw.Src)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, dst, &jpeg.Options{Quality: 90}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Our JPEG window read gives exactly libvips' pixels: the same bytes out of the pipeline for the
// real photos as shipped (with shrink-on-load at several bucket sizes) and re-encoded tall, wide
// and grey crops, whose centre windows start mid-row and mid-column.
// Our decoder is held to libvips' power-of-two shrinks here (any other M/8 has no libvips
// counterpart; scale_test.go checks those).
func TestJPEGWindowMatchesLibvips(t *testing.T) {
	defer jpegFast(1)
	jpegAnyScale.Store(false)
	defer jpegAnyScale.Store(true)
	files := photos(t)
	var cases []struct {
		name string
		data []byte
	}
	for _, path := range files[:min(len(files), 4)] {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, struct {
			name string
			data []byte
		}{path, data})
	}
	photo := decodePhoto(t, files[0])
	for _, c := range []struct {
		w, h int
		grey bool
	}{{700, 1500, false}, {1900, 500, false}, {1203, 801, true}, {333, 999, true}, {50, 40, false}} {
		cases = append(cases, struct {
			name string
			data []byte
		}{"re-encoded", jpegOf(t, photo, c.w, c.h, c.grey)})
	}
	compared := 0
	for _, size := range []int{128, 256, 512, 1024} {
		o := opts(t)
		bs, err := BuildBuckets(size, 16, 0.5, 2.0)
		if err != nil {
			t.Fatal(err)
		}
		o.Buckets = bs
		for _, c := range cases {
			want, got, im := bothWays(t, c.data, o, jpegFast)
			b := im.Bucket
			if s := ShrinkFactor(im.OriginalWidth, im.OriginalHeight, b.W, b.H); im.OriginalWidth%s != 0 || im.OriginalHeight%s != 0 {
				// libvips' shrunk size is floor(w/s), libjpeg's ceil(w/s): the windows differ by
				// design (ours follows libjpeg; scale_test.go checks it against a full decode)
				continue
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s (%dx%d from %dx%d, size %d): our JPEG read differs from libvips",
					c.name, im.Width, im.Height, im.OriginalWidth, im.OriginalHeight, size)
			}
			compared++
		}
	}
	if compared == 0 {
		t.Fatal("nothing compared")
	}
}

// Damaged JPEGs are refused exactly as before: the window read hands anything odd to libvips.
func TestJPEGWindowDamagedFilesFailLikeLibvips(t *testing.T) {
	defer jpegFast(1)
	o := opts(t)
	data, err := os.ReadFile(photos(t)[0])
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(data)
	for i := len(data) / 3; i < len(data)/3+64; i++ {
		flipped[i] ^= 0xA5
	}
	verdicts := sameVerdicts(t, o, jpegFast, map[string][]byte{
		"truncated": data[:len(data)/2],
		"garbled":   flipped,
		"header":    data[:600],
	})
	if verdicts["header"] == "" {
		t.Error("a JPEG cut inside its header was accepted")
	}
}
