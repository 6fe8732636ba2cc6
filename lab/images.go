package lab

import (
	"archive/tar"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The lab's real nodes run images that `make images` builds into bin/images
// as OCI tarballs; each node's containerd imports them all, so nothing is
// ever pulled. The lab finds what each tarball holds from its index.json.

// Image is one image tarball and the reference it carries.
type Image struct {
	Path string
	Ref  string
}

// Images are the tarballs of a folder, by reference.
type Images []Image

// FindImages reads the reference of every *.tar in dir.
func FindImages(dir string) (Images, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		return nil, fmt.Errorf("no image tarballs in %s: run `make images`", dir)
	}
	sort.Strings(paths)
	var out Images
	for _, p := range paths {
		ref, err := imageRef(p)
		if err != nil {
			return nil, err
		}
		out = append(out, Image{Path: p, Ref: ref})
	}
	return out, nil
}

// imageRef is the name an OCI image tarball gives its one image
// (io.containerd.image.name, as ctr import reads it).
func imageRef(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return "", fmt.Errorf("%s: no index.json: not an OCI image layout (rebuild it with `make images`)", path)
		}
		if err != nil {
			return "", fmt.Errorf("%s: %w", path, err)
		}
		if strings.TrimPrefix(h.Name, "./") != "index.json" {
			continue
		}
		var idx struct {
			Manifests []struct {
				Annotations map[string]string `json:"annotations"`
			} `json:"manifests"`
		}
		if err := json.NewDecoder(io.LimitReader(tr, 1<<20)).Decode(&idx); err != nil {
			return "", fmt.Errorf("%s: index.json: %w", path, err)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Annotations["io.containerd.image.name"] == "" {
			return "", fmt.Errorf("%s: index.json names no image (want one manifest with io.containerd.image.name)", path)
		}
		return idx.Manifests[0].Annotations["io.containerd.image.name"], nil
	}
}

// Named is the image whose repository ends with /name (or is name).
func (im Images) Named(name string) (Image, error) {
	for _, i := range im {
		if repo, _ := splitRef(i.Ref); repo == name || strings.HasSuffix(repo, "/"+name) {
			return i, nil
		}
	}
	return Image{}, fmt.Errorf("no image %s among %d tarballs: run `make images`", name, len(im))
}

// splitRef splits a reference into repository and tag.
func splitRef(ref string) (repo, tag string) {
	if at := strings.LastIndex(ref, ":"); at > strings.LastIndex(ref, "/") {
		return ref[:at], ref[at+1:]
	}
	return ref, "latest"
}
