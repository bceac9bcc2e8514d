//go:build e2e

// Package e2e tests the operator as a platform team runs it: the image built
// by make image, installed with the chart by helm on a real node (kubelet,
// containerd, kube-proxy), its webhooks called by the API server through
// their Service. hack/e2e/e2e.sh (make test-e2e) brings the node up and runs
// these tests inside it; they are not meant to run anywhere else.
//
// The tests run in order and share one installation: install, use, disturb
// (leader killed, certificate deleted, upgrade, scale to zero), uninstall.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

const (
	release   = "visio-operator"
	namespace = "visio-system"
)

var (
	root, helm string
	cfg        *rest.Config
	k8s        client.Client
	scheme     = runtime.NewScheme()
)

func TestMain(m *testing.M) {
	root, helm = os.Getenv("E2E_ROOT"), os.Getenv("HELM")
	if root == "" || helm == "" || os.Getenv("KUBECONFIG") == "" {
		fmt.Println("e2e: run these tests with make test-e2e (hack/e2e/e2e.sh), which brings up the node they need")
		os.Exit(1)
	}
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	var err error
	if cfg, err = clientcmd.BuildConfigFromFlags("", os.Getenv("KUBECONFIG")); err != nil {
		panic(err)
	}
	cfg.QPS, cfg.Burst = 200, 400
	if k8s, err = client.New(cfg, client.Options{Scheme: scheme}); err != nil {
		panic(err)
	}
	os.Exit(m.Run())
}

// ctx bounds one API call.
func ctx() context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	time.AfterFunc(2*time.Minute, cancel)
	return c
}

// run runs a command, failing the test with its output on error.
func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(name), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// helmArgs are the image values every helm install and upgrade needs: the
// image imported into the node's containerd.
func imageArgs() []string {
	return []string{"--set", "image.repository=" + os.Getenv("E2E_IMAGE_REPOSITORY"), "--set", "image.tag=" + os.Getenv("E2E_IMAGE_TAG")}
}

func kubectl(t *testing.T, args ...string) string {
	t.Helper()
	return run(t, os.Getenv("E2E_KUBECTL"), args...)
}

// chartInstalled reports whether the release is installed.
func chartInstalled() bool {
	return exec.Command(helm, "status", release, "-n", namespace).Run() == nil
}

// helmUpgrade installs the release, or upgrades it, to the chart's defaults
// changed by sets ("key=value"), and waits for it. It takes over CRDs that
// Helm did not create (make run creates them on a cluster that has none).
func helmUpgrade(t *testing.T, sets ...string) {
	t.Helper()
	args := []string{"upgrade", "--install", release, filepath.Join(root, "charts", "visio-operator"),
		"-n", namespace, "--create-namespace", "--wait", "--timeout", "5m", "--take-ownership"}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	run(t, helm, append(args, imageArgs()...)...)
}

// uninstallChart uninstalls the release and waits until its Pods are gone.
func uninstallChart(t *testing.T) {
	t.Helper()
	run(t, helm, "uninstall", release, "-n", namespace, "--wait", "--timeout", "3m")
	NewWithT(t).Eventually(func() []string {
		pods := &corev1.PodList{}
		if err := k8s.List(ctx(), pods, client.InNamespace(namespace), client.MatchingLabels{"app.kubernetes.io/name": "visio-operator"}); err != nil {
			return []string{err.Error()}
		}
		var names []string
		for _, p := range pods.Items {
			names = append(names, p.Name)
		}
		return names
	}).WithTimeout(2*time.Minute).WithPolling(time.Second).Should(BeEmpty(), "manager Pods left after helm uninstall")
	// Nor the certificate Secret, which a stopping Pod might have recreated:
	// a next helm install would refuse to adopt it.
	NewWithT(t).Eventually(func() bool {
		return apierrors.IsNotFound(k8s.Get(ctx(), client.ObjectKey{Namespace: namespace, Name: "visio-operator-webhook-cert"}, &corev1.Secret{}))
	}).WithTimeout(time.Minute).WithPolling(time.Second).Should(BeTrue(), "the webhook certificate Secret left after helm uninstall")
}

// withChart installs the release with sets over the defaults (or upgrades
// it to them), and gives back at the end of the test what it found: the
// release with its defaults, or none.
func withChart(t *testing.T, sets ...string) {
	t.Helper()
	was := chartInstalled()
	t.Cleanup(func() { restoreChart(t, was) })
	helmUpgrade(t, sets...)
	waitReady(NewWithT(t), 2)
}

// withoutChart uninstalls the release if it is installed, and installs it
// again with its defaults at the end of the test.
func withoutChart(t *testing.T) {
	t.Helper()
	if chartInstalled() {
		t.Cleanup(func() { restoreChart(t, true) })
		uninstallChart(t)
	}
}

func restoreChart(t *testing.T, installed bool) {
	t.Helper()
	switch {
	case installed:
		helmUpgrade(t)
		waitReady(NewWithT(t), 2)
	case chartInstalled():
		uninstallChart(t)
	}
}
