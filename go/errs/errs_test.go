package errs

import (
	"errors"
	"fmt"
	"testing"
)

type notFound struct{}

func (notFound) Error() string { return "GET http://x/y: 404" }
func (notFound) Kind() Kind    { return NotFound }

func TestKindOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want Kind
	}{
		{nil, None},
		{errors.New("plain"), Runtime},
		{Errorf(Value, "config key x"), Value},
		{fmt.Errorf("shard s: %w", Errorf(OS, "read")), OS},
		{fmt.Errorf("page: %w", notFound{}), NotFound}, // an error that classifies itself
		{Errorf(Closed, "closed"), Closed},
	} {
		if got := KindOf(tc.err); got != tc.want {
			t.Errorf("KindOf(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
	if d := Describe(fmt.Errorf("page: %w", notFound{})); d != "FileNotFoundError: page: GET http://x/y: 404" {
		t.Errorf("Describe %q", d)
	}
}

func TestReasonOf(t *testing.T) {
	err := fmt.Errorf("mask %q: %w", "seg", Skip(ReasonTooManyPixels, "%dx%d", 9, 9))
	if got := ReasonOf(err, ReasonTransform); got != ReasonTooManyPixels {
		t.Errorf("reason %q", got)
	}
	if got := ReasonOf(errors.New("x"), ReasonFetch); got != ReasonFetch {
		t.Errorf("default reason %q", got)
	}
	if err.Error() != `mask "seg": too_many_pixels: 9x9` {
		t.Errorf("message %q", err)
	}
}
