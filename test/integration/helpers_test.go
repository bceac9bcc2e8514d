package integration

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
)

var entitySeq atomic.Int64

// newEntity creates an unprotected Entity with a unique name, waits for its
// namespace, and deletes it when the test ends.
func newEntity(t testing.TB, g Gomega) (*v1.Entity, string) {
	t.Helper()
	name := fmt.Sprintf("%s-%d", strings.ToLower(strings.ReplaceAll(t.Name(), "/", "-")), entitySeq.Add(1))
	if len(name) > 50 {
		name = fmt.Sprintf("t%d-%s", entitySeq.Load(), name[len(name)-40:])
		name = strings.Trim(name, "-_")
	}
	name = strings.NewReplacer("_", "-").Replace(name)
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.EntitySpec{DisplayName: "Test " + name, DeletionProtection: ptr.To(false)}}
	g.Expect(k8s.Create(ctx(), e)).To(Succeed())
	t.Cleanup(func() { _ = k8s.Delete(context.Background(), e) })
	ns := e.NamespaceName()
	g.Eventually(func(g Gomega) {
		got := &v1.Entity{}
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), got)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(got.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "entity %s not Ready: %v", name, got.Status.Conditions)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return e, ns
}

func ctx() context.Context { return context.Background() }

func newPool(g Gomega, ns, name string, licenses int32, enforcement v1.Enforcement) *v1.LicensePool {
	p := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: v1.LicensePoolSpec{Licenses: ptr.To(licenses), Enforcement: enforcement}}
	g.Expect(k8s.Create(ctx(), p)).To(Succeed())
	return p
}

func newUser(ns, name string, active bool) *v1.PlatformUser {
	return &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.PlatformUserSpec{
		Email: name + "@" + ns + ".example", GivenName: "Given", FamilyName: "Family", Active: ptr.To(active),
	}}
}

// fromYAML decodes a manifest into an unstructured object, so tests can send
// what a typed struct could not hold (wrong types, unknown values).
func fromYAML(g Gomega, doc string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	g.Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
	return u
}

func isNotFound(err error) bool { return apierrors.IsNotFound(err) }

func countLicensed(users []v1.PlatformUser, pool string) int {
	n := 0
	for i := range users {
		if users[i].Status.LicensePool == pool && meta.IsStatusConditionTrue(users[i].Status.Conditions, v1.LicensedCondition) {
			n++
		}
	}
	return n
}

var _ = corev1.NamespaceAll

// waitNoEntityDeleting waits until no Entity is being deleted. A test that
// counts every write of the manager starts there: the deletion of an earlier
// test's entity (its finalizer, its cluster-scoped RBAC) is the manager's
// rightful work, and would land in the first windows.
func waitNoEntityDeleting(g Gomega) {
	g.Eventually(func(g Gomega) {
		list := &v1.EntityList{}
		g.Expect(k8s.List(ctx(), list)).To(Succeed())
		for i := range list.Items {
			g.Expect(list.Items[i].DeletionTimestamp).To(BeNil(), "entity %s is still being deleted", list.Items[i].Name)
		}
	}).WithTimeout(2 * entityTimeout).Should(Succeed())
}
