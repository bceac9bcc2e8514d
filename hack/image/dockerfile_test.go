package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestDockerfileMatchesBuilder keeps the Dockerfile and `make image` equal:
// the final stage runs the same binary path as the same user, with the same
// OCI label keys and fixed label values, and the binary carries its version.
func TestDockerfileMatchesBuilder(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	// Join continuation lines, then keep the last stage only.
	text := strings.ReplaceAll(string(raw), "\\\n", " ")
	stages := regexp.MustCompile(`(?m)^FROM `).Split(text, -1)
	final := stages[len(stages)-1]
	if !strings.Contains(stages[len(stages)-2], "-X main.version=${VERSION}") {
		t.Error("the Dockerfile's build stage does not set main.version, as make image does")
	}

	var users, entrypoints []string
	gotLabels := map[string]string{}
	for _, line := range strings.Split(final, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case strings.HasPrefix(line, "USER "):
			users = append(users, strings.TrimSpace(strings.TrimPrefix(line, "USER ")))
		case strings.HasPrefix(line, "ENTRYPOINT "):
			var ep []string
			if err := json.Unmarshal([]byte(strings.TrimPrefix(line, "ENTRYPOINT ")), &ep); err != nil {
				t.Fatalf("ENTRYPOINT is not in exec form: %v", err)
			}
			entrypoints = append(entrypoints, ep...)
		case strings.HasPrefix(line, "LABEL "):
			for _, m := range regexp.MustCompile(`([\w.]+)="([^"]*)"`).FindAllStringSubmatch(line, -1) {
				gotLabels[m[1]] = m[2]
			}
		case strings.HasPrefix(line, "COPY --from=build "):
			if f := strings.Fields(line); f[len(f)-1] != binaryPath {
				t.Errorf("the Dockerfile copies the binary to %s, make image to %s", f[len(f)-1], binaryPath)
			}
		}
	}
	if !slices.Equal(users, []string{user}) {
		t.Errorf("Dockerfile USER %v, make image %q", users, user)
	}
	if !slices.Equal(entrypoints, []string{binaryPath}) {
		t.Errorf("Dockerfile ENTRYPOINT %v, make image [%q]", entrypoints, binaryPath)
	}
	want := labels("${VERSION}", "${REVISION}", "${CREATED}")
	if len(gotLabels) != len(want) {
		t.Errorf("Dockerfile labels %v, make image %v", gotLabels, want)
	}
	for k, v := range want {
		if gotLabels[k] != v {
			t.Errorf("Dockerfile label %s=%q, make image %q", k, gotLabels[k], v)
		}
	}
}

// TestImage builds an image from a fake binary and checks what a runtime
// sees: the user, entrypoint, labels, and exactly the files it should hold,
// byte for byte reproducible.
func TestImage(t *testing.T) {
	dir := t.TempDir()
	bin, ca := filepath.Join(dir, "manager"), filepath.Join(dir, "ca.crt")
	if err := os.WriteFile(bin, []byte("\x7fELF fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	created := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	o := options{binary: bin, caBundle: ca, version: "1.2.3", revision: "abc", created: created.Format(time.RFC3339), arch: "amd64"}
	img, err := image(o, created)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Config.User != user || !slices.Equal(cfg.Config.Entrypoint, []string{binaryPath}) || cfg.OS != "linux" {
		t.Errorf("config: user %q entrypoint %v os %q", cfg.Config.User, cfg.Config.Entrypoint, cfg.OS)
	}
	if cfg.Config.Labels[labelVersion] != "1.2.3" || cfg.Config.Labels[labelRevision] != "abc" || cfg.Config.Labels[labelCreated] != "2026-12-01T12:00:00Z" {
		t.Errorf("labels: %v", cfg.Config.Labels)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("want one layer, got %d (%v)", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = rc.Close() }()
	var files []string
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeReg {
			files = append(files, "/"+h.Name)
			if h.Name == "etc/passwd" {
				b, _ := io.ReadAll(tr)
				if !bytes.Contains(b, []byte(":65532:65532:")) {
					t.Errorf("/etc/passwd has no user 65532: %q", b)
				}
			}
		}
	}
	if want := []string{"/etc/passwd", "/etc/group", caBundlePath, binaryPath}; !slices.Equal(files, want) {
		t.Errorf("image files %v, want %v", files, want)
	}
	again, err := image(o, created)
	if err != nil {
		t.Fatal(err)
	}
	d1, _ := img.Digest()
	d2, _ := again.Digest()
	if d1 != d2 {
		t.Errorf("the same inputs gave two digests: %s, %s", d1, d2)
	}
}
