package controller

import (
	"time"

	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/delegation"
	"visio.dev/operator/internal/entityns"
)

// Delegations between the pools of a parent entity and of its sub-entities
// (guarantee 10). The arithmetic is internal/delegation's; a pass of the pool
// controller gathers its inputs from the cache, applies them to the pool's
// capacity, and writes status.delegated (parent side) and status.delegatedIn
// (child side) in the same status write as its counts, after its users:
// so the parent has revoked the users that lose a license to a raise before
// the child can see it, and the child has revoked the users that lose one to
// a cut before the parent can take it back.

// delegations is what one pass decided of a pool's delegations.
type delegations struct {
	view    delegation.View
	plan    delegation.Plan
	counted delegation.Counted
}

// delegationsOf applies pool's delegations to base, the capacity of its own
// licenses, grants and requests.
func (r *LicensePoolReconciler) delegationsOf(ctx context.Context, pool *v1.LicensePool, entity string, base int32) (int32, delegations, error) {
	var d delegations
	e := &v1.Entity{}
	if err := r.Get(ctx, client.ObjectKey{Name: entity}, e); err != nil {
		return 0, d, fmt.Errorf("cannot read entity %q: %w", entity, err)
	}
	view, err := delegation.Look(ctx, r.Client, pool, e, r.PlatformEntity)
	if err != nil {
		return 0, d, fmt.Errorf("cannot read the delegations of license pool %q: %w", pool.Name, err)
	}
	d.view = view
	capacity, plan, counted := view.Capacity(base)
	d.plan, d.counted = plan, counted
	return capacity, d, nil
}

// apply writes what the pass decided into the pool's status.
func (d delegations) apply(st *v1.LicensePoolStatus) {
	st.Delegated = nil
	for _, e := range d.plan.Delegated {
		st.Delegated = append(st.Delegated, v1.DelegatedLicenses{Entity: e.Entity, LicensePool: e.Pool,
			Licenses: e.Licenses, Offered: e.Offered, Revision: e.Revision})
	}
	st.DelegatedIn = nil
	for _, a := range d.counted.Acks {
		st.DelegatedIn = append(st.DelegatedIn, v1.DelegatedInLicenses{LicensePool: a.ParentPool, Licenses: a.Licenses, Revision: a.Revision})
	}
}

// invalidMessage says what is wrong with spec.delegations, "" when nothing.
func (d delegations) invalidMessage() string {
	if len(d.view.Invalid) == 0 {
		return ""
	}
	msgs := make([]string, 0, len(d.view.Invalid))
	for _, e := range d.view.Invalid {
		msgs = append(msgs, e.Error())
	}
	return strings.Join(msgs, "; ") + "; these delegations count on neither side"
}

// summary adds the delegations to the Ready message.
func (d delegations) summary() string {
	var out, in int64
	for _, e := range d.plan.Delegated {
		out += int64(e.Licenses)
	}
	in = d.counted.Licenses
	var parts []string
	if out > 0 {
		parts = append(parts, fmt.Sprintf("%d delegated to sub-entities", out))
	}
	if in > 0 {
		parts = append(parts, fmt.Sprintf("%d delegated by the parent entity", in))
	}
	keys := make([]delegation.Key, 0, len(d.plan.Short))
	for k := range d.plan.Short {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b delegation.Key) int { return strings.Compare(a.Entity+"/"+a.Pool, b.Entity+"/"+b.Pool) })
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d licenses of the delegation to %q not handed over: the pool has no more", d.plan.Short[k], k.Entity))
	}
	if len(parts) == 0 {
		return ""
	}
	return ", " + strings.Join(parts, ", ")
}

// freshPool is the pool as new as this controller's last status write of it.
// The handoff counts on it: a pass that read an older copy of its own pool
// could pair an acknowledgement with a spec it has already changed. The
// cache usually has it; when it lags, the pool is read from the API server.
func (r *LicensePoolReconciler) freshPool(ctx context.Context, key types.NamespacedName, pool *v1.LicensePool) (*v1.LicensePool, error) {
	want, ok := r.ownWrites.Load(key)
	if !ok || r.APIReader == nil {
		return pool, nil
	}
	if have, err := strconv.ParseUint(pool.ResourceVersion, 10, 64); err == nil && have >= want.(uint64) {
		r.ownWrites.Delete(key)
		return pool, nil
	}
	live := &v1.LicensePool{}
	if err := r.APIReader.Get(ctx, key, live); err != nil {
		if client.IgnoreNotFound(err) == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("cannot read license pool: %w", err)
	}
	return live, nil
}

// wrote remembers the resourceVersion of the pool's status write.
func (r *LicensePoolReconciler) wrote(pool *v1.LicensePool) {
	if rv, err := strconv.ParseUint(pool.ResourceVersion, 10, 64); err == nil {
		r.ownWrites.Store(client.ObjectKeyFromObject(pool), rv)
	}
}

// poolsLinkedTo maps a pool to the pools its delegations link it with: the
// child pools it names (spec and status), and the pools of its entity's
// parent, which read its acknowledgements and its existence.
func (r *LicensePoolReconciler) poolsLinkedTo(ctx context.Context, o client.Object) []reconcile.Request {
	p := o.(*v1.LicensePool)
	seen := map[reconcile.Request]bool{}
	var reqs []reconcile.Request
	add := func(ns, name string) {
		req := reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ns, Name: name}}
		if ns != "" && !seen[req] {
			seen[req] = true
			reqs = append(reqs, req)
		}
	}
	children := map[string][]string{}
	for _, d := range p.Spec.Delegations {
		children[d.Entity] = append(children[d.Entity], d.PoolName())
	}
	for _, d := range p.Status.Delegated {
		children[d.Entity] = append(children[d.Entity], d.LicensePool)
	}
	for child, pools := range children {
		ns, err := entityns.NamespaceOf(ctx, r.Client, child)
		if err != nil {
			continue
		}
		for _, name := range pools {
			add(ns, name)
		}
	}
	e, _, err := entityns.Of(ctx, r.Client, p.Namespace)
	if err != nil || e == nil || e.Spec.Parent == "" {
		return reqs
	}
	parentNS, err := entityns.NamespaceOf(ctx, r.Client, e.Spec.Parent)
	if err != nil || parentNS == "" {
		return reqs
	}
	pools := &v1.LicensePoolList{}
	if err := r.List(ctx, pools, client.InNamespace(parentNS)); err != nil {
		return reqs
	}
	for i := range pools.Items {
		add(parentNS, pools.Items[i].Name)
	}
	return reqs
}

// delegationsChanged lets through the pool events that matter to linked
// pools: creation and deletion, the delegations of the spec, and the
// delegated and delegatedIn of the status; not the counts or reservations.
var delegationsChanged = predicate.Funcs{
	UpdateFunc: func(ev event.UpdateEvent) bool {
		o, n := ev.ObjectOld.(*v1.LicensePool), ev.ObjectNew.(*v1.LicensePool)
		return o.Generation != n.Generation && (len(o.Spec.Delegations) > 0 || len(n.Spec.Delegations) > 0) ||
			!equality.Semantic.DeepEqual(o.Status.Delegated, n.Status.Delegated) ||
			!equality.Semantic.DeepEqual(o.Status.DelegatedIn, n.Status.DelegatedIn) ||
			o.DeletionTimestamp.IsZero() != n.DeletionTimestamp.IsZero()
	},
}

// poolsOfHierarchy maps an Entity whose children changed to the pools of its
// children, whose delegations from it now count or no longer do; the pools
// of the entity itself come from poolsOfEntity.
func (r *LicensePoolReconciler) poolsOfHierarchy(ctx context.Context, o client.Object) []reconcile.Request {
	e := o.(*v1.Entity)
	reqs := r.poolsOfEntity(ctx, e)
	for _, c := range e.Status.Children {
		ns, err := entityns.NamespaceOf(ctx, r.Client, c)
		if err != nil || ns == "" {
			continue
		}
		pools := &v1.LicensePoolList{}
		if err := r.List(ctx, pools, client.InNamespace(ns)); err != nil {
			continue
		}
		for i := range pools.Items {
			reqs = append(reqs, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(&pools.Items[i])})
		}
	}
	return reqs
}

// liveDelegationReservations keeps the raises admission reserved that
// spec.delegations does not show yet and whose TTL has not run out. One
// that spec.delegations covers is counted there from now on; one that
// spec.delegations shows less than (a cut stored since, or the raise still
// on its way) waits for its TTL, which only makes admission count more.
func (r *LicensePoolReconciler) liveDelegationReservations(pool *v1.LicensePool, now time.Time) []v1.DelegationReservation {
	if len(pool.Status.DelegationReservations) == 0 {
		return pool.Status.DelegationReservations
	}
	var out []v1.DelegationReservation
	for _, res := range pool.Status.DelegationReservations {
		if now.Sub(res.ReservedAt.Time) >= r.ReservationTTL || delegates(pool, res.Entity, res.LicensePool) >= res.Licenses {
			continue
		}
		out = append(out, res)
	}
	return out
}

// delegates is what pool's spec.delegations delegates to a pool of entity.
func delegates(pool *v1.LicensePool, entity, childPool string) int32 {
	for _, d := range pool.Spec.Delegations {
		if d.Entity == entity && d.PoolName() == childPool {
			return d.Licenses
		}
	}
	return 0
}
