package transform

import (
	"math"
	"testing"
)

func TestBucketsAreMultiplesWithinBounds(t *testing.T) {
	for _, tc := range []struct {
		size, ratio  int
		minAR, maxAR float64
	}{
		{512, 16, 0.5, 2.0}, {1024, 16, 0.25, 4.0}, {224, 16, 0.5, 2.0}, {256, 8, 1, 1}, {768, 32, 0.75, 1.333},
	} {
		bs, err := BuildBuckets(tc.size, tc.ratio, tc.minAR, tc.maxAR)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) == 0 {
			t.Fatalf("%+v: no bucket", tc)
		}
		hasSquare := false
		for i, b := range bs {
			if b.W%tc.ratio != 0 || b.H%tc.ratio != 0 {
				t.Errorf("%+v: %v not a multiple of %d", tc, b, tc.ratio)
			}
			if ar := b.AspectRatio(); ar < tc.minAR || ar > tc.maxAR {
				t.Errorf("%+v: %v aspect ratio %.3f outside [%g, %g]", tc, b, ar, tc.minAR, tc.maxAR)
			}
			area := float64(b.W * b.H)
			target := float64(tc.size * tc.size)
			if area > target || area < 0.85*target {
				t.Errorf("%+v: %v area %.0f not ≈ %.0f", tc, b, area, target)
			}
			if i > 0 && bs[i-1].AspectRatio() >= b.AspectRatio() {
				t.Errorf("%+v: buckets not sorted by strictly increasing aspect ratio", tc)
			}
			hasSquare = hasSquare || b.W == b.H
		}
		if !hasSquare {
			t.Errorf("%+v: no square bucket", tc)
		}
	}
}

func TestBuckets512(t *testing.T) {
	bs, err := BuildBuckets(512, 16, 0.5, 2.0)
	if err != nil {
		t.Fatal(err)
	}
	want := map[Bucket]bool{{512, 512}: true, {704, 368}: true, {368, 704}: true, {640, 400}: true}
	for _, b := range bs {
		delete(want, b)
	}
	if len(want) != 0 {
		t.Errorf("missing buckets %v in %v", want, bs)
	}
	// datago's list contains 720x352 (ar 2.045 > 2): ours must not
	for _, b := range bs {
		if b == (Bucket{720, 352}) || b == (Bucket{352, 720}) {
			t.Errorf("bucket %v is outside the aspect-ratio bounds", b)
		}
	}
}

func TestNearestBucket(t *testing.T) {
	bs, _ := BuildBuckets(512, 16, 0.5, 2.0)
	for _, tc := range []struct{ w, h int }{
		{1000, 1000}, {1920, 1080}, {1080, 1920}, {4000, 10}, {10, 4000}, {1, 1}, {1600, 1203}, {3, 2},
	} {
		got := bs.Nearest(tc.w, tc.h)
		ar := float64(tc.w) / float64(tc.h)
		best := math.Inf(1)
		for _, b := range bs {
			best = math.Min(best, math.Abs(b.AspectRatio()-ar))
		}
		if d := math.Abs(got.AspectRatio() - ar); d > best+1e-12 {
			t.Errorf("%dx%d: got %v (|Δar| %.4f), a bucket is %.4f away", tc.w, tc.h, got, d, best)
		}
	}
	if b := bs.Nearest(1000, 1000); b != (Bucket{512, 512}) {
		t.Errorf("square image went to %v", b)
	}
	if b := bs.Nearest(10000, 20); b.AspectRatio() != bs[len(bs)-1].AspectRatio() {
		t.Errorf("very wide image went to %v, want the widest bucket", b)
	}
}

func TestBuildBucketsErrors(t *testing.T) {
	for _, tc := range []struct {
		size, ratio  int
		minAR, maxAR float64
	}{{0, 16, 0.5, 2}, {512, 0, 0.5, 2}, {500, 16, 0.5, 2}, {512, 16, 0, 2}, {512, 16, 2, 0.5}} {
		if _, err := BuildBuckets(tc.size, tc.ratio, tc.minAR, tc.maxAR); err == nil {
			t.Errorf("%+v: want an error", tc)
		}
	}
}

func TestShrinkFactor(t *testing.T) {
	for _, tc := range []struct{ w, h, nw, nh int }{
		{4000, 3000, 512, 512},
		{1024, 1024, 512, 512},
		{1023, 1023, 512, 512},
		{8000, 8000, 256, 256}, // capped at 8
		{100, 100, 512, 512},   // upscale: no shrink
		{10000, 20, 704, 368},
		{1920, 1080, 704, 368},
		{5640, 3172, 704, 368},
	} {
		got := ShrinkFactor(tc.w, tc.h, tc.nw, tc.nh)
		// the contract: the remaining scale after shrinking is ≤ 1 (never upsample what was shrunk)
		scale := math.Max(float64(tc.nw)/float64(tc.w), float64(tc.nh)/float64(tc.h)) * float64(got)
		if got > 1 && scale > 1 {
			t.Errorf("%+v: shrink %d leaves scale %.3f > 1", tc, got, scale)
		}
		if got < 8 && scale*2 <= 1 {
			t.Errorf("%+v: shrink %d is not the largest (scale %.3f)", tc, got, scale)
		}
	}
}

func TestShrinkFactorExamples(t *testing.T) {
	for _, tc := range []struct{ w, h, nw, nh, want int }{
		{4000, 3000, 512, 512, 4}, {1024, 1024, 512, 512, 2}, {1023, 1023, 512, 512, 1},
		{8000, 8000, 256, 256, 8}, {100, 100, 512, 512, 1}, {10000, 20, 704, 368, 1},
	} {
		if got := ShrinkFactor(tc.w, tc.h, tc.nw, tc.nh); got != tc.want {
			t.Errorf("%dx%d → %dx%d: shrink %d, want %d", tc.w, tc.h, tc.nw, tc.nh, got, tc.want)
		}
	}
}
