package integration

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/operator"
)

// licenseWatch follows every user of a namespace through a watch and records
// the highest number of users it ever saw holding a license of pool at once.
type licenseWatch struct {
	max     atomic.Int64
	stop    func()
	stopped chan struct{}
}

func watchLicenses(t *testing.T, g Gomega, ns, pool string) *licenseWatch {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	w, err := wc.Watch(ctx(), &v1.PlatformUserList{}, client.InNamespace(ns))
	g.Expect(err).NotTo(HaveOccurred())
	lw := &licenseWatch{stop: w.Stop, stopped: make(chan struct{})}
	go func() {
		defer close(lw.stopped)
		held := map[string]bool{}
		for ev := range w.ResultChan() {
			u, ok := ev.Object.(*v1.PlatformUser)
			if !ok {
				continue
			}
			held[u.Name] = ev.Type != watch.Deleted && u.Status.LicensePool == pool &&
				meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)
			n := 0
			for _, h := range held {
				if h {
					n++
				}
			}
			if int64(n) > lw.max.Load() {
				lw.max.Store(int64(n))
			}
		}
	}()
	t.Cleanup(func() { w.Stop() })
	return lw
}

func (lw *licenseWatch) finish() int64 {
	lw.stop()
	<-lw.stopped
	return lw.max.Load()
}

// burst creates n active users from n concurrent clients and returns how many
// the API server admitted. restart, when set, is called halfway through.
func burst(g Gomega, ns string, n int, restart func()) int {
	var admitted atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if i == n/2 && restart != nil {
				restart()
			}
			name := fmt.Sprintf("user-%03d", i)
			// While the manager restarts its webhook is unreachable and the API
			// server answers with an internal error. Clients retry, as kubectl
			// users and GitOps controllers do, until they get a real answer.
			var err error
			for attempt := 0; ; attempt++ {
				err = k8s.Create(ctx(), newUser(ns, name, true))
				if err == nil || !apierrors.IsInternalError(err) || restart == nil || attempt == 100 {
					break
				}
				time.Sleep(200 * time.Millisecond)
			}
			if err == nil {
				admitted.Add(1)
				return
			}
			g.Expect(err.Error()).To(ContainSubstring("is full"), "only a full pool may refuse a user")
		}()
	}
	close(start)
	wg.Wait()
	return int(admitted.Load())
}

// settle waits until the pool reports the given counts and every user agrees.
func settle(g Gomega, ns, pool string, used, pending int32) []v1.PlatformUser {
	var users []v1.PlatformUser
	g.Eventually(func(g Gomega) {
		p := &v1.LicensePool{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: pool}, p)).To(Succeed())
		g.Expect(p.Status.Used).To(Equal(used), "used")
		g.Expect(p.Status.Pending).To(Equal(pending), "pending")
		list := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		g.Expect(countLicensed(list.Items, pool)).To(Equal(int(used)))
		waiting := 0
		for i := range list.Items {
			c := meta.FindStatusCondition(list.Items[i].Status.Conditions, v1.LicensedCondition)
			g.Expect(c).NotTo(BeNil(), "user %s has no Licensed condition yet", list.Items[i].Name)
			if c.Reason == v1.ReasonLicensePoolExhausted {
				waiting++
			}
		}
		g.Expect(waiting).To(Equal(int(pending)))
		users = list.Items
	}).WithTimeout(120 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
	return users
}

// TestConcurrentActivationsDeny: 200 clients race for 50 free licenses of a
// Deny pool; exactly 50 are admitted, and no watcher ever sees more than 50
// licensed. Repeated, as races hide.
func TestConcurrentActivationsDeny(t *testing.T) {
	concurrentActivations(t, v1.EnforcementDeny, 50, 0)
}

// TestConcurrentActivationsQueue: under Queue all 200 are admitted, exactly 50
// licensed and 150 waiting, never more than 50 licensed at any instant.
func TestConcurrentActivationsQueue(t *testing.T) {
	concurrentActivations(t, v1.EnforcementQueue, 200, 150)
}

// concurrentActivations runs three rounds of 200 concurrent creates into a
// pool of 50, answered by two webhook replicas, and checks how many are
// admitted and how many wait.
func concurrentActivations(t *testing.T, enf v1.Enforcement, admitted int, pending int32) {
	counter := &writeCounter{}
	_, connections := withWebhookReplicas(t, counter, func(*operator.Options) {})
	for round := range 3 {
		t.Run(fmt.Sprintf("round-%d", round), func(t *testing.T) {
			g := NewWithT(t)
			_, ns := newEntity(t, g)
			newPool(g, ns, "default", 50, enf)
			lw := watchLicenses(t, g, ns, "default")
			before := counter.snapshot()
			g.Expect(burst(g, ns, 200, nil)).To(Equal(admitted))
			settle(g, ns, "default", 50, pending)
			g.Expect(lw.finish()).To(BeNumerically("<=", 50))
			poolWrites := counter.snapshot()["licensepools/status"] - before["licensepools/status"]
			t.Logf("200 concurrent admissions: %d pool status writes (admission and controller, both replicas)", poolWrites)
			if enf == v1.EnforcementDeny {
				// Group commit: the admissions charge the pool in a few writes,
				// not one each (200 before).
				g.Expect(poolWrites).To(BeNumerically("<=", 50), "pool status writes for 200 concurrent admissions")
			}
		})
	}
	conns := connections()
	t.Logf("admission requests per replica: %v", conns)
	g := NewWithT(t)
	g.Expect(conns[0]).To(BeNumerically(">", 0), "the leader answered no admission")
	g.Expect(conns[1]).To(BeNumerically(">", 0), "the second replica answered no admission")
}

// TestBurstAcrossManagerRestart: the same bursts, answered by two webhook
// replicas, with the leader stopped and started again in the middle.
func TestBurstAcrossManagerRestart(t *testing.T) {
	for _, enf := range []v1.Enforcement{v1.EnforcementDeny, v1.EnforcementQueue} {
		t.Run(string(enf), func(t *testing.T) {
			g := NewWithT(t)
			_, ns := newEntity(t, g)
			newPool(g, ns, "default", 50, enf)
			restartManager, _ := withWebhookReplicas(t, nil, func(*operator.Options) {})
			lw := watchLicenses(t, g, ns, "default")
			admitted := burst(g, ns, 200, restartManager)
			if enf == v1.EnforcementDeny {
				g.Expect(admitted).To(Equal(50))
				settle(g, ns, "default", 50, 0)
			} else {
				g.Expect(admitted).To(Equal(200))
				settle(g, ns, "default", 50, 150)
			}
			g.Expect(lw.finish()).To(BeNumerically("<=", 50))
		})
	}
}

// TestDeactivationHandsLicenseOn: deactivating a licensed user licenses the
// first waiting user in one reconcile.
func TestDeactivationHandsLicenseOn(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	newPool(g, ns, "default", 2, v1.EnforcementQueue)
	for _, name := range []string{"a-first", "b-second", "c-third", "d-fourth"} {
		g.Expect(k8s.Create(ctx(), newUser(ns, name, true))).To(Succeed())
		time.Sleep(1100 * time.Millisecond) // distinct creation seconds: a strict queue order
	}
	settle(g, ns, "default", 2, 2)

	u := &v1.PlatformUser{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "a-first"}, u)).To(Succeed())
	u.Spec.Active = ptr.To(false)
	g.Expect(k8s.Update(ctx(), u)).To(Succeed())

	users := settle(g, ns, "default", 2, 1)
	byName := map[string]*v1.PlatformUser{}
	for i := range users {
		byName[users[i].Name] = &users[i]
	}
	g.Expect(meta.FindStatusCondition(byName["a-first"].Status.Conditions, v1.ReadyCondition).Reason).To(Equal(v1.ReasonDeactivated))
	g.Expect(meta.IsStatusConditionTrue(byName["c-third"].Status.Conditions, v1.LicensedCondition)).To(BeTrue(), "the first in the queue gets the license")
	g.Expect(meta.IsStatusConditionTrue(byName["d-fourth"].Status.Conditions, v1.LicensedCondition)).To(BeFalse())
	g.Expect(byName["a-first"].Status.Capabilities).To(BeEmpty(), "a deactivated User keeps no capability")
	g.Expect(byName["c-third"].Status.Capabilities).To(ContainElement(v1.CapabilityScheduleMeetings))
}

// TestShrinkRevokesNewestFirst: lowering licenses and a grant expiring revoke
// the most recently licensed users first, with Warning events, and capacity
// is never exceeded.
func TestShrinkRevokesNewestFirst(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	expiry := metav1.NewTime(time.Now().Add(20 * time.Second).Truncate(time.Second))
	p := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "default"}, Spec: v1.LicensePoolSpec{
		Licenses: ptr.To[int32](4), Enforcement: v1.EnforcementQueue,
		Grants: []v1.LicenseGrant{{Name: "pilot", Licenses: 2, Reason: "pilot project", ExpiresAt: &expiry}},
	}}
	g.Expect(k8s.Create(ctx(), p)).To(Succeed())
	lw := watchLicenses(t, g, ns, "default")
	names := []string{"u1", "u2", "u3", "u4", "u5", "u6"}
	for _, name := range names {
		g.Expect(k8s.Create(ctx(), newUser(ns, name, true))).To(Succeed())
		// Each is licensed before the next arrives: a strict licensing order.
		g.Eventually(func() []string { return licensedNames(g, ns) }).WithTimeout(30 * time.Second).Should(ContainElement(name))
		time.Sleep(1100 * time.Millisecond) // licensedSince has a one-second resolution
	}
	settle(g, ns, "default", 6, 0)

	// Lower the base licenses from 4 to 3: u6, the newest, loses its license.
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(p), p)).To(Succeed())
	p.Spec.Licenses = ptr.To[int32](3)
	g.Expect(k8s.Update(ctx(), p)).To(Succeed())
	settle(g, ns, "default", 5, 1)
	g.Expect(licensedNames(g, ns)).To(ConsistOf("u1", "u2", "u3", "u4", "u5"))

	// The grant expires by itself: u5 and u4 go next.
	g.Eventually(func() []string { return licensedNames(g, ns) }).WithTimeout(60 * time.Second).
		Should(ConsistOf("u1", "u2", "u3"))
	settle(g, ns, "default", 3, 3)
	g.Expect(lw.finish()).To(BeNumerically("<=", 6))

	g.Eventually(func(g Gomega) {
		evs := &eventsv1.EventList{}
		g.Expect(k8s.List(ctx(), evs, client.InNamespace(ns))).To(Succeed())
		revoked := map[string]bool{}
		for _, e := range evs.Items {
			if e.Reason == v1.ReasonLicenseRevoked && e.Type == "Warning" {
				revoked[e.Regarding.Name] = true
			}
		}
		g.Expect(revoked).To(HaveKey("u6"))
		g.Expect(revoked).To(HaveKey("u5"))
		g.Expect(revoked).To(HaveKey("u4"))
	}).WithTimeout(10 * time.Second).Should(Succeed())
}

func licensedNames(g Gomega, ns string) []string {
	list := &v1.PlatformUserList{}
	g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
	var out []string
	for i := range list.Items {
		if meta.IsStatusConditionTrue(list.Items[i].Status.Conditions, v1.LicensedCondition) {
			out = append(out, list.Items[i].Name)
		}
	}
	return out
}

// TestResyncWritesNothing: after 1,000 users and their pools have settled, a
// new manager (fresh cache: every object reconciled again) writes nothing.
func TestResyncWritesNothing(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	for i := range 10 {
		newPool(g, ns, fmt.Sprintf("pool-%d", i), 80, v1.EnforcementQueue)
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, 32)
	for i := range 1000 {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			u := newUser(ns, fmt.Sprintf("u-%04d", i), i%7 != 0)
			u.Spec.LicensePool = fmt.Sprintf("pool-%d", i%10)
			g.Expect(k8s.Create(context.Background(), u)).To(Succeed())
		}()
	}
	wg.Wait()
	g.Eventually(func(g Gomega) {
		list := &v1.PlatformUserList{}
		g.Expect(k8s.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		for i := range list.Items {
			g.Expect(list.Items[i].Status.ObservedGeneration).To(Equal(list.Items[i].Generation))
		}
	}).WithTimeout(180 * time.Second).WithPolling(time.Second).Should(Succeed())
	time.Sleep(3 * time.Second) // let the last passes and the entity rollup finish

	counter := &writeCounter{}
	stopSharedManager()
	startSharedManagerCounting(counter)
	time.Sleep(10 * time.Second) // the initial list reconciles every pool, user and entity
	writes := counter.writes.Load()
	t.Logf("resync of 1,000 users in 10 pools: %d writes, %d reads", writes, counter.reads.Load())
	g.Expect(writes).To(BeZero(), "a resync of settled objects must write nothing")
}
