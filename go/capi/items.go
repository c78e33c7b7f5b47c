package main

/*
#include <stdint.h>
#include <stdlib.h>
#include "datago.h"

// the header's "const int64_t *" parameter (cgo would spell *C.int64_t "int64_t *")
typedef const int64_t datago_cint64;
*/
import "C"

import (
	"encoding/json"
	"unsafe"

	"github.com/datago-dev/datago/go/errs"
)

//export datago_client_len
func datago_client_len(h C.uint64_t, errOut *C.datago_error) C.int64_t {
	p := lookup(h)
	if p == nil {
		setErr(errOut, errBadHandle)
		return -1
	}
	n, err := p.Len()
	if err != nil {
		setErr(errOut, err)
		return -1
	}
	return C.int64_t(n)
}

//export datago_client_get_items
func datago_client_get_items(h C.uint64_t, indices *C.datago_cint64, n C.int32_t, out **C.datago_sample, errOut *C.datago_error) C.int32_t {
	p := lookup(h)
	if p == nil {
		setErr(errOut, errBadHandle)
		return -1
	}
	if n < 0 || (n > 0 && (indices == nil || out == nil)) {
		setErr(errOut, errs.Errorf(errs.Value, "datago_client_get_items: n < 0, or indices / out is NULL"))
		return -1
	}
	if n == 0 {
		return 0
	}
	idx := make([]int64, int(n)) // a Go copy: the caller's array is not kept
	for k, i := range unsafe.Slice((*int64)(unsafe.Pointer(indices)), int(n)) {
		idx[k] = i
	}
	samples, made, err := p.GetItems(idx)
	if err != nil {
		setErr(errOut, err)
		return -1
	}
	dst := unsafe.Slice(out, int(n)) // C memory of the caller: C pointers are stored in it
	for k, s := range samples {
		dst[k] = (*C.datago_sample)(s.Ptr())
	}
	return C.int32_t(made)
}

//export datago_client_index
func datago_client_index(h C.uint64_t, errOut *C.datago_error) *C.char {
	p := lookup(h)
	if p == nil {
		setErr(errOut, errBadHandle)
		return nil
	}
	entries, err := p.IndexEntries()
	if err != nil {
		setErr(errOut, err)
		return nil
	}
	js, err := json.Marshal(entries)
	if err != nil {
		setErr(errOut, errs.Errorf(errs.Runtime, "datago_client_index: %v", err))
		return nil
	}
	return C.CString(string(js))
}
