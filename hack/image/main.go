// Command image builds the operator's container image without a Docker daemon
// or a registry: one layer holding the static manager binary, the CA bundle
// and the passwd/group entries of a non-root user, on an empty base, written
// as a docker-archive tarball that `docker load`, `ctr images import` and
// `kind load image-archive` accept. `make image` runs it.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/linux/manager", "The static manager binary to put in the image.")
	flag.StringVar(&o.caBundle, "ca-bundle", "/etc/ssl/certs/ca-certificates.crt", "CA bundle to ship (Debian's ca-certificates).")
	flag.StringVar(&o.tag, "tag", "", "Image reference, with a tag other than latest, e.g. ghcr.io/visio-dev/visio-operator:0.1.0.")
	flag.StringVar(&o.version, "version", "", "Version label.")
	flag.StringVar(&o.revision, "revision", "", "Source revision label (git commit).")
	flag.StringVar(&o.created, "created", "", "Creation time, RFC 3339 (the commit time keeps the image reproducible).")
	flag.StringVar(&o.arch, "arch", runtime.GOARCH, "Architecture of the binary.")
	flag.StringVar(&o.out, "o", "bin/visio-operator-image.tar", "Output docker-archive tarball.")
	flag.Parse()
	if err := build(o); err != nil {
		fmt.Fprintln(os.Stderr, "image:", err)
		os.Exit(1)
	}
}

type options struct {
	binary, caBundle, tag, version, revision, created, arch, out string
}

func build(o options) error {
	ref, err := name.NewTag(o.tag, name.StrictValidation)
	if err != nil {
		return fmt.Errorf("-tag: %w", err)
	}
	if ref.TagStr() == "latest" {
		return fmt.Errorf("-tag %s: use a version tag; with latest, Kubernetes pulls the image from a registry instead of using the imported one", o.tag)
	}
	created, err := time.Parse(time.RFC3339, o.created)
	if err != nil {
		return fmt.Errorf("-created: %w", err)
	}
	img, err := image(o, created)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(o.out, ref, img); err != nil {
		return fmt.Errorf("cannot write %s: %w", o.out, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return err
	}
	fmt.Printf("image %s (%s) written to %s\n", ref, digest, o.out)
	return nil
}

// image assembles the image from the options.
func image(o options, created time.Time) (v1.Image, error) {
	bin, err := os.ReadFile(o.binary)
	if err != nil {
		return nil, fmt.Errorf("cannot read the manager binary: %w", err)
	}
	if !bytes.HasPrefix(bin, []byte("\x7fELF")) {
		return nil, fmt.Errorf("%s is not a Linux binary", o.binary)
	}
	ca, err := os.ReadFile(o.caBundle)
	if err != nil {
		return nil, fmt.Errorf("cannot read the CA bundle (apt-get install ca-certificates): %w", err)
	}
	layerTar, err := layerTarball(created, []file{
		{path: "etc/", mode: 0o755, dir: true},
		{path: "etc/passwd", mode: 0o644, data: []byte(passwd)},
		{path: "etc/group", mode: 0o644, data: []byte(group)},
		{path: "etc/ssl/", mode: 0o755, dir: true},
		{path: "etc/ssl/certs/", mode: 0o755, dir: true},
		{path: strings.TrimPrefix(caBundlePath, "/"), mode: 0o644, data: ca},
		{path: "home/", mode: 0o755, dir: true},
		{path: "home/nonroot/", mode: 0o700, dir: true, owner: 65532},
		{path: strings.TrimPrefix(binaryPath, "/"), mode: 0o755, data: bin},
	})
	if err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerTar)), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer, History: v1.History{
		Created: v1.Time{Time: created}, CreatedBy: "hack/image", Comment: "manager, CA bundle, non-root user",
	}})
	if err != nil {
		return nil, err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = "linux", o.arch
	cfg.Created = v1.Time{Time: created}
	cfg.Config = v1.Config{
		User:       user,
		Entrypoint: []string{binaryPath},
		WorkingDir: "/",
		Env:        []string{"PATH=/", "SSL_CERT_FILE=" + caBundlePath},
		Labels:     labels(o.version, o.revision, o.created),
	}
	return mutate.ConfigFile(img, cfg)
}

// labels are the OCI labels of the image.
func labels(version, revision, created string) map[string]string {
	return map[string]string{
		labelTitle:    title,
		labelSource:   source,
		labelVersion:  version,
		labelRevision: revision,
		labelCreated:  created,
	}
}

type file struct {
	path  string
	mode  int64
	dir   bool
	owner int
	data  []byte
}

// layerTarball writes the files into one tar stream, every entry stamped with
// the same time so the same inputs give the same layer digest.
func layerTarball(mtime time.Time, files []file) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, f := range files {
		h := &tar.Header{Name: f.path, Mode: f.mode, ModTime: mtime, Uid: f.owner, Gid: f.owner, Format: tar.FormatPAX}
		if f.dir {
			h.Typeflag = tar.TypeDir
		} else {
			h.Typeflag, h.Size = tar.TypeReg, int64(len(f.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(f.data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
