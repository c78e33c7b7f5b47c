package source

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/datago-dev/datago/go/errs"
)

// The files under a local root's URL prefix are read from the folder (Payload.Path), the others
// still over HTTP; a path leaving the folder ("..", encoded "..", a symlink out) skips the row.
func TestDBLocalRootsReadFiles(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "sub dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a.jpg", "sub dir/b c.jpg", "seg.png"} {
		if err := os.WriteFile(filepath.Join(dir, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(outside, "secret.jpg"), []byte("secret"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.jpg"), filepath.Join(dir, "link.jpg")); err != nil {
		t.Fatal(err)
	}
	var f *fakeRoom
	f = newFakeRoom(t, nil)
	files := f.srv.URL + "/files/7/"
	f.rows = []map[string]any{
		{"id": "a", "image_direct_url": files + "a.jpg?exp=1&sig=x"},
		{"id": "b", "image_direct_url": files + "sub%20dir/b%20c.jpg?exp=1&sig=x",
			"latents": []map[string]any{{"latent_type": "seg", "file_direct_url": "/files/7/seg.png?sig=y", "is_mask": true}}},
		{"id": "missing", "image_direct_url": files + "nope.jpg"},
		{"id": "other-ds", "image_direct_url": f.srv.URL + "/files/8/a.jpg"},
		{"id": "dotdot", "image_direct_url": files + "sub%20dir/%2E%2E/%2E%2E/" + filepath.Base(outside) + "/secret.jpg"},
		{"id": "symlink-out", "image_direct_url": files + "link.jpg"},
		{"id": "empty", "image_direct_url": files},
	}
	d, _ := mustDB(t, f.config(map[string]any{"has_masks": "seg", "local_roots": map[string]string{files: dir}}), nil)
	items, err := dbRun(t, context.Background(), d)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := itemIDs(items), []string{"a", "b", "missing", "other-ds"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ids %v, want %v", got, want)
	}
	real, _ := filepath.EvalSymlinks(dir)
	want := []Payload{
		{Path: filepath.Join(real, "a.jpg")},
		{Path: filepath.Join(real, "sub dir", "b c.jpg")},
		{Path: filepath.Join(dir, "nope.jpg")},
		{URL: f.srv.URL + "/files/8/a.jpg"},
	}
	for i, it := range items {
		if got := *it.Image; got.Path != want[i].Path || got.URL != want[i].URL {
			t.Errorf("%s: image %+v, want %+v", it.ID, got, want[i])
		}
	}
	if m := items[1].Masks; len(m) != 1 || m[0].Name != "seg" || m[0].Path != filepath.Join(real, "seg.png") || m[0].URL != "" {
		t.Errorf("mask %+v", m)
	}
	if got, want := d.Skipped(), map[string]int64{string(errs.ReasonBadRecord): 3}; !reflect.DeepEqual(got, want) {
		t.Errorf("skipped %v, want %v", got, want)
	}
}

func TestDBLocalRootsConfig(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	api := "http://127.0.0.1:9/api/"
	for _, roots := range []map[string]any{
		{"ftp://h/files/": dir},
		{"http://h/files": dir},
		{"http://h/files/?x=1": dir},
		{"http://h/files/": "relative/dir"},
		{"http://h/files/": filepath.Join(dir, "absent")},
		{"http://h/files/": file},
		{"http://h/files/": 3},
	} {
		_, _, err := newDBSource(t, map[string]any{"api_url": api, "local_roots": roots}, nil)
		if errs.KindOf(err) != errs.Value || !strings.Contains(err.Error(), "source_config.local_roots") {
			t.Errorf("%v: %v, want a ValueError naming source_config.local_roots", roots, err)
		}
	}
	if _, _, err := newDBSource(t, map[string]any{"api_url": api, "local_roots": map[string]any{"http://h/files/": dir}}, nil); err != nil {
		t.Errorf("a valid local root: %v", err)
	}
}
