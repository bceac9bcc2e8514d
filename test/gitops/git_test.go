//go:build gitops

package gitops

import (
	"fmt"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// platformRepo is the platform team's repository: a bare repository served
// over HTTP on the loopback by git http-backend (behind Go's CGI handler),
// and a working copy the tests commit in and push from.
type platformRepo struct {
	URL      string // what the GitRepository points to
	checkout string
	env      []string
	fetches  atomic.Int64 // requests source-controller made
	srv      *http.Server
}

// newPlatformRepo creates the repository in dir with the content of
// testdata/platform, the operator's config/ copied into operator/, and
// serves it until the suite ends.
func newPlatformRepo(dir string) (*platformRepo, error) {
	r := &platformRepo{checkout: filepath.Join(dir, "checkout"), env: append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+dir,
		"GIT_AUTHOR_NAME=Platform team", "GIT_AUTHOR_EMAIL=platform@visio.example",
		"GIT_COMMITTER_NAME=Platform team", "GIT_COMMITTER_EMAIL=platform@visio.example")}
	bare := filepath.Join(dir, "platform.git")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	if _, err := r.git(dir, "init", "--quiet", "--bare", "--initial-branch=main", bare); err != nil {
		return nil, err
	}
	if _, err := r.git(dir, "init", "--quiet", "--initial-branch=main", r.checkout); err != nil {
		return nil, err
	}
	if _, err := r.git(r.checkout, "remote", "add", "origin", bare); err != nil {
		return nil, err
	}
	if err := os.CopyFS(r.checkout, os.DirFS(filepath.Join("testdata", "platform"))); err != nil {
		return nil, err
	}
	for _, d := range []string{"crd", "rbac", "policies"} {
		if err := os.CopyFS(filepath.Join(r.checkout, "operator", d), os.DirFS(filepath.Join(root, "config", d))); err != nil {
			return nil, err
		}
	}
	if _, err := r.commit("Platform: the operator, two entities, their pools and users"); err != nil {
		return nil, err
	}

	execPath, err := r.git(dir, "--exec-path")
	if err != nil {
		return nil, err
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(execPath), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + dir, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.Method != http.MethodGet && !strings.HasSuffix(req.URL.Path, "/git-upload-pack") {
			http.Error(w, "read only", http.StatusForbidden) // fetches only: the tests push to the bare repository directly
			return
		}
		r.fetches.Add(1)
		backend.ServeHTTP(w, req)
	})}
	go func() { _ = r.srv.Serve(l) }()
	r.URL = fmt.Sprintf("http://%s/platform.git", l.Addr())
	return r, nil
}

func (r *platformRepo) close() { _ = r.srv.Close() }

func (r *platformRepo) git(dir string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir, cmd.Env = dir, r.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// write sets a file of the working copy (a path like "pools/rennes.yaml").
func (r *platformRepo) write(path, content string) error {
	full := filepath.Join(r.checkout, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		return err
	}
	return os.WriteFile(full, []byte(content), 0o644)
}

// read returns a file of the working copy.
func (r *platformRepo) read(path string) (string, error) {
	data, err := os.ReadFile(filepath.Join(r.checkout, filepath.FromSlash(path)))
	return string(data), err
}

// remove deletes a file or a directory of the working copy.
func (r *platformRepo) remove(path string) error {
	return os.RemoveAll(filepath.Join(r.checkout, filepath.FromSlash(path)))
}

// commit commits everything in the working copy, pushes it, and returns the
// revision as Flux names it (main@sha1:<commit>).
func (r *platformRepo) commit(message string) (string, error) {
	if _, err := r.git(r.checkout, "add", "--all"); err != nil {
		return "", err
	}
	if _, err := r.git(r.checkout, "commit", "--quiet", "-m", message); err != nil {
		return "", err
	}
	if _, err := r.git(r.checkout, "push", "--quiet", "origin", "main"); err != nil {
		return "", err
	}
	sha, err := r.git(r.checkout, "rev-parse", "HEAD")
	if err != nil {
		return "", err
	}
	return "main@sha1:" + strings.TrimSpace(sha), nil
}
