package main

import (
	"archive/tar"
	"bytes"
	"fmt"
	"os"
	"path"
	"sort"
	"strings"
	"time"
)

// file is one entry of a layer: a regular file read from the host or given
// as data, a symbolic link, or a folder.
type file struct {
	path string // in the image, absolute
	src  string // on the host; symbolic links are followed
	data []byte // instead of src
	mode int64
	// link makes the entry a symbolic link to this target (the toolbox's
	// busybox applets).
	link string
	// dir makes the entry a folder of mode, for a folder that must exist
	// with a mode other than 0755 (the toolbox's /tmp).
	dir bool
	// xattrs are the file's extended attributes, written as PAX records
	// SCHILY.xattr.<name>, as containerd and docker read them: CoreDNS's
	// file capability.
	xattrs map[string]string
}

// layerTar makes a layer's tar: the entries and their parent folders,
// sorted, owned by root, every time set to mtime, so it depends on contents
// alone.
func layerTar(files []file, mtime time.Time) ([]byte, error) {
	dirs := map[string]bool{}
	byPath := map[string]file{}
	for _, f := range files {
		if _, dup := byPath[f.path]; dup {
			return nil, fmt.Errorf("%s twice in one layer", f.path)
		}
		byPath[f.path] = f
		for d := path.Dir(f.path); d != "/"; d = path.Dir(d) {
			dirs[d] = true
		}
	}
	var names []string
	for d := range dirs {
		if f, ok := byPath[d]; ok && !f.dir {
			return nil, fmt.Errorf("%s is both a folder and a file", d)
		}
		if _, ok := byPath[d]; !ok {
			names = append(names, d)
		}
	}
	for p := range byPath {
		names = append(names, p)
	}
	sort.Strings(names)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, n := range names {
		hdr := &tar.Header{Name: strings.TrimPrefix(n, "/"), ModTime: mtime, Format: tar.FormatPAX, Uname: "root", Gname: "root"}
		f, ok := byPath[n]
		switch {
		case !ok || f.dir:
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, hdr.Name+"/", 0o755
			if ok {
				hdr.Mode = f.mode
			}
		case f.link != "":
			hdr.Typeflag, hdr.Linkname, hdr.Mode = tar.TypeSymlink, f.link, 0o777
		default:
			hdr.Typeflag, hdr.Mode = tar.TypeReg, f.mode
		}
		for k, v := range f.xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if hdr.Typeflag != tar.TypeReg {
			if err := tw.WriteHeader(hdr); err != nil {
				return nil, err
			}
			continue
		}
		data := f.data
		if data == nil {
			var err error
			if data, err = os.ReadFile(f.src); err != nil {
				return nil, err
			}
		}
		hdr.Size = int64(len(data))
		if err := tw.WriteHeader(hdr); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
