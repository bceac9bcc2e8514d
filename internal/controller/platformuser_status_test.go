package controller

import (
	"slices"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/capabilities"
	"visio.dev/operator/internal/licensing"
)

// TestDesiredUserStatusPlace: where a user lives decides what its role and
// license give it, whatever admission let in.
func TestDesiredUserStatusPlace(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	pool := &v1.LicensePool{ObjectMeta: metav1.ObjectMeta{Namespace: "entity-a", Name: "default"}}
	licensed := licensing.Decision{Outcome: licensing.Granted, Licensed: true, Since: &now}
	user := func(role v1.PlatformUserRole, active bool) *v1.PlatformUser {
		return &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Namespace: "entity-a", Name: "u", Generation: 1},
			Spec: v1.PlatformUserSpec{Email: "u@a.example", Role: role, Active: ptr.To(active)}}
	}
	inA := userPlace{namespace: "entity-a", entity: "a", platformEntity: "platform", platformNS: "entity-platform"}
	inPlatform := userPlace{namespace: "entity-platform", entity: "platform", platform: true, platformEntity: "platform", platformNS: "entity-platform"}
	holder := &v1.PlatformUser{ObjectMeta: metav1.ObjectMeta{Name: "first"}}
	clash := inA
	clash.emailHolders = map[string]*v1.PlatformUser{"u": holder}
	forged := userPlace{namespace: "entity-a", platformEntity: "platform"}

	r := &LicensePoolReconciler{}
	for _, tc := range []struct {
		name      string
		u         *v1.PlatformUser
		d         licensing.Decision
		place     userPlace
		reason    string // of Ready
		ready     bool
		caps      []v1.Capability
		holdsLics bool
	}{
		{"Concierge in the platform entity", user(v1.RoleConcierge, true), licensed, inPlatform, v1.ReasonLicensed, true,
			capabilities.For(v1.RoleConcierge, true), true},
		{"Concierge elsewhere, licensed", user(v1.RoleConcierge, true), licensed, inA, v1.ReasonConciergeOutsidePlatform, false,
			capabilities.For(v1.RoleAdministrator, true), true},
		{"Concierge elsewhere, inactive", user(v1.RoleConcierge, false), licensing.Decision{}, inA, v1.ReasonConciergeOutsidePlatform, false,
			capabilities.For(v1.RoleAdministrator, false), false},
		{"Administrator that lost its email", user(v1.RoleAdministrator, true), licensing.Decision{}, clash, v1.ReasonEmailConflict, false, nil, false},
		{"user of a forged namespace", user(v1.RoleAdministrator, true), licensing.Decision{}, forged, v1.ReasonNotInEntityNamespace, false, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := r.desiredUserStatus(tc.u, "default", pool, tc.d, 5, licensing.Allocation{}, tc.place)
			ready := meta.FindStatusCondition(st.Conditions, v1.ReadyCondition)
			if ready == nil || ready.Reason != tc.reason || (ready.Status == metav1.ConditionTrue) != tc.ready {
				t.Fatalf("Ready = %+v, want reason %s ready %v", ready, tc.reason, tc.ready)
			}
			if !tc.ready && !meta.IsStatusConditionTrue(st.Conditions, v1.StalledCondition) {
				t.Errorf("not Stalled: %+v", st.Conditions)
			}
			if !slices.Equal(st.Capabilities, tc.caps) {
				t.Errorf("capabilities = %v, want %v", st.Capabilities, tc.caps)
			}
			if got := meta.IsStatusConditionTrue(st.Conditions, v1.LicensedCondition); got != tc.holdsLics {
				t.Errorf("Licensed = %v, want %v", got, tc.holdsLics)
			}
			if slices.Contains(st.Capabilities, v1.CapabilityManagePermanentVMRs) && !tc.place.platform {
				t.Errorf("Concierge capability outside the platform entity: %v", st.Capabilities)
			}
		})
	}
}
