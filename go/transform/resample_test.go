package transform

import (
	"math/rand/v2"
	"testing"
)

func TestResampleIdentity(t *testing.T) {
	for _, bands := range []int{1, 3, 4} {
		src := make([]byte, 37*23*bands)
		for i := range src {
			src[i] = byte(rand.IntN(256))
		}
		out, err := Resample(src, 37, 23, bands, 37, 23, bands)
		if err != nil {
			t.Fatal(err)
		}
		for i := range src {
			if out[i] != src[i] {
				t.Fatalf("bands %d: byte %d changed %d -> %d at scale 1", bands, i, src[i], out[i])
			}
		}
	}
}

func TestResampleConstantAndPadding(t *testing.T) {
	src := make([]byte, 301*199*3)
	for i := range src {
		src[i] = []byte{10, 128, 250}[i%3]
	}
	for _, size := range [][2]int{{64, 40}, {300, 200}, {602, 398}, {1, 1}, {5, 700}} {
		out, err := Resample(src, 301, 199, 3, size[0], size[1], 4)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(out); i += 4 {
			if out[i] != 10 || out[i+1] != 128 || out[i+2] != 250 || out[i+3] != 255 {
				t.Fatalf("%v: pixel %d = %v, want 10 128 250 255", size, i/4, out[i:i+4])
			}
		}
	}
}

// A horizontal ramp stays a ramp: monotonic, endpoints near the source's, no ringing overflow.
func TestResampleRamp(t *testing.T) {
	w, h := 1000, 10
	src := make([]byte, w*h)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			src[y*w+x] = byte(x * 255 / (w - 1))
		}
	}
	out, err := Resample(src, w, h, 1, 123, 7, 1)
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 7; y++ {
		row := out[y*123 : (y+1)*123]
		for x := 1; x < 123; x++ {
			if row[x] < row[x-1] {
				t.Fatalf("row %d not monotonic at %d: %d < %d", y, x, row[x], row[x-1])
			}
		}
		if row[0] > 3 || row[122] < 252 {
			t.Errorf("row %d endpoints %d..%d", y, row[0], row[122])
		}
	}
}

func TestResampleRejectsBadArguments(t *testing.T) {
	if _, err := Resample(make([]byte, 12), 2, 2, 3, 0, 5, 3); err == nil {
		t.Error("zero width accepted")
	}
	if _, err := Resample(make([]byte, 8), 2, 2, 2, 4, 4, 2); err == nil {
		t.Error("2 bands accepted (the resampler takes 1, 3 or 4)")
	}
}
