package transform

import (
	"fmt"
	"math"
	"sort"
)

// Bucket is a target image size (pixels). Every bucket's sides are multiples of the
// downsampling ratio and its area is close to (and at most) default_image_size².
type Bucket struct {
	W, H int
}

// AspectRatio is W / H.
func (b Bucket) AspectRatio() float64 { return float64(b.W) / float64(b.H) }

func (b Bucket) String() string { return fmt.Sprintf("%dx%d", b.W, b.H) }

// Buckets is the sorted (by aspect ratio) set of aspect-ratio buckets.
type Buckets []Bucket

// BuildBuckets returns the buckets for a target size (pixels), a downsampling ratio (pixels per
// latent patch) and an aspect-ratio range. With p = size/ratio patches per side, every bucket is
// (pw*ratio, ph*ratio) with ph = floor(p²/pw) or pw = floor(p²/ph), so that its area is at most size²
// and as close to it as the patch grid allows; unlike datago, a bucket whose aspect ratio falls
// outside [minAR, maxAR] is dropped, never kept.
func BuildBuckets(size, ratio int, minAR, maxAR float64) (Buckets, error) {
	switch {
	case size <= 0:
		return nil, fmt.Errorf("default_image_size must be > 0, got %d", size)
	case ratio <= 0:
		return nil, fmt.Errorf("downsampling_ratio must be > 0, got %d", ratio)
	case size%ratio != 0:
		return nil, fmt.Errorf("default_image_size (%d) must be a multiple of downsampling_ratio (%d)", size, ratio)
	case !(minAR > 0) || !(maxAR >= minAR) || math.IsInf(maxAR, 0):
		return nil, fmt.Errorf("need 0 < min_aspect_ratio <= max_aspect_ratio, got %g and %g", minAR, maxAR)
	}
	p := size / ratio
	area := float64(p * p)
	seen := map[Bucket]bool{}
	var out Buckets
	add := func(pw, ph int) {
		if pw < 1 || ph < 1 {
			return
		}
		b := Bucket{pw * ratio, ph * ratio}
		ar := b.AspectRatio()
		if ar < minAR || ar > maxAR || seen[b] {
			return
		}
		seen[b] = true
		out = append(out, b)
	}
	// landscape side: width grows from the narrowest allowed, height follows the area
	for pw := int(math.Ceil(math.Sqrt(area * minAR))); pw <= int(math.Floor(math.Sqrt(area*maxAR))); pw++ {
		add(pw, int(area)/pw)
	}
	// portrait side: the same with the axes swapped
	for ph := int(math.Ceil(math.Sqrt(area / maxAR))); ph <= int(math.Floor(math.Sqrt(area/minAR))); ph++ {
		add(int(area)/ph, ph)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no bucket of %dpx (ratio %d) has an aspect ratio in [%g, %g]", size, ratio, minAR, maxAR)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AspectRatio() < out[j].AspectRatio() })
	return out, nil
}

// Nearest returns the bucket whose aspect ratio is closest to w/h (absolute difference, as datago;
// ties go to the wider bucket).
func (bs Buckets) Nearest(w, h int) Bucket {
	ar := float64(w) / float64(h)
	i := sort.Search(len(bs), func(i int) bool { return bs[i].AspectRatio() >= ar })
	switch {
	case i == 0:
		return bs[0]
	case i == len(bs):
		return bs[len(bs)-1]
	case ar-bs[i-1].AspectRatio() < bs[i].AspectRatio()-ar:
		return bs[i-1]
	default:
		return bs[i]
	}
}
