package integration

import (
	"fmt"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// BenchmarkPoolStatusWrite measures what one reservation round costs the
// control plane: a write of a pool's status carrying a hundred reservations,
// as admission makes in a burst, with nothing else writing.
//
//	KUBEBUILDER_ASSETS=$(hack/controlplane.sh) go test ./test/integration/ -run=NONE -bench=BenchmarkPoolStatusWrite -benchtime=1x
//
// It prints the time per write and the CPU the kube-apiserver and etcd
// spent on each, from their own metrics.
func BenchmarkPoolStatusWrite(b *testing.B) {
	g := NewWithT(b)
	_, ns := newEntity(b, g)
	pool := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "burst"},
		Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](100000), Enforcement: v1.EnforcementDeny}}
	g.Expect(k8s.Create(ctx(), pool)).To(Succeed())
	settle(g, ns, pool.Name, 0, 0)
	stopSharedManager() // nobody else writes the pool
	defer startSharedManager()
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(pool), pool)).To(Succeed())
	for i := range 100 {
		pool.Status.Reservations = append(pool.Status.Reservations, v1.LicenseReservation{
			User: fmt.Sprintf("firstname-lastname-%04d", i), ReservedAt: metav1.Now(), Generation: 1})
	}
	g.Expect(k8s.Status().Update(ctx(), pool)).To(Succeed())
	b.StopTimer()
	for range b.N {
		const n = 300
		cpuBefore := controlPlaneCPU(g)
		start := time.Now()
		for i := range n {
			// Each round renews one reservation, as a retried admission would.
			res := &pool.Status.Reservations[i%len(pool.Status.Reservations)]
			res.ReservedAt = metav1.NewTime(time.Now())
			res.Generation++
			g.Expect(k8s.Status().Update(ctx(), pool)).To(Succeed())
		}
		took := time.Since(start)
		cpu := controlPlaneCPU(g).minus(cpuBefore)
		perWrite := func(d float64) float64 { return d * 1000 / n }
		b.Logf("%d status writes of a pool with %d reservations: %.2f ms each; CPU per write: kube-apiserver %.2f ms, etcd %.2f ms",
			n, len(pool.Status.Reservations), perWrite(took.Seconds()), perWrite(cpu.apiserver), perWrite(cpu.etcd))
		b.ReportMetric(perWrite(took.Seconds()), "ms/write")
		b.ReportMetric(perWrite(cpu.apiserver), "apiserver-cpu-ms/write")
	}
}
