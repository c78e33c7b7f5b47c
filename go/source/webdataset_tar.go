package source

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/datago-dev/datago/go/cmem"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

// open opens a shard for streaming.
func (w *WebDataset) open(ctx context.Context, sh shard) (io.ReadCloser, error) {
	if sh.remote && w.s3 != nil && remote.IsS3(sh.loc) {
		return w.openS3(ctx, sh.loc)
	}
	if sh.remote {
		s, err := w.http.Open(ctx, sh.loc, remote.WithBearer(w.token))
		if err != nil {
			return nil, err
		}
		return s, nil
	}
	f, err := os.Open(sh.loc)
	if err != nil {
		kind := errs.OS
		if errors.Is(err, fs.ErrNotExist) {
			kind = errs.NotFound
		}
		return nil, errs.Errorf(kind, "webdataset shard %s: %v", sh.loc, err)
	}
	return f, nil
}

// sample is a sample being assembled from consecutive tar entries.
type sample struct {
	it    *Item
	attrs map[string]any
	skip  errs.Reason // reason, when the sample is to be skipped
	keep  bool        // this rank's sample
}

// readShard reads one shard and sends its samples to out. It returns nil when the shard is done
// (including a truncated or corrupt tar, which is logged and counted), ctx.Err() when cancelled,
// or an error that must end the run (the shard cannot be opened, or its stream broke for good).
func (w *WebDataset) readShard(ctx context.Context, sh shard, out chan<- *Item) error {
	r, err := w.open(ctx, sh)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	defer r.Close()
	head, err := tarStart(sh, r)
	if err != nil {
		var re *readError
		if errors.As(err, &re) || ctx.Err() != nil {
			return w.broken(ctx, sh, err, 0)
		}
		return err // not a tar: fatal, like a missing shard
	}
	tr := tar.NewReader(head)
	var (
		cur       *sample
		n         = -1 // index in the shard of the current sample
		delivered int
	)
	defer func() {
		if cur != nil {
			cur.it.Free()
		}
	}()
	flush := func() error {
		s := cur
		cur = nil
		if s == nil || !s.keep {
			return nil
		}
		ok, err := w.finish(ctx, sh, s, out)
		if ok {
			delivered++
		}
		return err
	}
	for {
		if err := ctx.Err(); err != nil { // entries this rank skips never reach a send
			return err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			// every entry read so far is complete: the current sample goes out as it is (as it
			// would if the tar had been cut cleanly at this header)
			if err := flush(); err != nil {
				return err
			}
			return w.broken(ctx, sh, err, delivered)
		}
		if !hdr.FileInfo().Mode().IsRegular() {
			continue
		}
		key, ext := SplitKey(hdr.Name)
		if key == "" {
			slog.Debug("datago: webdataset: entry ignored (no key or extension)", "shard", sh.loc, "entry", hdr.Name)
			continue
		}
		if cur == nil || key != cur.it.ID {
			if err := flush(); err != nil {
				return err
			}
			n++
			cur = &sample{
				it:   &Item{ID: key, Source: sh.loc, Shard: sh.index, Entry: n},
				keep: (!w.bySample || (sh.index+n)%w.worldSize == w.rank) && !w.done[sh.index].Has(n),
			}
		}
		if !cur.keep || cur.skip != "" {
			continue // the tar reader skips the entry's bytes
		}
		b, err := cmem.ReadAll(tr, hdr.Size, w.maxBytes)
		if err != nil {
			if errors.Is(err, cmem.ErrTooLarge) {
				cur.skip = errs.ReasonPayloadTooLarge
				slog.Warn("datago: webdataset: entry too large", "shard", sh.loc, "entry", hdr.Name, "error", err)
				continue
			}
			// the in-progress sample is incomplete: it is dropped with the rest of the shard
			return w.broken(ctx, sh, err, delivered)
		}
		w.add(sh, cur, ext, b)
	}
	if err := flush(); err != nil {
		return err
	}
	slog.Debug("datago: webdataset: shard done", "shard", sh.loc, "samples", delivered)
	return nil
}

// tarStart reads the first block of a shard and checks that it is a tar header (its checksum
// matches; ustar, GNU and v7 headers all have one) or the zero block of an empty archive, so that
// what is not a tar at all (an HTML error page answered with 200, a JSON error, a wrong file)
// fails the run like a missing shard (an *errs.Error of kind OS naming the shard) instead of being
// taken for a truncated tar and skipped. An empty shard (0 bytes) is an empty archive, as tar reads
// it. It returns a reader of the whole shard.
func tarStart(sh shard, raw io.Reader) (io.Reader, error) {
	r := sourceReader{raw}
	head := make([]byte, tarBlock)
	n, err := io.ReadFull(r, head)
	head = head[:n]
	switch {
	case err == io.EOF:
		return r, nil
	case err != nil && err != io.ErrUnexpectedEOF:
		return nil, err // a read error of the stream
	}
	if isZeros(head) || (n == tarBlock && tarChecksumOK(head)) {
		return io.MultiReader(bytes.NewReader(head), r), nil
	}
	what := ""
	if ct, ok := raw.(interface{ ContentType() string }); ok && ct.ContentType() != "" {
		what = "Content-Type " + ct.ContentType() + "; "
	}
	return nil, errs.Errorf(errs.OS, "webdataset shard %s: not a tar archive (%sits first %d bytes are not a tar header: %q)",
		remote.Redact(sh.loc), what, n, preview(head, 64))
}

// tarBlock is the size of a tar header block.
const tarBlock = 512

func isZeros(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// tarChecksumOK checks a header block's checksum: the octal number at bytes 148-155 is the sum of
// the block's bytes with that field taken as spaces (unsigned, or signed as some old tars wrote).
func tarChecksumOK(h []byte) bool {
	field := strings.Trim(string(h[148:156]), " \x00")
	want, err := strconv.ParseInt(field, 8, 64)
	if err != nil || field == "" {
		return false
	}
	var unsigned, signed int64
	for i, c := range h {
		if i >= 148 && i < 156 {
			c = ' '
		}
		unsigned += int64(c)
		signed += int64(int8(c))
	}
	return want == unsigned || want == signed
}

// preview is the start of b as printable text (at most n bytes).
func preview(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// broken handles a read error in a shard: cancellation and transport failures end the run; a
// truncated or corrupt tar is logged and counted, and the shard ends there.
func (w *WebDataset) broken(ctx context.Context, sh shard, err error, delivered int) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var re *readError
	if errors.As(err, &re) { // the shard's bytes could not be read
		if _, ok := re.err.(errs.Classified); ok { // *remote.Error: the connection broke and could not resume
			return re.err
		}
		return errs.Errorf(errs.OS, "webdataset shard %s: %v", sh.loc, re.err)
	}
	// every other error comes from the tar reader itself: the bytes read are not a whole tar
	w.skip(errs.ReasonTruncated)
	slog.Warn("datago: webdataset: shard is truncated or corrupt; its remaining samples are skipped",
		"shard", sh.loc, "samples_delivered", delivered, "error", err)
	return nil
}

// sourceReader marks the errors of a shard's byte stream (a file, an HTTP stream) as *readError, so
// that the errors of the tar reader above it (a truncated or corrupt tar) are told apart from them
// by type. io.EOF passes unchanged: the tar reader reports a cut inside an entry as
// io.ErrUnexpectedEOF.
type sourceReader struct{ r io.Reader }

func (s sourceReader) Read(p []byte) (int, error) {
	n, err := s.r.Read(p)
	if err != nil && err != io.EOF {
		err = &readError{err}
	}
	return n, err
}

// readError is a read error of a shard's byte stream.
type readError struct{ err error }

func (e *readError) Error() string { return e.err.Error() }

func (e *readError) Unwrap() error { return e.err }

// add files one entry's bytes into the sample (taking ownership of b).
func (w *WebDataset) add(sh shard, s *sample, ext string, b cmem.Buf) {
	lower := strings.ToLower(ext)
	last := lower
	if i := strings.LastIndexByte(lower, '.'); i >= 0 {
		last = lower[i+1:]
	}
	it := s.it
	switch {
	case slices.Contains(w.refs, lower):
		// a candidate: finish makes the first present of w.refs the image, the others stay
		// additional images
		putPayload(&it.AdditionalImages, &Payload{Name: ext, Data: b})
	case w.isMask(lower, last):
		putPayload(&it.Masks, &Payload{Name: ext, Data: b})
	case ImageExtensions["."+last]:
		putPayload(&it.AdditionalImages, &Payload{Name: ext, Data: b})
	case last == "json":
		var v any
		dec := json.NewDecoder(bytes.NewReader(b.Bytes()))
		dec.UseNumber()
		err := dec.Decode(&v)
		if err == nil && dec.More() {
			err = errors.New("trailing data after the JSON value")
		}
		b.Free()
		if err != nil {
			s.skip = errs.ReasonMetadata
			slog.Warn("datago: webdataset: invalid JSON", "shard", sh.loc, "key", it.ID, "entry", ext, "error", err)
			return
		}
		if obj, ok := v.(map[string]any); ok && lower == "json" {
			for k, x := range obj {
				s.setAttr(k, x)
			}
		} else {
			s.setAttr(ext, v)
		}
	case last == "txt":
		s.setAttr(ext, text(b))
	case last == "cls":
		t := strings.TrimSpace(text(b))
		if i, err := strconv.ParseInt(t, 10, 64); err == nil {
			s.setAttr(ext, i)
		} else {
			s.setAttr(ext, t)
		}
	default:
		putPayload(&it.Latents, &Payload{Name: ext, Data: b})
	}
}

// isMask: "mask.<image ext>", "<name>.mask.<image ext>", or the configured mask_suffix.
func (w *WebDataset) isMask(lower, last string) bool {
	if w.maskSuffix != "" && (lower == w.maskSuffix || strings.HasSuffix(lower, "."+w.maskSuffix)) {
		return true
	}
	if !ImageExtensions["."+last] {
		return false
	}
	stem := strings.TrimSuffix(lower, "."+last)
	return stem == "mask" || strings.HasSuffix(stem, ".mask")
}

// text frees b and returns its bytes as a valid UTF-8 string.
func text(b cmem.Buf) string {
	s := string(b.Bytes())
	b.Free()
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

func (s *sample) setAttr(k string, v any) {
	if s.attrs == nil {
		s.attrs = map[string]any{}
	}
	s.attrs[k] = v
}

// finish sends a completed sample (ok) or skips it; err is ctx.Err() when cancelled.
func (w *WebDataset) finish(ctx context.Context, sh shard, s *sample, out chan<- *Item) (bool, error) {
	it := s.it
	reason := s.skip
	w.promoteReference(it)
	if reason == "" && it.Image == nil {
		reason = errs.ReasonNoReference
	}
	if reason != "" {
		it.Free()
		w.skip(reason)
		slog.Warn("datago: webdataset: skipping sample", "shard", sh.loc, "key", it.ID, "reason", reason,
			"reference_image_type", strings.Join(w.refs, ";"))
		if w.seeded { // a tombstone: the sample's place in the stream stays (resume keeps it decided)
			return false, Send(ctx, out, &Item{ID: it.ID, Source: it.Source, Shard: it.Shard, Entry: it.Entry, Failed: true})
		}
		return false, nil
	}
	if len(s.attrs) > 0 {
		var sb strings.Builder
		enc := json.NewEncoder(&sb)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(s.attrs); err != nil { // cannot happen with decoded JSON values
			it.Free()
			w.skip(errs.ReasonMetadata)
			return false, nil
		}
		it.AttributesJSON = strings.TrimSuffix(sb.String(), "\n")
	}
	if err := Send(ctx, out, it); err != nil {
		return false, err
	}
	return true, nil
}

// promoteReference makes the sample's entry of the most preferred reference extension its image
// (taken out of the additional images, where add filed every candidate).
func (w *WebDataset) promoteReference(it *Item) {
	for _, ref := range w.refs {
		for i, p := range it.AdditionalImages {
			if strings.ToLower(p.Name) == ref {
				it.AdditionalImages = slices.Delete(it.AdditionalImages, i, i+1)
				p.Name = ""
				it.Image = p
				return
			}
		}
	}
}
