package integration

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// minimalWebhook names the no-op webhook of the minimal operator in the API
// server's admission metrics.
const minimalWebhook = "vplain.bench.visio.dev"

// minimalOperatorBurst is the second reference of the burst: the floor's
// plain objects, each admitted by a webhook that allows everything and given
// its status by a controller watching them, as the operator's users are. It
// is what any operator with one webhook and one controller pays on this
// control plane, without any of the operator's own work (no reservation, no
// licensing, no cross-object checks). It creates n objects from burstClients
// clients and returns how long it took until every one had its status.
func minimalOperatorBurst(b *testing.B, g Gomega, n int) (time.Duration, *latencies) {
	ns := plainNamespace(b, g, "minimal")
	written := &atomic.Int64{}
	stop := startMinimalOperator(b, g, ns, written)
	defer stop()

	start := time.Now()
	creates := timedCreates(g, n, func(i int) client.Object { return newPlain(ns, i) }, nil)
	// The controller counts its writes, so the end is seen without loading
	// the API server with lists of every object; one list then checks it.
	g.Eventually(written.Load).WithTimeout(10 * time.Minute).WithPolling(10 * time.Millisecond).Should(BeNumerically(">=", n))
	took := time.Since(start)
	g.Eventually(func(g Gomega) {
		list := &unstructured.UnstructuredList{}
		list.SetGroupVersionKind(floorGVK.GroupVersion().WithKind("PlainList"))
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(list.Items).To(HaveLen(n))
		for _, o := range list.Items {
			state, _, _ := unstructured.NestedString(o.Object, "status", "state")
			g.Expect(state).To(Equal("done"), "object %s", o.GetName())
		}
	}).WithTimeout(time.Minute).Should(Succeed())
	return took, creates
}

// startMinimalOperator runs, in a manager of its own, a controller that
// writes each plain object's status once, and an admission webhook for plain
// objects that allows every request; it returns what stops both and removes
// the webhook, and counts the status writes in written. The controller has
// as many workers as the burst has clients, so that its writes keep up with
// the creates whatever their pace: it is a floor, not a model of how the
// operator's controllers are tuned.
func startMinimalOperator(b *testing.B, g Gomega, ns string, written *atomic.Int64) (stop func()) {
	wo := testEnv.WebhookInstallOptions
	port := freePort(b)
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Cache:                  cache.Options{DefaultNamespaces: map[string]cache.Config{ns: {}}},
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
		Controller:             config.Controller{SkipNameValidation: ptr.To(true)},
		WebhookServer:          webhook.NewServer(webhook.Options{Host: wo.LocalServingHost, Port: port, CertDir: wo.LocalServingCertDir}),
	})
	g.Expect(err).NotTo(HaveOccurred())
	mgr.GetWebhookServer().Register("/validate-plain", &webhook.Admission{Handler: admission.HandlerFunc(
		func(context.Context, admission.Request) admission.Response { return admission.Allowed("") })})

	plain := &unstructured.Unstructured{}
	plain.SetGroupVersionKind(floorGVK)
	c := mgr.GetClient()
	err = ctrl.NewControllerManagedBy(mgr).Named("minimal").For(plain).
		WithOptions(controller.Options{MaxConcurrentReconciles: burstClients}).
		Complete(reconcile.Func(func(ctx context.Context, req reconcile.Request) (reconcile.Result, error) {
			o := &unstructured.Unstructured{}
			o.SetGroupVersionKind(floorGVK)
			if err := c.Get(ctx, req.NamespacedName, o); err != nil {
				return reconcile.Result{}, client.IgnoreNotFound(err)
			}
			if state, _, _ := unstructured.NestedString(o.Object, "status", "state"); state == "done" {
				return reconcile.Result{}, nil
			}
			if err := unstructured.SetNestedField(o.Object, "done", "status", "state"); err != nil {
				return reconcile.Result{}, err
			}
			if err := c.Status().Update(ctx, o); err != nil {
				return reconcile.Result{}, err
			}
			written.Add(1)
			return reconcile.Result{}, nil
		}))
	g.Expect(err).NotTo(HaveOccurred())

	runCtx, cancel := context.WithCancel(context.Background())
	stopMgr := runTestManager(runCtx, cancel, mgr, port)

	url := fmt.Sprintf("https://%s:%d/validate-plain", wo.LocalServingHost, port)
	none := admissionregistrationv1.SideEffectClassNone
	vwc := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-minimal-operator"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    minimalWebhook,
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: wo.LocalServingCAData},
			Rules:                   []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create}, Rule: admissionregistrationv1.Rule{APIGroups: []string{floorGVK.Group}, APIVersions: []string{floorGVK.Version}, Resources: []string{"plains"}}}},
			SideEffects:             &none,
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
		}},
	}
	g.Expect(k8s.Create(ctx(), vwc)).To(Succeed())
	// The API server calls a new webhook once its informer has it: wait until
	// a create is seen by it.
	g.Eventually(func() float64 {
		probe := &unstructured.Unstructured{}
		probe.SetGroupVersionKind(floorGVK)
		probe.SetNamespace(ns)
		probe.SetGenerateName("probe-")
		g.Expect(k8s.Create(ctx(), probe, client.DryRunAll)).To(Succeed())
		return admissionHistogramOf(g, minimalWebhook).count
	}).WithTimeout(time.Minute).Should(BeNumerically(">", 0))
	return func() {
		_ = k8s.Delete(ctx(), vwc)
		stopMgr()
	}
}
