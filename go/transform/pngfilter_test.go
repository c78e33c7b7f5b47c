package transform

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"math/rand/v2"
	"testing"
)

// pngFormat is a PNG colour type and bit depth; bpp is the filter's bytes per pixel.
type pngFormat struct {
	name     string
	ctype    byte // 0 grey, 2 RGB, 4 grey+alpha, 6 RGBA
	depth    int  // 8 or 16
	channels int
}

func (f pngFormat) bpp() int { return f.channels * f.depth / 8 }

var pngFormats = []pngFormat{
	{"grey8", 0, 8, 1}, {"greyalpha8", 4, 8, 2}, {"rgb8", 2, 8, 3}, {"rgba8", 6, 8, 4},
	{"grey16", 0, 16, 1}, {"greyalpha16", 4, 16, 2}, {"rgb16", 2, 16, 3}, {"rgba16", 6, 16, 4},
}

// pngPredict is the PNG predictor of filter type f (1 Sub, 2 Up, 3 Average, 4 Paeth; 0 None)
// from the left (a), upper (b) and upper-left (c) bytes.
func pngPredict(f int, a, b, c byte) byte {
	switch f {
	case 1:
		return a
	case 2:
		return b
	case 3:
		return byte((int(a) + int(b)) / 2)
	case 4:
		ia, ib, ic := int(a), int(b), int(c)
		pa, pb, pc := abs(ib-ic), abs(ia-ic), abs(ia+ib-2*ic)
		if pa <= pb && pa <= pc {
			return a
		}
		if pb <= pc {
			return b
		}
		return c
	}
	return 0
}

func abs(x int) int { return max(x, -x) }

// encodeFiltered writes a PNG of w×h pixels in format f from rows (each w·bpp bytes, samples
// big-endian), row y filtered with filters[y]: every filter type as chosen, not as an encoder
// would pick it. One IDAT chunk, zlib at its default level.
func encodeFiltered(t *testing.T, f pngFormat, w, h int, rows [][]byte, filters []int) []byte {
	t.Helper()
	bpp, rowb := f.bpp(), w*f.bpp()
	var raw bytes.Buffer
	prev := make([]byte, rowb)
	for y := 0; y < h; y++ {
		cur := rows[y]
		raw.WriteByte(byte(filters[y]))
		for i := 0; i < rowb; i++ {
			var a, c byte
			if i >= bpp {
				a, c = cur[i-bpp], prev[i-bpp]
			}
			raw.WriteByte(cur[i] - pngPredict(filters[y], a, prev[i], c))
		}
		prev = cur
	}
	var out bytes.Buffer
	chunk := func(typ string, data []byte) {
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], uint32(len(data)))
		copy(hdr[4:], typ)
		out.Write(hdr[:])
		out.Write(data)
		crc := crc32.NewIEEE()
		crc.Write(hdr[4:])
		crc.Write(data)
		_ = binary.Write(&out, binary.BigEndian, crc.Sum32())
	}
	out.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], uint32(w))
	binary.BigEndian.PutUint32(ihdr[4:], uint32(h))
	ihdr[8], ihdr[9] = byte(f.depth), f.ctype
	chunk("IHDR", ihdr)
	var z bytes.Buffer
	zw := zlib.NewWriter(&z)
	if _, err := zw.Write(raw.Bytes()); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	chunk("IDAT", z.Bytes())
	chunk("IEND", nil)
	return out.Bytes()
}

// testRows makes h rows of w pixels in format f: from the photo (its top-left corner; grey as
// its luminance) or, without one, seeded noise; alpha mostly opaque with transparent and
// half-transparent pixels scattered (seeded); 16-bit samples from the 8-bit ones and noise.
func testRows(f pngFormat, src image.Image, w, h int, rng *rand.Rand) [][]byte {
	rows := make([][]byte, h)
	for y := range rows {
		row := make([]byte, 0, w*f.bpp())
		for x := 0; x < w; x++ {
			var s [4]byte
			if src != nil {
				c := color.NRGBAModel.Convert(src.At(src.Bounds().Min.X+x, src.Bounds().Min.Y+y)).(color.NRGBA)
				s = [4]byte{c.R, c.G, c.B, 0}
				if f.channels <= 2 {
					s[0] = color.GrayModel.Convert(c).(color.Gray).Y
				}
			} else {
				s = [4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), 0}
			}
			alpha := byte(255)
			switch r := rng.IntN(10); {
			case r == 0:
				alpha = 0
			case r <= 2:
				alpha = byte(rng.IntN(256))
			}
			samples := s[:f.channels]
			if f.channels == 2 || f.channels == 4 {
				samples[f.channels-1] = alpha
			}
			for _, v := range samples {
				row = append(row, v)
				if f.depth == 16 {
					row = append(row, byte(rng.IntN(256)))
				}
			}
		}
		rows[y] = row
	}
	return rows
}

// flattenWhite is the flattening onto white our decoder does, in Go: libvips' RGBA (or grey +
// alpha) pixels become RGB (grey).
func flattenWhite(pix []byte, channels int) []byte {
	out := make([]byte, 0, len(pix)/channels*(channels-1))
	for i := 0; i < len(pix); i += channels {
		a := int(pix[i+channels-1])
		for b := 0; b < channels-1; b++ {
			out = append(out, byte((int(pix[i+b])*a+255*(255-a)+127)/255))
		}
	}
	return out
}

// libvipsPixels decodes a PNG with libvips, no resize: the reference pixels (8 bits a sample).
func libvipsPixels(t *testing.T, data []byte) ([]byte, Image) {
	t.Helper()
	pix, im, err := processBytes(t, data, &Options{MaxPixels: 100_000_000})
	if err != nil {
		t.Fatal(err)
	}
	return pix, im
}

// Our PNG decoder gives libvips' pixels exactly for every filter type (each forced on every row,
// and mixed row by row so that every pairing of filters on neighbouring rows occurs), every
// 8-bit format (1 to 4 bytes a pixel; with alpha flattened onto white exactly as computed here
// from libvips' pixels), odd widths, photo pixels and noise, with the SSE2 kernels and with the
// AVX2 ones (where the CPU has AVX2). 16-bit PNGs (2 to 8 bytes a pixel) are left to libvips.
func TestPNGFiltersExactAgainstLibvips(t *testing.T) {
	if err := Init(); err != nil {
		t.Fatal(err)
	}
	defer pngFast(1)
	pngFast(1)
	defer pngSIMD(pngSIMD(-1))
	for _, level := range []int{0, 2} {
		t.Run(map[int]string{0: "sse2", 2: "avx2"}[level], func(t *testing.T) {
			pngSIMD(level)
			checkPNGFilters(t)
		})
	}
}

func checkPNGFilters(t *testing.T) {
	photo := decodePhoto(t, photos(t)[0])
	widths := []int{1, 2, 3, 4, 5, 7, 8, 9, 17, 64, 101}
	const h = 11 // odd: the last row is undone alone, the others in pairs
	patterns := []string{"none", "sub", "up", "average", "paeth", "cycle", "random"}
	checked := 0
	for fi, f := range pngFormats {
		for wi, w := range widths {
			for pi, pattern := range patterns {
				for _, source := range []string{"photo", "noise"} {
					rng := rand.New(rand.NewPCG(uint64(fi), uint64(wi*100+pi)))
					var src image.Image
					if source == "photo" {
						src = photo
					}
					rows := testRows(f, src, w, h, rng)
					filters := make([]int, h)
					for y := range filters {
						switch pattern {
						case "cycle":
							filters[y] = y % 5
						case "random":
							filters[y] = rng.IntN(5)
						default:
							filters[y] = pi
						}
					}
					name := fmt.Sprintf("%s/w%d/%s/%s", f.name, w, pattern, source)
					data := encodeFiltered(t, f, w, h, rows, filters)
					want, im := libvipsPixels(t, data)
					if im.Width != w || im.Height != h || im.Channels != f.channels {
						t.Fatalf("%s: libvips gives %dx%dx%d", name, im.Width, im.Height, im.Channels)
					}
					alpha := f.channels == 2 || f.channels == 4
					got, gw, gh, bands, ok := pngDecode(data, alpha)
					if f.depth == 16 {
						if ok {
							t.Errorf("%s: our decoder takes a 16-bit PNG", name)
						}
						continue
					}
					if !ok {
						t.Fatalf("%s: our decoder declines it", name)
					}
					if alpha {
						want = flattenWhite(want, f.channels)
						if _, _, _, _, ok := pngDecode(data, false); ok {
							t.Errorf("%s: alpha taken without flattening", name)
						}
					}
					if gw != w || gh != h || bands*w*h != len(want) {
						t.Fatalf("%s: %dx%dx%d", name, gw, gh, bands)
					}
					if !bytes.Equal(got, want) {
						i := 0
						for got[i] == want[i] {
							i++
						}
						t.Errorf("%s: byte %d (row %d) is %d, libvips %d", name, i, i/(w*bands), got[i], want[i])
					}
					checked++
				}
			}
		}
	}
	if checked != 4*len(widths)*len(patterns)*2 {
		t.Fatalf("%d PNGs compared", checked)
	}
}
