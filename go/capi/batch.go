package main

/*
#include <stdint.h>
#include <stdlib.h>
#include "datago.h"

// the header's "const char *" parameter (see main.go's datago_cchar)
typedef const char datago_cchar2;
*/
import "C"

import (
	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/pipeline"
)

//export datago_client_get_batch
func datago_client_get_batch(h C.uint64_t, timeoutS C.double, out **C.datago_batch, errOut *C.datago_error) C.int32_t {
	p, timeout, ok := getPrologue("datago_client_get_batch", h, timeoutS, out == nil, errOut)
	if !ok {
		return C.int32_t(pipeline.StatusError)
	}
	b, status, err := p.NextBatch(timeout)
	switch status {
	case pipeline.StatusSample:
		*out = (*C.datago_batch)(b.Ptr())
	case pipeline.StatusError:
		setErr(errOut, err)
	}
	return C.int32_t(status)
}

//export datago_client_state
func datago_client_state(h C.uint64_t, errOut *C.datago_error) *C.char {
	p := lookup(h)
	if p == nil {
		setErr(errOut, errBadHandle)
		return nil
	}
	js, err := p.State()
	if err != nil {
		setErr(errOut, err)
		return nil
	}
	return C.CString(string(js))
}

//export datago_client_load_state
func datago_client_load_state(h C.uint64_t, state *C.datago_cchar2, errOut *C.datago_error) C.int32_t {
	p := lookup(h)
	if p == nil {
		setErr(errOut, errBadHandle)
		return -1
	}
	if state == nil {
		setErr(errOut, errs.Errorf(errs.Value, "datago_client_load_state: state_json is NULL"))
		return -1
	}
	if err := p.LoadState([]byte(C.GoString((*C.char)(state)))); err != nil {
		setErr(errOut, err)
		return -1
	}
	return 0
}

//export datago_client_set_epoch
func datago_client_set_epoch(h C.uint64_t, epoch C.int64_t, errOut *C.datago_error) C.int32_t {
	p := lookup(h)
	if p == nil {
		setErr(errOut, errBadHandle)
		return -1
	}
	if err := p.SetEpoch(int64(epoch)); err != nil {
		setErr(errOut, err)
		return -1
	}
	return 0
}
