package integration

import (
	"slices"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/config/samples"
)

// loadSamples decodes config/samples in the order they apply.
func loadSamples(g Gomega) []*unstructured.Unstructured {
	objs, err := samples.Objects()
	g.Expect(err).NotTo(HaveOccurred())
	return objs
}

// TestSamplesReachReady applies config/samples as `make run` does and waits for
// every object to be Current in kstatus terms: what Flux, Argo CD and
// `kubectl wait --for=condition=Ready` see.
func TestSamplesReachReady(t *testing.T) {
	g := NewWithT(t)
	samples := loadSamples(g)
	t.Cleanup(func() {
		for _, obj := range samples {
			e := &v1.Entity{}
			if obj.GetKind() != "Entity" || k8s.Get(ctx(), client.ObjectKey{Name: obj.GetName()}, e) != nil {
				continue
			}
			e.Spec.DeletionProtection = new(bool)
			_ = k8s.Update(ctx(), e)
			_ = k8s.Delete(ctx(), e)
		}
	})
	for _, obj := range samples {
		// Server-side dry run first: accepted, and nothing stored.
		g.Expect(k8s.Create(ctx(), obj.DeepCopy(), client.DryRunAll)).To(Succeed(), "dry run of %s %s", obj.GetKind(), obj.GetName())
		g.Expect(k8s.Create(ctx(), obj)).To(Succeed(), "create %s %s", obj.GetKind(), obj.GetName())
		if obj.GetKind() == "Entity" {
			waitCurrent(g, obj)
		}
	}
	for _, obj := range samples {
		waitCurrent(g, obj)
	}
	// The samples' sub-entities are in their parent's hierarchy, and the
	// parent's subtree counts them.
	children := map[string][]string{}
	for _, obj := range samples {
		if p, _, _ := unstructured.NestedString(obj.Object, "spec", "parent"); obj.GetKind() == "Entity" && p != "" {
			children[p] = append(children[p], obj.GetName())
		}
	}
	g.Expect(children).NotTo(BeEmpty(), "the samples show a parent with children")
	for parent, names := range children {
		slices.Sort(names)
		e := &v1.Entity{}
		g.Eventually(func(g Gomega) {
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Name: parent}, e)).To(Succeed())
			g.Expect(e.Status.Children).To(Equal(names))
			g.Expect(e.Status.Subtree).NotTo(BeNil())
			g.Expect(e.Status.Subtree.Users.Total).To(BeNumerically(">", e.Status.Users.Total))
		}).WithTimeout(60 * time.Second).Should(Succeed())
	}
	// Each delegation of the samples is taken out of its parent pool and
	// counted by the child's, whole.
	delegations := 0
	for _, obj := range samples {
		if obj.GetKind() != "LicensePool" {
			continue
		}
		sample := &v1.LicensePool{}
		g.Expect(runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, sample)).To(Succeed())
		for _, d := range sample.Spec.Delegations {
			delegations++
			g.Eventually(func(g Gomega) {
				parent := &v1.LicensePool{}
				g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(sample), parent)).To(Succeed())
				g.Expect(parent.Status.Delegated).To(ContainElement(And(
					HaveField("Entity", d.Entity), HaveField("Offered", d.Licenses), HaveField("Licenses", d.Licenses))))
				child := &v1.LicensePool{}
				g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: "entity-" + d.Entity, Name: d.PoolName()}, child)).To(Succeed())
				g.Expect(child.Status.DelegatedIn).To(ContainElement(And(
					HaveField("LicensePool", sample.Name), HaveField("Licenses", d.Licenses))))
			}).WithTimeout(60 * time.Second).Should(Succeed())
		}
	}
	g.Expect(delegations).To(BeNumerically(">", 0), "the samples show a delegation")
}

// waitCurrent waits until kstatus computes Current for obj.
func waitCurrent(g Gomega, obj *unstructured.Unstructured) {
	g.Eventually(func(g Gomega) {
		got := &unstructured.Unstructured{}
		got.SetGroupVersionKind(obj.GroupVersionKind())
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(obj), got)).To(Succeed())
		res, err := status.Compute(got)
		g.Expect(err).NotTo(HaveOccurred())
		g.Expect(res.Status).To(Equal(status.CurrentStatus), "%s %s: %s", obj.GetKind(), obj.GetName(), res.Message)
		// kstatus also calls Current an object with no conditions at all: demand Ready.
		conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
		ready := false
		for _, c := range conds {
			if m, ok := c.(map[string]any); ok && m["type"] == "Ready" && m["status"] == "True" {
				ready = true
			}
		}
		g.Expect(ready).To(BeTrue(), "%s %s is not Ready", obj.GetKind(), obj.GetName())
	}).WithTimeout(60 * time.Second).WithPolling(200 * time.Millisecond).Should(Succeed())
}
