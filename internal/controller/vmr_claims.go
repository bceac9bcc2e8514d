package controller

import (
	"context"
	"fmt"
	"slices"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/rooms"
)

// claimAll makes vmr the holder of every dial string of dial, in order, and
// returns the first one another room holds, with its claim. Dial strings are
// claimed in one total order (sorted), so two rooms that want overlapping
// sets never each hold what the other waits for. Claims already held are
// kept while the room waits: the first to claim keeps a dial string.
//
// In steady state this reads the cache only: a claim the cache shows as the
// room's costs nothing.
func (r *VMRReconciler) claimAll(ctx context.Context, vmr *v1.VMR, dial []string) (*v1.DialStringClaim, string, error) {
	for _, d := range dial {
		holder, err := r.claim(ctx, vmr, d)
		if err != nil {
			return nil, "", err
		}
		if holder != nil {
			return holder, d, nil
		}
	}
	return nil, "", nil
}

// claim makes vmr the holder of dial and returns nil, or returns the claim of
// the room that holds it. Creating the claim is the atomic step: of two
// rooms creating it at the same instant, on any replica, the API server
// refuses one. A claim whose room is gone (deleted without its finalizer) is
// stale and replaced; one held by a room that is not provisioned with the
// dial string is taken over by a room that is (rooms.TakesOver), so that an
// already provisioned room always keeps what it dials by.
func (r *VMRReconciler) claim(ctx context.Context, vmr *v1.VMR, dial string) (*v1.DialStringClaim, error) {
	name := rooms.ClaimName(dial)
	cached := &v1.DialStringClaim{}
	err := r.Get(ctx, client.ObjectKey{Name: name}, cached)
	switch {
	case err == nil && cached.Spec.VMR.UID == string(vmr.UID):
		return nil, nil
	case err != nil && !apierrors.IsNotFound(err):
		return nil, fmt.Errorf("cannot read the claim of %q: %w", dial, err)
	}
	for attempt := 0; attempt < 3; attempt++ {
		err := r.Create(ctx, newClaim(vmr, dial))
		switch {
		case err == nil:
			return nil, nil
		case !apierrors.IsAlreadyExists(err):
			return nil, fmt.Errorf("cannot claim %q: %w", dial, err)
		}
		// The cache may be behind: the API server says who holds it.
		live := &v1.DialStringClaim{}
		if err := r.reader().Get(ctx, client.ObjectKey{Name: name}, live); err != nil {
			if apierrors.IsNotFound(err) {
				continue // released meanwhile
			}
			return nil, fmt.Errorf("cannot read the claim of %q: %w", dial, err)
		}
		if live.Spec.VMR.UID == string(vmr.UID) {
			return nil, nil
		}
		if live.Spec.DialString != dial {
			return nil, fmt.Errorf("claim %s is for %q, not %q", name, live.Spec.DialString, dial)
		}
		replace, why, err := r.replaceable(ctx, vmr, live)
		if err != nil {
			return nil, err
		}
		if !replace {
			return live, nil
		}
		log.FromContext(ctx).Info("Taking over a dial string's claim", "dialString", dial,
			"from", live.Spec.VMR.Namespace+"/"+live.Spec.VMR.Name, "why", why)
		// Preconditions: only the claim just judged is removed, never one
		// made since.
		err = r.Delete(ctx, live, client.Preconditions{UID: &live.UID, ResourceVersion: &live.ResourceVersion})
		if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
			return nil, fmt.Errorf("cannot remove the claim of %q: %w", dial, err)
		}
	}
	return nil, fmt.Errorf("the claim of %q keeps changing; trying again", dial)
}

// replaceable reports whether claim, held by another room, may be replaced by
// vmr's: its room is gone, or vmr takes over (rooms.TakesOver).
func (r *VMRReconciler) replaceable(ctx context.Context, vmr *v1.VMR, claim *v1.DialStringClaim) (bool, string, error) {
	h := claim.Spec.VMR
	holder := &v1.VMR{}
	err := r.reader().Get(ctx, client.ObjectKey{Namespace: h.Namespace, Name: h.Name}, holder)
	switch {
	case apierrors.IsNotFound(err):
		return true, "its room is gone", nil
	case err != nil:
		return false, "", fmt.Errorf("cannot read VMR %s/%s: %w", h.Namespace, h.Name, err)
	case string(holder.UID) != h.UID:
		return true, "its room is gone", nil
	}
	d := claim.Spec.DialString
	if rooms.TakesOver(rooms.Claimant{Provisioned: r.provisionedWith(vmr, d)}, rooms.Claimant{Provisioned: r.provisionedWith(holder, d)}) {
		return true, "this room is provisioned with it and the holder is not", nil
	}
	return false, "", nil
}

// provisionedWith reports whether v's status says its backend room dials by d.
func (r *VMRReconciler) provisionedWith(v *v1.VMR, d string) bool {
	if v.Status.BackendRef == "" || !meta.IsStatusConditionTrue(v.Status.Conditions, v1.ProvisionedCondition) {
		return false
	}
	st := v.Status
	return d == st.NumericID || slices.Contains(st.Aliases, d) ||
		(st.SIPURI != "" && "sip:"+d == st.SIPURI)
}

func newClaim(vmr *v1.VMR, dial string) *v1.DialStringClaim {
	return &v1.DialStringClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name: rooms.ClaimName(dial),
			Labels: map[string]string{
				v1.ManagedByLabel: v1.ManagedByValue,
				v1.VMRUIDLabel:    string(vmr.UID),
			},
		},
		Spec: v1.DialStringClaimSpec{
			DialString: dial,
			VMR:        v1.ClaimHolder{Namespace: vmr.Namespace, Name: vmr.Name, UID: string(vmr.UID)},
		},
	}
}

// releaseClaims removes the claims vmr holds for dial strings keep does not
// keep, as seen in the cache: a claim the cache does not show yet is found on
// the room's next pass. With keep nil, when the room goes, every claim goes,
// as the API server lists them (one live list per deleted room), so that
// none is left behind.
func (r *VMRReconciler) releaseClaims(ctx context.Context, vmr *v1.VMR, keep func(string) bool) error {
	list := &v1.DialStringClaimList{}
	// The cache finds the room's claims by index; the API server, by the
	// label every claim carries.
	var err error
	if keep == nil {
		err = r.reader().List(ctx, list, client.MatchingLabels{v1.VMRUIDLabel: string(vmr.UID)})
	} else {
		err = r.List(ctx, list, client.MatchingFields{index.ClaimVMR: string(vmr.UID)})
	}
	if err != nil {
		return fmt.Errorf("cannot list the room's claims: %w", err)
	}
	for i := range list.Items {
		c := &list.Items[i]
		if c.Spec.VMR.UID != string(vmr.UID) || (keep != nil && keep(c.Spec.DialString)) {
			continue
		}
		err := r.Delete(ctx, c, client.Preconditions{UID: &c.UID})
		if err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cannot release the claim of %q: %w", c.Spec.DialString, err)
		}
		log.FromContext(ctx).V(1).Info("Released a dial string", "dialString", c.Spec.DialString)
	}
	return nil
}
