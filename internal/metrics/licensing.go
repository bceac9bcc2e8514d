package metrics

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/licensing"
)

// ObservePool publishes the counts of a pool as its controller has just
// written them, and counts the licenses this pass revoked. It is called once
// per pass that wrote every user status it decided, so a revocation is
// counted once: the next pass sees the user already without a license.
//
// The entity label comes from the pool namespace's entity label, read through
// reader, which is the manager's cache (no request to the API server).
func ObservePool(ctx context.Context, reader client.Reader, pool *v1.LicensePool, alloc licensing.Allocation) {
	entity := entityOfNamespace(ctx, reader, pool.Namespace, pool.Name)
	l := prometheus.Labels{LabelNamespace: pool.Namespace, LabelEntity: entity, LabelLicensePool: pool.Name}
	st := pool.Status
	poolCapacity.With(l).Set(float64(st.Capacity))
	poolUsed.With(l).Set(float64(st.Used))
	poolAvailable.With(l).Set(float64(st.Available))
	poolPending.With(l).Set(float64(st.Pending))
	var delegated int64
	for _, d := range st.Delegated {
		delegated += int64(d.Licenses)
	}
	poolDelegated.With(l).Set(float64(delegated))
	if st.NextExpiry != nil {
		poolNextExpiry.With(l).Set(float64(st.NextExpiry.Unix()))
	} else {
		poolNextExpiry.Delete(l)
	}
	revoked := 0
	for _, d := range alloc.Decisions {
		if d.Outcome == licensing.Revoked {
			revoked++
		}
	}
	// The counters exist from zero on, so that increase() sees the first
	// revocation or refusal of a pool, and a query finds its zeros.
	revocations.With(l).Add(float64(revoked))
	admissions.WithLabelValues(pool.Namespace, entity, pool.Name, ResultAdmitted)
	admissions.WithLabelValues(pool.Namespace, entity, pool.Name, ResultRefused)
}

// entityOfNamespace returns the entity owning namespace, and removes the
// pool's series labelled with another entity (the namespace changed hands).
func entityOfNamespace(ctx context.Context, reader client.Reader, namespace, pool string) string {
	ns := &corev1.Namespace{}
	err := reader.Get(ctx, client.ObjectKey{Name: namespace}, ns)
	key := poolKey{namespace, pool}
	entities.Lock()
	defer entities.Unlock()
	entity, known := entities.m[key]
	if err != nil {
		return entity // the cache lost the namespace: keep the label we had
	}
	if fresh := ns.Labels[v1.EntityLabel]; !known || fresh != entity {
		if known {
			deletePool(namespace, pool)
		}
		entity = fresh
		entities.m[key] = entity
	}
	return entity
}

// ForgetPool removes every series of a pool that is gone.
func ForgetPool(namespace, pool string) {
	entities.Lock()
	defer entities.Unlock()
	delete(entities.m, poolKey{namespace, pool})
	deletePool(namespace, pool)
}

// LicenseAdmission counts one activation decided at admission.
func LicenseAdmission(namespace, entity, pool string, admitted bool) {
	result := ResultRefused
	if admitted {
		result = ResultAdmitted
	}
	admissions.WithLabelValues(namespace, entity, pool, result).Inc()
}
