package transform

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/datago-dev/datago/go/errs"
)

// The committed corpus of damaged files (tests/data/corrupt, written by make_corpus.py from a
// real photo) and the verdict expected of each under every image_config.fail_on: the same for
// every crop setting, with our decoders on or off.

const corpusDir = "../../tests/data/corrupt"

type corpusEntry struct {
	What    string            `json:"what"`
	Verdict map[string]string `json:"verdict"` // fail_on -> "ok" or the skip reason
}

func readCorpus(t *testing.T) (names []string, entries map[string]corpusEntry, data map[string][]byte) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(corpusDir, "manifest.json"))
	if err != nil {
		t.Fatalf("the corpus is committed (tests/data/corrupt): %v", err)
	}
	var m struct {
		Files map[string]corpusEntry `json:"files"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if len(m.Files) < 20 {
		t.Fatalf("manifest lists %d files", len(m.Files))
	}
	data = map[string][]byte{}
	for name := range m.Files {
		b, err := os.ReadFile(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		data[name] = b
		names = append(names, name)
	}
	sort.Strings(names)
	return names, m.Files, data
}

// corpusOptions: crop 0 is no crop, else buckets of that size.
func corpusOptions(t *testing.T, crop int, failOn FailOn) *Options {
	t.Helper()
	o := &Options{JPEGQuality: 90, MaxPixels: 1 << 24, PadRGB: true, FailOn: failOn}
	if crop > 0 {
		bs, err := BuildBuckets(crop, 16, 0.5, 2.0)
		if err != nil {
			t.Fatal(err)
		}
		o.CropAndResize, o.Buckets = true, bs
	}
	return o
}

func verdictOf(err error) string {
	if err == nil {
		return "ok"
	}
	return string(errs.ReasonOf(err, "no_reason"))
}

func TestCorruptCorpusVerdicts(t *testing.T) {
	names, entries, data := readCorpus(t)
	for _, fast := range []int{1, 0} {
		prevJ, prevP := jpegFast(fast), pngFast(fast)
		for _, name := range names {
			for _, failOn := range []FailOn{FailOnWarning, FailOnError, FailOnNone} {
				want := entries[name].Verdict[failOn.String()]
				for _, crop := range []int{0, 256, 512, -256} { // -256: 256 px, re-encoded (libvips' chain)
					o := corpusOptions(t, max(crop, -crop), failOn)
					if crop < 0 {
						o.Encode = "png"
					}
					out := fuzzProcess(data[name], o)
					if got := verdictOf(out.err); got != want {
						t.Errorf("%s (%s), fail_on %v, crop %d, our decoders %v: got %s (%v), want %s",
							name, entries[name].What, failOn, crop, fast == 1, got, out.err, want)
					}
					if out.err != nil && strings.TrimSpace(strings.TrimPrefix(out.err.Error(), verdictOf(out.err)+":")) == "" {
						t.Errorf("%s: empty message", name)
					}
				}
			}
		}
		jpegFast(prevJ)
		pngFast(prevP)
	}
}

// TestCorruptMessagesAreTheFilesOwn decodes the corpus from several goroutines at once, mixed with
// clean photos, at each crop: every refusal must carry the message a lone decode of that file gives
// (libvips' error buffer is one per process; our messages are per call).
func TestCorruptMessagesAreTheFilesOwn(t *testing.T) {
	names, _, data := readCorpus(t)
	good := photos(t)
	type job struct {
		name string
		data []byte
		crop int
	}
	var jobs []job
	want := map[string]string{}
	for _, crop := range []int{0, 256} {
		for _, name := range names {
			j := job{name, data[name], crop}
			out := fuzzProcess(j.data, corpusOptions(t, crop, FailOnWarning))
			want[fmt.Sprint(name, crop)] = fmt.Sprint(out.err)
			jobs = append(jobs, j)
		}
		for _, p := range good {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			jobs = append(jobs, job{filepath.Base(p), b, crop})
			want[fmt.Sprint(filepath.Base(p), crop)] = "<nil>"
		}
	}
	const workers, rounds = 6, 8
	var wg sync.WaitGroup
	errc := make(chan string, workers*rounds*len(jobs))
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				for i := range jobs {
					j := jobs[(i*7+w*13+r)%len(jobs)] // each worker in its own order
					out := fuzzProcess(j.data, corpusOptions(t, j.crop, FailOnWarning))
					if got, exp := fmt.Sprint(out.err), want[fmt.Sprint(j.name, j.crop)]; got != exp {
						errc <- fmt.Sprintf("%s at crop %d: got %q, alone %q", j.name, j.crop, got, exp)
					}
				}
			}
		}(w)
	}
	wg.Wait()
	close(errc)
	n := 0
	for e := range errc {
		if n < 10 {
			t.Error(e)
		}
		n++
	}
	if n > 0 {
		t.Errorf("%d messages were not the file's own", n)
	}
}

// recordingHandler keeps the messages logged through slog (at any level).
type recordingHandler struct {
	mu   sync.Mutex
	recs []string
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	s := r.Level.String() + " " + r.Message
	r.Attrs(func(a slog.Attr) bool { s += " " + a.Key + "=" + a.Value.String(); return true })
	h.mu.Lock()
	h.recs = append(h.recs, s)
	h.mu.Unlock()
	return nil
}
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler      { return h }

// TestLibvipsWarningsGoToTheLog: libpng's warnings, which libvips prints with GLib (on stderr by
// default), reach datago's log instead, at debug level.
func TestLibvipsWarningsGoToTheLog(t *testing.T) {
	_, _, data := readCorpus(t)
	h := &recordingHandler{}
	prev := slog.Default()
	slog.SetDefault(slog.New(h))
	defer slog.SetDefault(prev)
	// fail_on none, no crop: libvips decodes the damaged PNG, libpng warns about every row
	out := fuzzProcess(data["png_idat_crc_last.png"], corpusOptions(t, 0, FailOnNone))
	if out.err != nil {
		t.Fatalf("fail_on none refused it: %v", out.err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.recs {
		if strings.HasPrefix(r, "DEBUG datago: libvips") && strings.Contains(r, "CRC error") {
			return
		}
	}
	t.Fatalf("no libvips warning in the log: %q", h.recs)
}

// TestJPEGWindowForReencodingMatchesLibvips: with pre_encode_images, a JPEG's crop window comes
// from our decoder into libvips' chain (one entropy decoding, judged by fail_on); the decoded
// pixels stay those of libvips' own decode up to the scaling's rounding.
func TestJPEGWindowForReencodingMatchesLibvips(t *testing.T) {
	for _, path := range photos(t) {
		if !strings.HasSuffix(path, ".jpg") {
			continue
		}
		o := corpusOptions(t, 256, FailOnWarning)
		o.Encode = "png"
		ours, vips := withAndWithoutOurJPEG(t, path, o)
		a, b := decodePNG(t, ours.pixels), decodePNG(t, vips.pixels)
		if a.Bounds() != b.Bounds() {
			t.Fatalf("%s: %v vs %v", path, a.Bounds(), b.Bounds())
		}
		sum, n := 0, 0
		for y := a.Bounds().Min.Y; y < a.Bounds().Max.Y; y++ {
			for x := a.Bounds().Min.X; x < a.Bounds().Max.X; x++ {
				r1, g1, b1, _ := a.At(x, y).RGBA()
				r2, g2, b2, _ := b.At(x, y).RGBA()
				for _, d := range []int{int(r1>>8) - int(r2>>8), int(g1>>8) - int(g2>>8), int(b1>>8) - int(b2>>8)} {
					sum += max(d, -d)
					n++
				}
			}
		}
		if mean := float64(sum) / float64(n); mean > 4 {
			t.Errorf("%s: mean difference %.2f levels from libvips' decode", path, mean)
		}
	}
}

// withAndWithoutOurJPEG processes the photo at path with o twice: with our JPEG decoder, then with
// libvips alone; either failing fails the test.
func withAndWithoutOurJPEG(t *testing.T, path string, o *Options) (ours, vips fuzzOutcome) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ours = fuzzProcess(data, o)
	prev := jpegFast(0)
	vips = fuzzProcess(data, o)
	jpegFast(prev)
	if ours.err != nil || vips.err != nil {
		t.Fatalf("%s: %v / %v", path, ours.err, vips.err)
	}
	return ours, vips
}

func decodePNG(t *testing.T, b []byte) image.Image {
	t.Helper()
	im, err := png.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// TestJPEGWholeImageMatchesLibvips: without crop, a JPEG is decoded by our decoder at full size
// (one entropy decoding, judged by fail_on) and then goes through libvips' chain: the pixels are
// exactly those of libvips' own decode (same library, same DCT and upsampling).
func TestJPEGWholeImageMatchesLibvips(t *testing.T) {
	for _, path := range photos(t) {
		if !strings.HasSuffix(path, ".jpg") {
			continue
		}
		ours, vips := withAndWithoutOurJPEG(t, path, corpusOptions(t, 0, FailOnWarning))
		if ours.im != vips.im || !bytes.Equal(ours.pixels, vips.pixels) {
			t.Errorf("%s: our decode differs from libvips' (%+v vs %+v)", path, ours.im, vips.im)
		}
	}
}
