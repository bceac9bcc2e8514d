package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/api/meta"

	v1 "visio.dev/operator/api/v1alpha1"
)

// roles are the values of the role label; every entity has a series for each
// role and state, zero included, so that a query over an entity finds its
// zeros rather than nothing.
var roles = []v1.PlatformUserRole{v1.RoleUser, v1.RoleDelegatedOrganizer, v1.RoleAdministrator, v1.RoleConcierge}

// ObserveEntity publishes the users and rooms of an entity from the lists its
// rollup has just counted.
func ObserveEntity(entity string, users []v1.PlatformUser, vmrs []v1.VMR) {
	type key struct {
		role  v1.PlatformUserRole
		state string
	}
	counts := map[key]int{}
	for i := range users {
		u := &users[i]
		state := UserWaiting
		switch {
		case !u.IsActive():
			state = UserInactive
		case meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition):
			state = UserLicensed
		}
		counts[key{u.RoleOrDefault(), state}]++
	}
	for _, role := range roles {
		for _, state := range []string{UserLicensed, UserWaiting, UserInactive} {
			k := key{role, state}
			entityUsers.WithLabelValues(entity, string(role), state).Set(float64(counts[k]))
			delete(counts, k)
		}
	}
	for k, n := range counts { // a role this package does not know yet
		entityUsers.WithLabelValues(entity, string(k.role), k.state).Set(float64(n))
	}

	ready := 0
	for i := range vmrs {
		if meta.IsStatusConditionTrue(vmrs[i].Status.Conditions, v1.ReadyCondition) {
			ready++
		}
	}
	entityVMRs.WithLabelValues(entity, VMRReady).Set(float64(ready))
	entityVMRs.WithLabelValues(entity, VMRNotReady).Set(float64(len(vmrs) - ready))
}

// parents remembers the parent each entity's info series carries, so that a
// sub-entity that joins or leaves its parent's hierarchy changes series
// without a scrape seeing it in neither.
var parents = struct {
	sync.Mutex
	m map[string]string
}{m: map[string]string{}}

// ObserveHierarchy publishes where the entity stands: parent is the entity it
// is a sub-entity of, "" when it is none or is kept out of the hierarchy.
// Dashboards join on it to group sub-entities under their parent.
func ObserveHierarchy(entity, parent string) {
	org := parent
	if org == "" {
		org = entity
	}
	parents.Lock()
	defer parents.Unlock()
	entityInfo.WithLabelValues(entity, parent, org).Set(1)
	if old, ok := parents.m[entity]; ok && old != parent {
		oldOrg := old
		if oldOrg == "" {
			oldOrg = entity
		}
		entityInfo.DeleteLabelValues(entity, old, oldOrg)
	}
	parents.m[entity] = parent
}

// ForgetEntity removes every series of an entity that is gone, its pools'
// included.
func ForgetEntity(entity string) {
	l := prometheus.Labels{LabelEntity: entity}
	entityUsers.DeletePartialMatch(l)
	entityVMRs.DeletePartialMatch(l)
	entityInfo.DeletePartialMatch(l)
	parents.Lock()
	delete(parents.m, entity)
	parents.Unlock()
	entities.Lock()
	defer entities.Unlock()
	for k, e := range entities.m {
		if e == entity {
			delete(entities.m, k)
		}
	}
	for _, v := range poolVecs {
		v.DeletePartialMatch(l)
	}
}
