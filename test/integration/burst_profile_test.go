package integration

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"syscall"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"
)

// profilePhase profiles a phase of the burst when BURST_PROFILE names a
// directory: the kube-apiserver (its /debug/pprof/profile) and this process
// (the clients and the manager under test) for the first seconds of the
// phase. The function it returns waits for both and writes
// name-apiserver.pprof and name-process.pprof there, for go tool pprof.
// Without BURST_PROFILE it does nothing.
func profilePhase(g Gomega, name string, seconds int) (stop func()) {
	dir := os.Getenv("BURST_PROFILE")
	if dir == "" {
		return func() {}
	}
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	apiserver := make(chan []byte, 1)
	go func() {
		raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/debug/pprof/profile").
			Param("seconds", fmt.Sprint(seconds)).DoRaw(ctx())
		if err != nil {
			raw = nil
		}
		apiserver <- raw
	}()
	process := &bytes.Buffer{}
	g.Expect(pprof.StartCPUProfile(process)).To(Succeed())
	processDone := time.AfterFunc(time.Duration(seconds)*time.Second, pprof.StopCPUProfile)
	return func() {
		if processDone.Stop() {
			pprof.StopCPUProfile()
		}
		raw := <-apiserver
		g.Expect(raw).NotTo(BeEmpty(), "kube-apiserver profile")
		g.Expect(os.WriteFile(filepath.Join(dir, name+"-apiserver.pprof"), raw, 0o600)).To(Succeed())
		g.Expect(os.WriteFile(filepath.Join(dir, name+"-process.pprof"), process.Bytes(), 0o600)).To(Succeed())
	}
}

// processCPU is the CPU time this process (the clients, and the manager when
// one runs here) has used so far, in seconds.
func processCPU(g Gomega) float64 {
	var ru syscall.Rusage
	g.Expect(syscall.Getrusage(syscall.RUSAGE_SELF, &ru)).To(Succeed())
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
