package integration

import (
	"fmt"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	dto "github.com/prometheus/client_model/go"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	v1 "visio.dev/operator/api/v1alpha1"
)

// series is one sample of the manager's registry: its labels and value.
type series struct {
	labels map[string]string
	value  float64
}

// gather reads the visio_ metrics from the registry the manager's metrics
// endpoint serves, keyed by metric name.
func gather(g Gomega) map[string][]series {
	families, err := crmetrics.Registry.Gather()
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string][]series{}
	for _, f := range families {
		if len(f.GetName()) < 6 || f.GetName()[:6] != "visio_" {
			continue
		}
		for _, m := range f.GetMetric() {
			s := series{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_GAUGE:
				s.value = m.GetGauge().GetValue()
			case dto.MetricType_COUNTER:
				s.value = m.GetCounter().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out[f.GetName()] = append(out[f.GetName()], s)
		}
	}
	return out
}

// value is the value of the series of name whose labels include want, and
// whether there is one.
func value(all map[string][]series, name string, want map[string]string) (float64, bool) {
	for _, s := range all[name] {
		match := true
		for k, v := range want {
			if s.labels[k] != v {
				match = false
				break
			}
		}
		if match {
			return s.value, true
		}
	}
	return 0, false
}

// TestMetricsFollowPools bursts users into a Deny pool and a Queue pool of one
// entity, then checks that the gauges are exactly the pools' status, that
// admissions and refusals are counted, that the series name no user, and that
// a deleted pool's series go.
func TestMetricsFollowPools(t *testing.T) {
	g := NewWithT(t)
	e, ns := newEntity(t, g)
	newPool(g, ns, "deny", 3, v1.EnforcementDeny)
	newPool(g, ns, "queue", 2, v1.EnforcementQueue)

	const burst = 6
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := map[string]int{}
	var users []string
	for _, pool := range []string{"deny", "queue"} {
		for i := range burst {
			name := fmt.Sprintf("%s-user-%d", pool, i)
			users = append(users, name)
			wg.Go(func() {
				u := newUser(ns, name, true)
				u.Spec.LicensePool = pool
				if err := k8s.Create(ctx(), u); err == nil {
					mu.Lock()
					created[pool]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	g.Expect(created).To(Equal(map[string]int{"deny": 3, "queue": burst}), "a Deny pool of 3 admits 3; a Queue pool admits everyone")

	// The gauges are the pools' status, exactly, once the pools have settled.
	base := map[string]string{"namespace": ns, "entity": e.Name}
	with := func(kv ...string) map[string]string {
		m := map[string]string{}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	want := map[string]v1.LicenseCounts{"deny": {Capacity: 3, Used: 3, Available: 0}, "queue": {Capacity: 2, Used: 2, Available: 0, Pending: burst - 2}}
	for pool, counts := range want {
		g.Eventually(func(g Gomega) {
			p := &v1.LicensePool{}
			g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: pool}, p)).To(Succeed())
			g.Expect(p.Status.LicenseCounts).To(Equal(counts))
			all := gather(g)
			for name, v := range map[string]int32{"visio_licensepool_capacity": p.Status.Capacity, "visio_licensepool_used": p.Status.Used,
				"visio_licensepool_available": p.Status.Available, "visio_licensepool_pending": p.Status.Pending} {
				got, ok := value(all, name, with("licensepool", pool))
				g.Expect(ok).To(BeTrue(), "%s of pool %s missing", name, pool)
				g.Expect(got).To(Equal(float64(v)), "%s of pool %s", name, pool)
			}
			_, ok := value(all, "visio_licensepool_next_expiry_timestamp_seconds", with("licensepool", pool))
			g.Expect(ok).To(BeFalse(), "no grant expires: no expiry series")
		}).WithTimeout(60 * time.Second).Should(Succeed())
	}

	all := gather(g)
	count := func(pool, result string) float64 {
		v, _ := value(all, "visio_license_admissions_total", with("licensepool", pool, "result", result))
		return v
	}
	g.Expect(count("deny", "admitted")).To(Equal(3.0))
	g.Expect(count("deny", "refused")).To(Equal(float64(burst - 3)))
	g.Expect(count("queue", "admitted")).To(Equal(float64(burst)))
	g.Expect(count("queue", "refused")).To(Equal(0.0))

	// The entity's users: 5 licensed, 4 waiting, all with the role User.
	g.Eventually(func(g Gomega) {
		all := gather(g)
		for state, n := range map[string]float64{"licensed": 5, "waiting": burst - 2, "inactive": 0} {
			v, ok := value(all, "visio_entity_users", map[string]string{"entity": e.Name, "role": "User", "state": state})
			g.Expect(ok).To(BeTrue())
			g.Expect(v).To(Equal(n), "users %s", state)
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())

	// Label values name entities, namespaces and pools only: never a user.
	allowed := map[string]map[string]bool{
		"result": {"admitted": true, "refused": true},
		"state": {"licensed": true, "waiting": true, "inactive": true, "ready": true, "not_ready": true,
			"pending": true, "approved": true, "denied": true, "expired": true},
		"role":      {"User": true, "DelegatedOrganizer": true, "Administrator": true, "Concierge": true},
		"backend":   {"embedded": true, "pexip": true},
		"operation": {"find": true, "get": true, "create": true, "update": true, "delete": true, "release": true, "list_tagged": true},
	}
	for name, ss := range gather(g) {
		for _, s := range ss {
			for k, v := range s.labels {
				for _, u := range users {
					g.Expect(v).NotTo(ContainSubstring(u), "%s{%s} names a user", name, k)
				}
				switch k {
				case "entity", "namespace", "licensepool", "code", "le",
					"parent", "organisation": // entity names, like entity
				default:
					g.Expect(allowed).To(HaveKey(k), "%s has an unexpected label %s", name, k)
					g.Expect(allowed[k]).To(HaveKey(v), "%s{%s=%q}", name, k, v)
				}
			}
			if s.labels["entity"] == e.Name {
				if p, ok := s.labels["licensepool"]; ok {
					g.Expect(p).To(BeElementOf("deny", "queue"))
				}
				if n, ok := s.labels["namespace"]; ok {
					g.Expect(n).To(Equal(ns))
				}
			}
		}
	}

	// Where the entity stands: no parent, its own organisation.
	v, ok := value(gather(g), "visio_entity_info", map[string]string{"entity": e.Name, "parent": "", "organisation": e.Name})
	g.Expect(ok).To(BeTrue(), "visio_entity_info of %s", e.Name)
	g.Expect(v).To(Equal(1.0))

	// A deleted pool's series go, the other pool's stay.
	g.Expect(k8s.Delete(ctx(), &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "deny"}})).To(Succeed())
	g.Eventually(func(g Gomega) {
		for name, ss := range gather(g) {
			for _, s := range ss {
				g.Expect(s.labels["namespace"] == ns && s.labels["licensepool"] == "deny").To(BeFalse(), "%s of the deleted pool is left", name)
			}
		}
	}).WithTimeout(30 * time.Second).Should(Succeed())
	_, ok = value(gather(g), "visio_licensepool_capacity", with("licensepool", "queue"))
	g.Expect(ok).To(BeTrue())

	// The entity goes: its series and its pools' go with it.
	g.Expect(k8s.Delete(ctx(), e)).To(Succeed())
	g.Eventually(func(g Gomega) {
		for name, ss := range gather(g) {
			for _, s := range ss {
				g.Expect(s.labels["entity"]).NotTo(Equal(e.Name), "%s of the deleted entity is left", name)
			}
		}
	}).WithTimeout(60 * time.Second).Should(Succeed())
}
