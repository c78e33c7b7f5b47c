package source

import (
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/datago-dev/datago/go/errs"
)

// dbLocalRoot maps the file URLs under an HTTP prefix to a folder on this machine
// (source_config.local_roots): a row's image or latent URL under the prefix is read from the
// folder, never requested. The engine sets it when its server and the files are on the same
// machine as the core (python/datago/engine/results.py, ml_dataset_config).
type dbLocalRoot struct {
	scheme, host string // lower case
	path         string // escaped URL path of the prefix, ending in "/"
	dir          string // the folder as configured (absolute, cleaned)
	real         string // the folder with its symlinks resolved
}

// parseLocalRoots validates source_config.local_roots: {"http(s)://host/prefix/": "/abs/dir"}.
// Longer prefixes are tried first.
func parseLocalRoots(m map[string]string) ([]dbLocalRoot, error) {
	bad := func(format string, a ...any) error {
		return errs.Errorf(errs.Value, "config key source_config.local_roots: "+format, a...)
	}
	out := make([]dbLocalRoot, 0, len(m))
	for prefix, dir := range m {
		u, err := url.Parse(strings.TrimSpace(prefix))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, bad("%q is not an http(s) URL prefix", prefix)
		}
		if u.RawQuery != "" || u.Fragment != "" || u.User != nil || !strings.HasSuffix(u.EscapedPath(), "/") {
			return nil, bad("the URL prefix %q must end in \"/\" and have no query, fragment or user", prefix)
		}
		if !filepath.IsAbs(dir) {
			return nil, bad("the folder of %q must be an absolute path, got %q", prefix, dir)
		}
		dir = filepath.Clean(dir)
		real, err := filepath.EvalSymlinks(dir)
		if err == nil {
			var st os.FileInfo
			if st, err = os.Stat(real); err == nil && !st.IsDir() {
				err = errors.New("not a directory")
			}
		}
		if err != nil {
			return nil, bad("the folder %q of %q: %v", dir, prefix, err)
		}
		out = append(out, dbLocalRoot{
			scheme: strings.ToLower(u.Scheme), host: strings.ToLower(u.Host), path: u.EscapedPath(), dir: dir, real: real,
		})
	}
	sort.Slice(out, func(i, j int) bool { return len(out[i].path) > len(out[j].path) })
	return out, nil
}

// errLeavesRoot is the reason a URL under a local root is refused: its path would leave the folder.
var errLeavesRoot = errors.New("the path leaves the local root")

// localPath is the file a URL names under one of the local roots: ("", nil) when no root's
// prefix matches (the URL is fetched over HTTP); an error when the path would leave the folder
// ("..", an absolute or empty path, a symlink leading outside) or cannot be decoded. A file that
// does not exist keeps its path, so the fetch stage reports it as for any missing file.
func (d *DB) localPath(u *url.URL) (string, error) {
	if len(d.localRoots) == 0 {
		return "", nil
	}
	scheme, host, p := strings.ToLower(u.Scheme), strings.ToLower(u.Host), u.EscapedPath()
	for i := range d.localRoots {
		r := &d.localRoots[i]
		if scheme != r.scheme || host != r.host || !strings.HasPrefix(p, r.path) {
			continue
		}
		rel, err := url.PathUnescape(p[len(r.path):])
		if err != nil {
			return "", err
		}
		if rel == "" || strings.ContainsRune(rel, 0) || strings.Contains(rel, `\`) || !filepath.IsLocal(rel) {
			return "", errLeavesRoot
		}
		full := filepath.Join(r.dir, filepath.FromSlash(rel))
		real, err := filepath.EvalSymlinks(full)
		if errors.Is(err, fs.ErrNotExist) {
			return full, nil
		}
		if err != nil {
			return "", err
		}
		if !strings.HasPrefix(real, strings.TrimSuffix(r.real, string(filepath.Separator))+string(filepath.Separator)) {
			return "", errLeavesRoot
		}
		return real, nil
	}
	return "", nil
}
