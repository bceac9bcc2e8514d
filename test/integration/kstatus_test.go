package integration

import (
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// kstatusOf computes the kstatus of a typed object as a GitOps tool would.
func kstatusOf(g Gomega, obj client.Object) *status.Result {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	g.Expect(err).NotTo(HaveOccurred())
	u := &unstructured.Unstructured{Object: m}
	gvk, err := k8s.GroupVersionKindFor(obj)
	g.Expect(err).NotTo(HaveOccurred())
	u.SetGroupVersionKind(gvk)
	res, err := status.Compute(u)
	g.Expect(err).NotTo(HaveOccurred())
	return res
}

// TestKstatusConformance checks the status the controllers write in each of
// the states a user meets: done, waiting for a human, and changed but not yet
// reconciled.
func TestKstatusConformance(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)

	// A licensed user: Current, with no Reconciling or Stalled left.
	newPool(g, ns, "default", 1, v1.EnforcementQueue)
	u := newUser(ns, "ana", true)
	g.Expect(k8s.Create(ctx(), u)).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(u), u)).To(Succeed())
		res := kstatusOf(g, u)
		g.Expect(res.Status).To(Equal(status.CurrentStatus), res.Message)
		g.Expect(u.Status.ObservedGeneration).To(Equal(u.Generation))
		for _, c := range u.Status.Conditions {
			g.Expect(c.ObservedGeneration).To(Equal(u.Generation), "condition %s", c.Type)
		}
		g.Expect(meta.FindStatusCondition(u.Status.Conditions, v1.ReconcilingCondition)).To(BeNil())
		g.Expect(meta.FindStatusCondition(u.Status.Conditions, v1.StalledCondition)).To(BeNil())
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// Its pool deleted: a human must act (Stalled, so kstatus says Failed).
	g.Expect(k8s.Delete(ctx(), &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}})).To(Succeed())
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(u), u)).To(Succeed())
		res := kstatusOf(g, u)
		g.Expect(res.Status).To(Equal(status.FailedStatus), res.Message)
		stalled := meta.FindStatusCondition(u.Status.Conditions, v1.StalledCondition)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Reason).To(Equal(v1.ReasonLicensePoolNotFound))
		g.Expect(meta.IsStatusConditionTrue(u.Status.Conditions, v1.ReadyCondition)).To(BeFalse())
		g.Expect(meta.FindStatusCondition(u.Status.Conditions, v1.ReconcilingCondition)).To(BeNil())
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// A spec change not yet observed is InProgress for kstatus.
	u.Generation++
	g.Expect(kstatusOf(g, u).Status).To(Equal(status.InProgressStatus))
}
