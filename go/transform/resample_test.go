package transform

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestResampleIdentity(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6)) // seeded: the same bytes on every run
	for _, bands := range []int{1, 3, 4} {
		src := make([]byte, 37*23*bands)
		for i := range src {
			src[i] = byte(rng.IntN(256))
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

// refResample is a float64 Lanczos-3 reference (same support and pixel-centre convention as
// resample.c) against which the fixed-point SIMD code is checked.
func refResample(src []byte, sw, sh, bands, dw, dh int) []float64 {
	lanczos := func(x float64) float64 {
		if x <= -3 || x >= 3 {
			return 0
		}
		if x == 0 {
			return 1
		}
		px := math.Pi * x
		return 3 * math.Sin(px) * math.Sin(px/3) / (px * px)
	}
	weights := func(in, out int) ([]int, [][]float64) {
		scale := float64(in) / float64(out)
		fscale := math.Max(scale, 1)
		support := 3 * fscale
		starts := make([]int, out)
		ws := make([][]float64, out)
		for i := range out {
			c := (float64(i) + 0.5) * scale
			lo, hi := max(int(math.Floor(c-support)), 0), min(int(math.Ceil(c+support)), in)
			var w []float64
			sum := 0.0
			for k := lo; k < hi; k++ {
				v := lanczos((float64(k) + 0.5 - c) / fscale)
				w = append(w, v)
				sum += v
			}
			for k := range w {
				w[k] /= sum
			}
			starts[i], ws[i] = lo, w
		}
		return starts, ws
	}
	hs, hw := weights(sw, dw)
	vs, vw := weights(sh, dh)
	tmp := make([]float64, dh*sw*bands) // vertical first, as resample.c
	for y := range dh {
		for x := range sw * bands {
			a := 0.0
			for k, w := range vw[y] {
				a += w * float64(src[(vs[y]+k)*sw*bands+x])
			}
			tmp[y*sw*bands+x] = a
		}
	}
	out := make([]float64, dh*dw*bands)
	for y := range dh {
		for x := range dw {
			for b := range bands {
				a := 0.0
				for k, w := range hw[x] {
					a += w * tmp[(y*sw+hs[x]+k)*bands+b]
				}
				out[(y*dw+x)*bands+b] = a
			}
		}
	}
	return out
}

// smoothImage is a photo-like test image: smooth gradients plus mild noise (pure noise would make
// the 8-bit intermediate's rounding dominate every comparison).
func smoothImage(w, h, bands int, rng *rand.Rand) []byte {
	src := make([]byte, w*h*bands)
	for y := range h {
		for x := range w {
			for b := range bands {
				v := 128 + 90*math.Sin(float64(x)/(7+float64(b))+float64(y)/11) + float64(rng.IntN(21)) - 10
				src[(y*w+x)*bands+b] = byte(max(0, min(255, v)))
			}
		}
	}
	return src
}

// The fixed-point SIMD resampler agrees with the float reference within rounding, for up- and
// downscales, odd sizes, every band count and every padding, on whichever SIMD path this CPU takes.
func TestResampleMatchesFloatReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	cases := [][4]int{{97, 61, 31, 17}, {640, 427, 208, 139}, {1201, 803, 624, 416}, {300, 200, 512, 333},
		{2400, 37, 599, 9}, {33, 65, 33, 130}, {5, 5, 1, 1}, {1000, 3, 7, 3}}
	for _, c := range cases {
		for _, bands := range []int{1, 3, 4} {
			src := smoothImage(c[0], c[1], bands, rng)
			want := refResample(src, c[0], c[1], bands, c[2], c[3])
			for _, dps := range []int{bands, 4} {
				got, err := Resample(src, c[0], c[1], bands, c[2], c[3], dps)
				if err != nil {
					t.Fatal(err)
				}
				worst := 0.0
				for i := range c[2] * c[3] {
					for b := range bands {
						d := math.Abs(float64(got[i*dps+b]) - math.Max(0, math.Min(255, want[i*bands+b])))
						worst = max(worst, d)
					}
					for b := bands; b < dps; b++ {
						if got[i*dps+b] != 255 {
							t.Fatalf("%v bands %d dps %d: pad byte %d = %d", c, bands, dps, b, got[i*dps+b])
						}
					}
				}
				if worst > 1.5 {
					t.Errorf("%v bands %d dps %d: max |fixed - float| = %.2f levels", c, bands, dps, worst)
				}
			}
		}
	}
}

// The AVX2 and SSE2 paths are the same arithmetic: identical bytes for every shape.
func TestResampleSIMDPathsAgree(t *testing.T) {
	if resampleSIMD(2) != 2 {
		resampleSIMD(-1)
		if resampleSIMD(2) != 2 {
			t.Skip("this CPU has no AVX2")
		}
	}
	defer resampleSIMD(-1)
	rng := rand.New(rand.NewPCG(3, 4))
	for _, c := range [][4]int{{1201, 803, 624, 416}, {97, 61, 31, 17}, {33, 65, 64, 130}, {2400, 37, 599, 9}, {7, 3, 2, 1}} {
		for _, bands := range []int{1, 3, 4} {
			src := smoothImage(c[0], c[1], bands, rng)
			for i := range src { // full-range noise: saturation and pair tails are exercised too
				if rng.IntN(8) == 0 {
					src[i] = byte(rng.IntN(256))
				}
			}
			for _, dps := range []int{bands, 4} {
				resampleSIMD(2)
				a, err := Resample(src, c[0], c[1], bands, c[2], c[3], dps)
				if err != nil {
					t.Fatal(err)
				}
				resampleSIMD(0)
				b, _ := Resample(src, c[0], c[1], bands, c[2], c[3], dps)
				if !slices.Equal(a, b) {
					t.Errorf("%v bands %d dps %d: AVX2 and SSE2 outputs differ", c, bands, dps)
				}
			}
		}
	}
}
