package delegation

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/entityns"
	"visio.dev/operator/internal/hierarchy"
	"visio.dev/operator/internal/index"
)

// View is what a pool's delegations depend on, as one read saw it: what it
// delegates (Outs), what its parent entity's pools delegate to it (Ins), and
// the entries of its spec.delegations that count on neither side (Invalid).
type View struct {
	Outs    []Out
	Ins     []In
	Invalid field.ErrorList
}

// Capacity is the pool's capacity once its delegations are applied to base,
// as the pool controller counts it; admission uses the same.
func (v View) Capacity(base int32) (int32, Plan, Counted) {
	in := CountIn(v.Ins)
	plan := PlanOut(Apply(base, in.Licenses), v.Outs)
	return Apply(base, in.Licenses-plan.Deducted), plan, in
}

// Look gathers the view of pool, a pool of entity, through r (the manager's
// cache). A cache that lags only makes the parent deduct more or the child
// count less (see the package comment); the pool itself must be at least as
// new as its own last status write.
func Look(ctx context.Context, r client.Reader, pool *v1.LicensePool, entity *v1.Entity, platformEntity string) (View, error) {
	var v View
	rel, err := hierarchy.Lookup(ctx, r, entity, platformEntity)
	if err != nil {
		return v, err
	}
	if rel.Parent != nil {
		if v.Ins, err = ins(ctx, r, pool, entity, rel.Parent); err != nil {
			return v, err
		}
	}
	children := map[string]*v1.Entity{}
	for _, c := range rel.Children {
		children[c.Name] = c
	}

	outs := map[Key]*Out{}
	var order []Key
	get := func(k Key) *Out {
		if o := outs[k]; o != nil {
			return o
		}
		outs[k] = &Out{Key: k}
		order = append(order, k)
		return outs[k]
	}
	path := field.NewPath("spec", "delegations")
	for i, d := range pool.Spec.Delegations {
		o := get(Key{Entity: d.Entity, Pool: d.PoolName()})
		o.InSpec, o.Spec = true, d.Licenses
		errs := validate(ctx, r, path.Index(i), d, entity, children, platformEntity)
		if len(errs) > 0 {
			v.Invalid = append(v.Invalid, errs...)
			continue
		}
		o.Valid = true
	}
	for _, d := range pool.Status.Delegated {
		k := Key{Entity: d.Entity, Pool: d.LicensePool}
		get(k).Published = Entry{Key: k, Licenses: d.Licenses, Offered: d.Offered, Revision: d.Revision}
	}
	for _, k := range order {
		o := outs[k]
		if !o.InSpec && o.Published == (Entry{}) {
			continue
		}
		if err := child(ctx, r, pool.Name, o); err != nil {
			return v, err
		}
		v.Outs = append(v.Outs, *o)
	}
	return v, nil
}

// validate checks one entry of spec.delegations.
func validate(ctx context.Context, r client.Reader, p *field.Path, d v1.LicenseDelegation, entity *v1.Entity,
	children map[string]*v1.Entity, platformEntity string) field.ErrorList {
	ep := p.Child("entity")
	switch {
	case d.Licenses < 1:
		return field.ErrorList{field.Invalid(p.Child("licenses"), d.Licenses, "must be at least 1")}
	case d.Entity == entity.Name:
		return field.ErrorList{field.Invalid(ep, d.Entity, fmt.Sprintf("a pool of entity %q cannot delegate licenses to its own entity", entity.Name))}
	case d.Entity == platformEntity:
		return field.ErrorList{field.Invalid(ep, d.Entity, fmt.Sprintf("%q is the platform entity, which is neither parent nor child", d.Entity))}
	case !hierarchy.CanBeParent(entity, platformEntity):
		return field.ErrorList{field.Invalid(ep, d.Entity, fmt.Sprintf("entity %q cannot have sub-entities (it is a sub-entity itself, or the platform entity), so its pools cannot delegate", entity.Name))}
	}
	c := children[d.Entity]
	if c == nil {
		return field.ErrorList{field.Invalid(ep, d.Entity, fmt.Sprintf("entity %q is not a sub-entity of %q (no Entity of that name stands with spec.parent %q)", d.Entity, entity.Name, entity.Name))}
	}
	ns, err := entityns.NamespaceOf(ctx, r, c.Name)
	if err != nil {
		return field.ErrorList{field.InternalError(ep, err)}
	}
	if ns != "" {
		err = r.Get(ctx, client.ObjectKey{Namespace: ns, Name: d.PoolName()}, &v1.LicensePool{})
		if err == nil {
			return nil
		}
		if !apierrors.IsNotFound(err) {
			return field.ErrorList{field.InternalError(p.Child("licensePool"), err)}
		}
	}
	return field.ErrorList{field.Invalid(p.Child("licensePool"), d.PoolName(), fmt.Sprintf("license pool %q of entity %q does not exist", d.PoolName(), d.Entity))}
}

// child fills in what the child pool of o says: its acknowledgement of
// parentPool, or that it is gone with nobody holding its licenses.
func child(ctx context.Context, r client.Reader, parentPool string, o *Out) error {
	ns, err := entityns.NamespaceOf(ctx, r, o.Entity)
	if err != nil {
		return err
	}
	if ns == "" {
		ns = "entity-" + o.Entity // gone: its namespace may still hold users
	}
	p := &v1.LicensePool{}
	switch err := r.Get(ctx, client.ObjectKey{Namespace: ns, Name: o.Pool}, p); {
	case apierrors.IsNotFound(err):
		users := &v1.PlatformUserList{}
		if err := r.List(ctx, users, client.InNamespace(ns), client.MatchingFields{index.UserPool: o.Pool}); err != nil {
			return fmt.Errorf("cannot list the users of license pool %q of entity %q: %w", o.Pool, o.Entity, err)
		}
		for i := range users.Items {
			u := &users.Items[i]
			if u.Status.LicensePool == o.Pool && meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition) {
				return nil
			}
		}
		o.ChildGone = true
		return nil
	case err != nil:
		return fmt.Errorf("cannot read license pool %q of entity %q: %w", o.Pool, o.Entity, err)
	}
	for _, in := range p.Status.DelegatedIn {
		if in.LicensePool == parentPool {
			o.Ack = &Ack{Licenses: in.Licenses, Revision: in.Revision}
		}
	}
	return nil
}

// ins lists what the pools of parent delegate to pool.
func ins(ctx context.Context, r client.Reader, pool *v1.LicensePool, entity, parent *v1.Entity) ([]In, error) {
	ns, err := entityns.NamespaceOf(ctx, r, parent.Name)
	if err != nil || ns == "" {
		return nil, err
	}
	pools := &v1.LicensePoolList{}
	if err := r.List(ctx, pools, client.InNamespace(ns)); err != nil {
		return nil, fmt.Errorf("cannot list the license pools of entity %q: %w", parent.Name, err)
	}
	var out []In
	for i := range pools.Items {
		p := &pools.Items[i]
		in := In{ParentPool: p.Name}
		for _, d := range p.Spec.Delegations {
			if d.Entity == entity.Name && d.PoolName() == pool.Name {
				in.InSpec, in.Spec = true, d.Licenses
			}
		}
		for _, d := range p.Status.Delegated {
			if d.Entity == entity.Name && d.LicensePool == pool.Name {
				in.Published = Entry{Key: Key{Entity: d.Entity, Pool: d.LicensePool}, Licenses: d.Licenses, Offered: d.Offered, Revision: d.Revision}
			}
		}
		if in.InSpec || in.Published != (Entry{}) {
			out = append(out, in)
		}
	}
	return out, nil
}
