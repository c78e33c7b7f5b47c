package transform

import (
	"bytes"
	"math"
	"math/rand"
	"testing"
)

// cropWindow restates dg_crop_window (crop.h): the centre window of a W×H image with the aspect
// ratio of tw×th.
func cropWindow(W, H, tw, th int) (x0, y0, cw, ch int) {
	scale := math.Max(float64(tw)/float64(W), float64(th)/float64(H))
	cw = int(math.Min(float64(W), math.Max(1, math.Round(float64(tw)/scale))))
	ch = int(math.Min(float64(H), math.Max(1, math.Round(float64(th)/scale))))
	return (W - cw) / 2, (H - ch) / 2, cw, ch
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// The IDCT scaling M/8 is the smallest that covers the target (so the resampler never upsamples
// and the window is at most M/(M-1) of the target per axis), and libvips' fallback shrink is the
// largest power of two at or below it.
func TestJPEGScaleIsTheSmallestThatCovers(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	type tc struct{ w, h, nw, nh int }
	cases := []tc{{4000, 3000, 512, 512}, {1024, 640, 640, 400}, {1023, 1023, 512, 512}, {8, 8, 1, 1},
		{1, 1, 512, 512}, {10000, 20, 704, 368}, {333, 640, 96, 160}, {801, 801, 100, 100}, {800, 800, 100, 100}}
	for i := 0; i < 20000; i++ {
		cases = append(cases, tc{1 + rng.Intn(7000), 1 + rng.Intn(7000), 16 * (1 + rng.Intn(64)), 16 * (1 + rng.Intn(64))})
	}
	counts := map[int]int{}
	for _, c := range cases {
		m := JPEGScale(c.w, c.h, c.nw, c.nh)
		counts[m]++
		if m < 1 || m > 8 {
			t.Fatalf("%+v: M = %d", c, m)
		}
		sw, sh := ceilDiv(c.w*m, 8), ceilDiv(c.h*m, 8) // the size libjpeg reports
		if m < 8 && (c.w*m < 8*c.nw || c.h*m < 8*c.nh || sw < c.nw || sh < c.nh) {
			t.Errorf("%+v: M = %d gives %dx%d, which does not cover the target", c, m, sw, sh)
		}
		if m > 1 && c.w*(m-1) >= 8*c.nw && c.h*(m-1) >= 8*c.nh {
			t.Errorf("%+v: M = %d is not the smallest (M-1 covers)", c, m)
		}
		if m < 8 {
			_, _, cw, ch := cropWindow(sw, sh, c.nw, c.nh)
			if cw < c.nw || ch < c.nh {
				t.Errorf("%+v: M = %d: window %dx%d does not cover the target", c, m, cw, ch)
			}
			if m > 1 {
				bound := float64(m) / float64(m-1)
				if float64(cw) > bound*float64(c.nw)+2 || float64(ch) > bound*float64(c.nh)+2 {
					t.Errorf("%+v: M = %d: window %dx%d is more than %.2f× the target", c, m, cw, ch, bound)
				}
			}
		}
		s := ShrinkFactor(c.w, c.h, c.nw, c.nh)
		if s*m > 8 || (s < 8 && 2*s*m <= 8) {
			t.Errorf("%+v: shrink %d for M = %d", c, s, m)
		}
	}
	for _, m := range []int{3, 5, 6, 7} {
		if counts[m] == 0 {
			t.Errorf("no case chose M = %d: %v", m, counts)
		}
	}
}

// The window our decoder reads at M/8 is exactly the centre crop of the whole M/8-scaled image
// (ceil(w*M/8) x ceil(h*M/8), as libjpeg reports it), for every M, at odd sizes where the last
// block column/row is partial, colour (4:2:0) and grey, and windows touching the image edges.
func TestJPEGScaledWindowIsTheCropOfTheScaledImage(t *testing.T) {
	photo := decodePhoto(t, photos(t)[0])
	targets := [][2]int{{64, 64}, {96, 48}, {48, 96}, {40, 24}, {17, 29}}
	checked := 0
	for _, sz := range [][2]int{{333, 257}, {1001, 639}, {97, 131}, {640, 481}, {250, 250}} {
		for _, grey := range []bool{false, true} {
			data := jpegOf(t, photo, sz[0], sz[1], grey)
			bands := 3
			if grey {
				bands = 1
			}
			w, h := sz[0], sz[1]
			for m := 1; m <= 8; m++ {
				sw, sh := ceilDiv(w*m, 8), ceilDiv(h*m, 8)
				full, fw, fh, fb, ok := jpegWindow(data, m, w, h, bands, sw, sh)
				if !ok || fw != sw || fh != sh || fb != bands {
					t.Fatalf("%dx%d grey=%v M=%d: full scaled decode %v %dx%dx%d, want %dx%dx%d",
						w, h, grey, m, ok, fw, fh, fb, sw, sh, bands)
				}
				for _, tg := range targets {
					x0, y0, cw, ch := cropWindow(sw, sh, tg[0], tg[1])
					win, ww, wh, _, ok := jpegWindow(data, m, w, h, bands, tg[0], tg[1])
					if !ok || ww != cw || wh != ch {
						t.Fatalf("%dx%d M=%d target %v: window %v %dx%d, want %dx%d", w, h, m, tg, ok, ww, wh, cw, ch)
					}
					for y := 0; y < ch; y++ {
						a := win[y*cw*bands : (y+1)*cw*bands]
						o := ((y0+y)*sw + x0) * bands
						if !bytes.Equal(a, full[o:o+cw*bands]) {
							t.Fatalf("%dx%d grey=%v M=%d target %v: window row %d differs from the scaled image",
								w, h, grey, m, tg, y)
						}
					}
					if m == JPEGScale(w, h, tg[0], tg[1]) && m < 8 && (cw < tg[0] || ch < tg[1]) {
						t.Errorf("%dx%d M=%d target %v: window %dx%d does not cover", w, h, m, tg, cw, ch)
					}
					checked++
				}
			}
		}
	}
	if checked == 0 {
		t.Fatal("nothing checked")
	}
}

// A header that disagrees with the caller's size is declined (libvips then decodes the image).
func TestJPEGScaledDeclinesAWrongSize(t *testing.T) {
	data := jpegOf(t, decodePhoto(t, photos(t)[0]), 333, 257, false)
	if _, _, _, _, ok := jpegWindow(data, 3, 334, 257, 3, 64, 64); ok {
		t.Error("a 333x257 JPEG was decoded as 334x257")
	}
	if _, _, _, _, ok := jpegWindow(data, 3, 333, 257, 3, 64, 64); !ok {
		t.Error("the JPEG was declined at its own size")
	}
}
