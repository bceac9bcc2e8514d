package integration

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// BenchmarkStatusWrite measures what one status write of each kind the burst
// makes costs the control plane, with nothing else writing:
//
//   - the floor's: a plain object's status (PUT);
//
//   - the controller's: a licensed user's status, as a merge patch
//     conditional on its resourceVersion, as the controller writes it;
//
//   - an admission round's: a pool's status carrying a hundred reservations
//     (PUT on its resourceVersion).
//
//     make bench-writes
//
// It prints, for each, the object's size as stored, the time per write and
// the CPU the kube-apiserver and etcd spent on each, from their own metrics.
// The kinds take turns, twice, so that the machine's drift touches them all.
func BenchmarkStatusWrite(b *testing.B) {
	g := NewWithT(b)
	_, ns := newEntity(b, g)
	newPool(g, ns, "queue", 1000, v1.EnforcementQueue)
	users := make([]*v1.PlatformUser, 100)
	for i := range users {
		users[i] = newUser(ns, fmt.Sprintf("firstname-lastname-%04d", i), true)
		users[i].Spec.LicensePool = "queue"
		g.Expect(k8s.Create(ctx(), users[i])).To(Succeed())
	}
	pool := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "burst"},
		Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](100000), Enforcement: v1.EnforcementDeny}}
	g.Expect(k8s.Create(ctx(), pool)).To(Succeed())
	settle(g, ns, "queue", 100, 0)
	settle(g, ns, pool.Name, 0, 0)
	installFloorCRD(g)
	plains := make([]*unstructured.Unstructured, 100)
	for i := range plains {
		plains[i] = newPlain(ns, i)
		g.Expect(k8s.Create(ctx(), plains[i])).To(Succeed())
	}

	stopSharedManager() // nobody else writes
	defer startSharedManager()
	for _, u := range users {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(u), u)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)).To(BeTrue())
	}
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(pool), pool)).To(Succeed())
	for i := range 100 {
		pool.Status.Reservations = append(pool.Status.Reservations, v1.LicenseReservation{
			User: fmt.Sprintf("firstname-lastname-%04d", i), ReservedAt: metav1.Now(), Generation: 1})
	}
	g.Expect(k8s.Status().Update(ctx(), pool)).To(Succeed())

	kinds := []struct {
		name  string
		size  func() int
		write func(i int)
	}{{
		name: "plain object (the floor's)",
		size: func() int { return storedSize(g, plains[0]) },
		write: func(i int) {
			o := plains[i%len(plains)]
			g.Expect(unstructured.SetNestedField(o.Object, fmt.Sprintf("done %d", i), "status", "state")).To(Succeed())
			g.Expect(k8s.Status().Update(ctx(), o)).To(Succeed())
		},
	}, {
		name: "licensed user (the controller's)",
		size: func() int { return storedSize(g, users[0]) },
		write: func(i int) {
			// A new message on the Ready condition: the size stays the same.
			u := users[i%len(users)]
			orig := u.DeepCopy()
			meta.SetStatusCondition(&u.Status.Conditions, metav1.Condition{Type: v1.ReadyCondition, Status: metav1.ConditionTrue,
				Reason: v1.ReasonLicensed, Message: fmt.Sprintf("holds a license of pool %q (%04d)", "queue", i%10000), ObservedGeneration: u.Generation})
			g.Expect(k8s.Status().Patch(ctx(), u, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))).To(Succeed())
		},
	}, {
		name: "pool with 100 reservations (an admission round's)",
		size: func() int { return storedSize(g, pool) },
		write: func(i int) {
			// Each round renews one reservation, as a retried admission would.
			res := &pool.Status.Reservations[i%len(pool.Status.Reservations)]
			res.ReservedAt = metav1.NewTime(time.Now())
			res.Generation++
			g.Expect(k8s.Status().Update(ctx(), pool)).To(Succeed())
		},
	}}
	b.StopTimer()
	for range b.N {
		for turn := range 2 {
			for _, kind := range kinds {
				const n = 200
				cpuBefore := readControlPlane(g)
				start := time.Now()
				for i := range n {
					kind.write(turn*n + i)
				}
				took := time.Since(start)
				cpu := readControlPlane(g).minus(cpuBefore)
				perWrite := func(d float64) float64 { return d * 1000 / n }
				b.Logf("%s, %d bytes stored: %.2f ms per write; CPU per write: kube-apiserver %.2f ms, etcd %.2f ms",
					kind.name, kind.size(), perWrite(took.Seconds()), perWrite(cpu.apiserver), perWrite(cpu.etcd))
			}
		}
	}
}

// storedSize is the size of obj's JSON as the API server serves it,
// managedFields included.
func storedSize(g Gomega, obj client.Object) int {
	live := obj.DeepCopyObject().(client.Object)
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(obj), live)).To(Succeed())
	raw, err := json.Marshal(live)
	g.Expect(err).NotTo(HaveOccurred())
	return len(raw)
}
