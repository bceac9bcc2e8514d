// Package prometheus holds the tests of the chart's alerting rules and a
// helper that finds the Prometheus binaries (promtool, prometheus) for them
// and for the integration tests.
package prometheus

import (
	"os"
	"os/exec"
	"sync"
	"testing"
)

var installOnce sync.Once

// Binary returns the path of promtool or prometheus. When it is missing and
// the tests run as root (CI), it installs the Debian package prometheus, which
// ships both; elsewhere the test is skipped and says how to get it.
func Binary(t testing.TB, name string) string {
	t.Helper()
	if path, err := exec.LookPath(name); err == nil {
		return path
	}
	if os.Geteuid() == 0 {
		installOnce.Do(func() {
			for _, args := range [][]string{{"update"}, {"install", "-y", "--no-install-recommends", "prometheus"}} {
				cmd := exec.Command("apt-get", args...)
				cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
				if out, err := cmd.CombinedOutput(); err != nil {
					t.Logf("apt-get %v: %v\n%s", args, err, out)
					return
				}
			}
		})
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	t.Skipf("%s not found: install the Debian package prometheus (apt-get install prometheus), "+
		"or run the tests as root, which installs it", name)
	return ""
}
