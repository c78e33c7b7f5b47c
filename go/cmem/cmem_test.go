package cmem

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"
)

// A size hint comes from untrusted input (a tar header, a Content-Length): an absurd one must
// neither panic nor allocate it; the data read decides the size.
func TestReadAllDistrustsTheSizeHint(t *testing.T) {
	before := Live()
	for _, hint := range []int64{math.MaxInt64, math.MaxInt64 - 1, 1 << 40, -1, 0, 3} {
		b, err := ReadAll(strings.NewReader("hello"), hint, 0)
		if err != nil {
			t.Fatalf("hint %d: %v", hint, err)
		}
		if !bytes.Equal(b.Bytes(), []byte("hello")) {
			t.Errorf("hint %d: read %q", hint, b.Bytes())
		}
		b.Free()
	}
	// with a byte cap, a hint above it is refused before any read
	if _, err := ReadAll(strings.NewReader("hello"), math.MaxInt64, 1000); !errors.Is(err, ErrTooLarge) {
		t.Errorf("hint above the cap: %v", err)
	}
	if Live() != before {
		t.Errorf("%d buffers live, want %d", Live(), before)
	}
}
