// Package errs is datago's one error vocabulary: the kinds of user-facing errors (which exception a
// binding raises; the C ABI reports them as DATAGO_ERR_* codes) and the reasons a sample is skipped
// (the keys of stats' skipped_reasons). It imports nothing of datago, so every package can use it.
package errs

import (
	"errors"
	"fmt"
)

// Kind classifies a user-facing error. The values are the C ABI's DATAGO_ERR_* codes (datago.h).
type Kind int32

// Kinds of errors. Python raises datago.DatagoRuntimeError, ConfigError (a ValueError), NotFoundError (a
// FileNotFoundError), DatagoOSError (an OSError) and ClosedError (a RuntimeError and a ValueError).
const (
	None     Kind = 0 // no error
	Runtime  Kind = 1 // an internal failure (the default for errors that do not classify themselves)
	Value    Kind = 2 // bad config or argument
	NotFound Kind = 3 // a file, shard or URL that does not exist
	OS       Kind = 4 // an I/O or network failure
	Closed   Kind = 5 // a closed client or a freed handle
	// Permission is a refusal (HTTP 401/403, S3 AccessDenied); Python raises a PermissionError, an OSError.
	Permission Kind = 6
)

var kindNames = [...]string{"None", "RuntimeError", "ValueError", "FileNotFoundError", "OSError", "ClosedError", "PermissionError"}

// String is the kind's name (the exception it maps to).
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", int32(k))
}

// Classified is an error that knows its kind. *Error implements it; so do the HTTP layer's errors.
type Classified interface {
	error
	Kind() Kind
}

// Error is a user-facing error of a given kind.
type Error struct {
	K   Kind
	Msg string
}

func (e *Error) Error() string { return e.Msg }

// Kind is the error's kind.
func (e *Error) Kind() Kind { return e.K }

// Errorf makes an *Error of the given kind.
func Errorf(kind Kind, format string, args ...any) error {
	return &Error{K: kind, Msg: fmt.Sprintf(format, args...)}
}

// KindOf is the kind of the first error in err's chain that classifies itself, Runtime when none
// does, None for a nil err.
func KindOf(err error) Kind {
	if err == nil {
		return None
	}
	var c Classified
	if errors.As(err, &c) {
		return c.Kind()
	}
	return Runtime
}

// Reason is why a sample was skipped: the one list of names the stats report (skipped_reasons).
type Reason string

// Skip reasons.
const (
	ReasonFetch           Reason = "fetch_error"             // the bytes could not be read (I/O, HTTP)
	ReasonPayloadTooLarge Reason = "payload_too_large"       // a file, tar entry or download over max_file_bytes
	ReasonDecode          Reason = "decode_error"            // the image does not decode
	ReasonTooManyPixels   Reason = "too_many_pixels"         // width*height over image_config.max_pixels
	ReasonTransform       Reason = "transform_error"         // crop, resize, colour or re-encode failed
	ReasonCorrupt         Reason = "corrupt_data"            // damaged image data, refused by image_config.fail_on
	ReasonNoReference     Reason = "missing_reference_image" // a WebDataset sample without its reference image
	ReasonMetadata        Reason = "bad_metadata"            // a WebDataset json entry that does not parse
	ReasonTruncated       Reason = "truncated_shard"         // per shard: a truncated or corrupt tar (rest skipped)
	ReasonNoImage         Reason = "missing_image"           // db: require_images, and the row has no image URL
	ReasonBadRecord       Reason = "bad_record"              // db: a row that does not decode, has no id, or a latent without URL
)

// SkipError is a per-sample failure: the sample is skipped and counted under Reason.
type SkipError struct {
	Reason Reason
	Err    error
}

func (e *SkipError) Error() string { return string(e.Reason) + ": " + e.Err.Error() }

func (e *SkipError) Unwrap() error { return e.Err }

// Skip makes a *SkipError.
func Skip(reason Reason, format string, args ...any) error {
	return &SkipError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// ReasonOf is the skip reason of the first *SkipError in err's chain, def when there is none.
func ReasonOf(err error, def Reason) Reason {
	var se *SkipError
	if errors.As(err, &se) {
		return se.Reason
	}
	return def
}

// Describe renders err as "<Kind>: <message>" (for logs and tests; the C ABI passes the kind as a
// code next to the message).
func Describe(err error) string { return KindOf(err).String() + ": " + err.Error() }
