package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/datago-dev/datago/go/errs"
	"github.com/datago-dev/datago/go/remote"
)

// dbPage is a decoded page, or the error that ends the listing.
type dbPage struct {
	url  *url.URL
	rows []json.RawMessage
	err  error
}

// readPages follows the next links from first and sends each page (or the error that ends the
// listing) to pages, until next is null or ctx is cancelled.
func (d *DB) readPages(ctx context.Context, first string, pages chan<- dbPage) {
	send := func(pg dbPage) bool {
		select {
		case pages <- pg:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var recent recentURLs
	next := first
	n := 0
	for next != "" {
		if !recent.add(next) {
			send(dbPage{err: errs.Errorf(errs.OS, "db source: the API's next link loops back to %s", next)})
			return
		}
		u, rows, nextURL, err := d.page(ctx, next)
		if err != nil {
			if ctx.Err() == nil {
				send(dbPage{err: err})
			}
			return
		}
		n++
		if !send(dbPage{url: u, rows: rows}) {
			return
		}
		next = nextURL
	}
	slog.Debug("datago: db source: listing done", "pages", n, "first", first)
}

// recentURLs remembers the latest dbLoopWindow page URLs (a next link back to one of them is a
// loop), in fixed memory.
type recentURLs struct {
	set  map[string]struct{}
	ring []string
	i    int
}

// add remembers u; false when u is remembered already.
func (r *recentURLs) add(u string) bool {
	if _, ok := r.set[u]; ok {
		return false
	}
	if r.set == nil {
		r.set = make(map[string]struct{})
	}
	if len(r.ring) < dbLoopWindow {
		r.ring = append(r.ring, u)
	} else {
		delete(r.set, r.ring[r.i])
		r.ring[r.i] = u
		r.i = (r.i + 1) % dbLoopWindow
	}
	r.set[u] = struct{}{}
	return true
}

// dbAnswer is a page of the image API.
type dbAnswer struct {
	Next    *string         `json:"next"`
	Results json.RawMessage `json:"results"`
}

// page GETs one page and decodes it. The HTTP layer retries connection errors and retryable
// statuses; a body that breaks and cannot be resumed is fetched again from the start (pages are
// idempotent), up to the layer's retry count. next is "" on the last page.
func (d *DB) page(ctx context.Context, pageURL string) (u *url.URL, rows []json.RawMessage, next string, err error) {
	u, err = url.Parse(pageURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: invalid page URL %q", pageURL)
	}
	opts := []remote.Option{remote.WithHeader("Accept", "application/json")}
	if d.key != "" {
		if strings.EqualFold(u.Host, d.apiHost) {
			opts = append(opts, remote.WithHeader("Authorization", "Token "+d.key))
		} else {
			slog.Warn("datago: db source: a next link leaves the API's host; the API key is not sent there",
				"api_host", d.apiHost, "url", pageURL)
		}
	}
	s := d.http.Settings()
	var body []byte
	for attempt := 0; ; attempt++ {
		var broke bool
		body, broke, err = d.get(ctx, pageURL, opts)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil, nil, "", ctx.Err()
		}
		var se *remote.StatusError
		if errors.As(err, &se) {
			if uerr := d.unknownSources(se); uerr != nil {
				return nil, nil, "", uerr
			}
			return nil, nil, "", errs.Errorf(errs.OS, "db source: %v%s", se, statusHint(se.Code))
		}
		if !broke || attempt >= s.MaxRetries {
			var ce *errs.Error
			if errors.As(err, &ce) && ce.K == errs.OS && strings.HasPrefix(ce.Msg, "db source:") {
				return nil, nil, "", ce
			}
			return nil, nil, "", errs.Errorf(errs.OS, "db source: %v", err)
		}
		wait := d.http.Backoff(attempt)
		slog.Debug("datago: db source: page body broke, fetching it again", "url", pageURL, "wait", wait, "error", err)
		if err := remote.Sleep(ctx, wait); err != nil {
			return nil, nil, "", err
		}
	}
	var ans dbAnswer
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: the answer is not valid JSON: %v (%s)", pageURL, err, snippet(body))
	}
	if len(ans.Results) == 0 {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: the answer has no \"results\" (is %s the dataroom API root?): %s",
			pageURL, strings.TrimSuffix(strings.TrimSuffix(d.images, "random/"), "images/"), snippet(body))
	}
	if err := json.Unmarshal(ans.Results, &rows); err != nil {
		return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: \"results\" is not a list: %v", pageURL, err)
	}
	if ans.Next != nil && strings.TrimSpace(*ans.Next) != "" {
		nu, err := u.Parse(strings.TrimSpace(*ans.Next)) // a relative link is resolved against the page
		if err != nil || (nu.Scheme != "http" && nu.Scheme != "https") {
			return nil, nil, "", errs.Errorf(errs.OS, "db source: GET %s: invalid next link %q", pageURL, *ans.Next)
		}
		next = nu.String()
	}
	return u, rows, next, nil
}

// get reads a whole page body (capped at dbMaxPageBytes). broke reports a body that failed
// while being read (after the HTTP layer's resume attempts): the page may be asked for again.
func (d *DB) get(ctx context.Context, pageURL string, opts []remote.Option) (body []byte, broke bool, err error) {
	st, err := d.http.Open(ctx, pageURL, opts...)
	if err != nil {
		return nil, false, err
	}
	defer st.Close()
	if st.Size() > dbMaxPageBytes {
		return nil, false, errs.Errorf(errs.OS, "db source: GET %s: a page of %d bytes is larger than %d", pageURL, st.Size(), dbMaxPageBytes)
	}
	body, err = io.ReadAll(io.LimitReader(st, dbMaxPageBytes+1))
	if err != nil {
		if ctx.Err() != nil {
			return nil, false, ctx.Err()
		}
		var re *remote.Error
		if errors.As(err, &re) {
			return nil, true, re // its message names the URL
		}
		return nil, true, fmt.Errorf("GET %s: reading the answer: %w", pageURL, err)
	}
	if len(body) > dbMaxPageBytes {
		return nil, false, errs.Errorf(errs.OS, "db source: GET %s: a page is larger than %d bytes", pageURL, dbMaxPageBytes)
	}
	return body, false, nil
}

// unknownSourceMarker starts the engine server's 404 for a datasource name it does not have.
const unknownSourceMarker = "no datasource named"

// unknownSources is the ValueError for a 404 that says a datasource of source_config.sources does
// not exist (datago's engine server: "no datasource named 'x' (known: ...)"), naming the names
// the answer quotes (all of sources when it quotes none of them); nil for any other answer.
func (d *DB) unknownSources(se *remote.StatusError) error {
	if se.Code != http.StatusNotFound || !strings.Contains(se.Body, unknownSourceMarker) {
		return nil
	}
	var all, named []string
	for _, n := range strings.Split(d.query.Get("sources"), ",") {
		if n = strings.TrimSpace(n); n != "" {
			all = append(all, n)
			if strings.Contains(se.Body, "'"+n+"'") || strings.Contains(se.Body, `"`+n+`"`) {
				named = append(named, n)
			}
		}
	}
	if len(all) == 0 {
		return nil
	}
	if len(named) == 0 {
		named = all
	}
	quoted := make([]string, len(named))
	for i, n := range named {
		quoted[i] = strconv.Quote(n)
	}
	return errs.Errorf(errs.Value, "config key source_config.sources: the server has no datasource %s (%s)",
		strings.Join(quoted, ", "), remote.RedactText(se.Body))
}

func statusHint(code int) string {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return " (check " + EnvDataroomKey + " or source_config.api_key)"
	case http.StatusNotFound:
		return " (check " + EnvDataroomURL + " or source_config.api_url: the API root, like http://host:port/api/)"
	case http.StatusBadRequest:
		return " (the server refused a parameter: check the filters of source_config)"
	}
	return ""
}

// snippet is the start of a body, for error messages.
func snippet(b []byte) string {
	const n = 200
	s := strings.ToValidUTF8(string(b[:min(len(b), n)]), "\uFFFD")
	if len(b) > n {
		s += "..."
	}
	return strconv.Quote(s)
}
