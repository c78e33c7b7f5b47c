// Command capi is built with -buildmode=c-shared into libdatago.so. It implements the C ABI
// declared in datago.h (the hand-written contract). The header is included in the cgo preamble
// below, and cgo copies the preamble into the prototypes it generates for the exports
// (_cgo_export.h): the C compiler then rejects any export whose signature differs from the
// header's. Handles are integers: no Go pointer ever reaches C.
package main

/*
#cgo CFLAGS: -I${SRCDIR}
#include <stdint.h>
#include <stdlib.h>
#include "datago.h"

// cgo spells a *C.char parameter "char *"; this typedef lets the exports take and return the
// header's "const char *".
typedef const char datago_cchar;
*/
import "C"

import (
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/datago-dev/datago/go/config"
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/pipeline"
	"github.com/datago-dev/datago/go/remote"
)

// Version of the library (the C ABI's version is DATAGO_ABI_VERSION in datago.h).
const Version = "0.1.0"

var (
	versionC = (*C.datago_cchar)(C.CString(Version)) // static storage for datago_version
	logLevel = new(slog.LevelVar)

	mu      sync.Mutex
	clients = map[uint64]*pipeline.Pipeline{}
	nextID  uint64
)

func init() {
	slog.SetDefault(slog.New(newLogHandler(os.Stderr, logLevel)))
	logLevel.Set(slog.LevelWarn)
	if lvl := os.Getenv("DATAGO_LOG"); lvl != "" {
		setLevel(lvl)
	} else if lvl, ok := rustLogLevel(os.Getenv("RUST_LOG")); ok { // datago's (Rust) variable
		setLevel(lvl)
	}
}

func setLevel(name string) bool {
	switch strings.ToLower(name) {
	case "debug", "trace":
		logLevel.Set(slog.LevelDebug)
	case "info":
		logLevel.Set(slog.LevelInfo)
	case "warn", "warning":
		logLevel.Set(slog.LevelWarn)
	case "error":
		logLevel.Set(slog.LevelError)
	case "off", "none":
		logLevel.Set(slog.LevelError + 100)
	default:
		return false
	}
	return true
}

// setErr reports err through the C ABI: its kind as a DATAGO_ERR_* code, and its message.
func setErr(errOut *C.datago_error, err error) {
	if errOut != nil {
		errOut.kind = C.int32_t(errs.KindOf(err))
		errOut.message = C.CString(remote.RedactText(err.Error())) // no presigned URL's signature
	}
}

func lookup(h C.uint64_t) *pipeline.Pipeline {
	mu.Lock()
	defer mu.Unlock()
	return clients[uint64(h)]
}

var errBadHandle = errs.Errorf(errs.Closed, "invalid or freed client handle")

//export datago_version
func datago_version() *C.datago_cchar { return versionC }

//export datago_abi_version
func datago_abi_version() C.int32_t { return C.DATAGO_ABI_VERSION }

//export datago_client_new
func datago_client_new(cfgJSON *C.datago_cchar, errOut *C.datago_error) C.uint64_t {
	if cfgJSON == nil {
		setErr(errOut, errs.Errorf(errs.Value, "datago_client_new: config_json is NULL"))
		return 0
	}
	cfg, err := config.Parse([]byte(C.GoString((*C.char)(cfgJSON))))
	if err != nil {
		setErr(errOut, err)
		return 0
	}
	p, err := pipeline.New(cfg)
	if err != nil {
		setErr(errOut, err)
		return 0
	}
	mu.Lock()
	defer mu.Unlock()
	nextID++
	clients[nextID] = p
	return C.uint64_t(nextID)
}

//export datago_client_start
func datago_client_start(h C.uint64_t, errOut *C.datago_error) C.int32_t {
	p := lookup(h)
	if p == nil {
		setErr(errOut, errBadHandle)
		return -1
	}
	p.Start()
	return 0
}

//export datago_client_get_sample
func datago_client_get_sample(h C.uint64_t, timeoutS C.double, out **C.datago_sample, errOut *C.datago_error) C.int32_t {
	p, timeout, ok := getPrologue("datago_client_get_sample", h, timeoutS, out == nil, errOut)
	if !ok {
		return C.int32_t(pipeline.StatusError)
	}
	s, status, err := p.Next(timeout)
	switch status {
	case pipeline.StatusSample:
		*out = (*C.datago_sample)(s.Ptr())
	case pipeline.StatusError:
		setErr(errOut, err)
	}
	return C.int32_t(status)
}

//export datago_client_stop
func datago_client_stop(h C.uint64_t) {
	if p := lookup(h); p != nil {
		p.Stop()
	}
}

//export datago_client_free
func datago_client_free(h C.uint64_t) {
	mu.Lock()
	p := clients[uint64(h)]
	delete(clients, uint64(h))
	mu.Unlock()
	if p != nil {
		p.Close() // not Stop: a get_sample that looked p up before the delete must not restart it
	}
}

//export datago_client_stats
func datago_client_stats(h C.uint64_t) *C.char {
	p := lookup(h)
	if p == nil {
		return C.CString("{}")
	}
	return C.CString(string(p.Stats().JSON()))
}

//export datago_set_log_level
func datago_set_log_level(level *C.datago_cchar) C.int32_t {
	if level != nil && setLevel(C.GoString((*C.char)(level))) {
		return 0
	}
	return -1
}

func main() {}

// getPrologue checks what get_sample and get_batch are given: a live handle and somewhere to put
// what they take (one taken with nowhere to go would leak). It converts the timeout (seconds, < 0:
// forever). On failure it sets *errOut and ok is false.
func getPrologue(name string, h C.uint64_t, timeoutS C.double, outNil bool, errOut *C.datago_error) (p *pipeline.Pipeline, timeout time.Duration, ok bool) {
	if p = lookup(h); p == nil {
		setErr(errOut, errBadHandle)
		return nil, 0, false
	}
	if outNil {
		setErr(errOut, errs.Errorf(errs.Value, "%s: out is NULL", name))
		return nil, 0, false
	}
	timeout = -1
	if timeoutS >= 0 {
		timeout = time.Duration(float64(timeoutS) * float64(time.Second))
	}
	return p, timeout, true
}
