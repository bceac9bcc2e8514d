package controller

import (
	"context"
	"fmt"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/entityns"
)

// userPlace is what a pass knows of where its users live, beyond their pool:
// whether their namespace is an entity's (no license otherwise), whether it
// is the platform entity's (the Concierge role counts there only), and which
// users lost their email to an older user of the entity.
type userPlace struct {
	namespace string
	// entity is the Entity of the namespace, "" when it is no entity's.
	entity string
	// platform: the namespace is the platform entity's.
	platform bool
	// platformEntity and platformNS say where Concierges belong, for messages.
	platformEntity, platformNS string
	// emailHolders maps a user that lost its email to the user holding it.
	emailHolders map[string]*v1.PlatformUser
}

// placeOf gathers the place of users, all of namespace.
func (r *LicensePoolReconciler) placeOf(ctx context.Context, namespace string, users []v1.PlatformUser) (userPlace, error) {
	p := userPlace{namespace: namespace, platformEntity: r.PlatformEntity}
	e, _, err := entityns.Of(ctx, r.Client, namespace)
	if err != nil {
		return p, err
	}
	if e == nil {
		return p, nil
	}
	p.entity = e.Name
	p.platform = e.Name == r.PlatformEntity
	if p.platform {
		p.platformNS = namespace
	}
	for i := range users {
		u := &users[i]
		if !p.platform && p.platformNS == "" && u.RoleOrDefault() == v1.RoleConcierge {
			if p.platformNS, err = entityns.NamespaceOf(ctx, r.Client, r.PlatformEntity); err != nil {
				return p, err
			}
		}
		holder, err := emailHolder(ctx, r.Client, u)
		if err != nil {
			return p, err
		}
		if holder != nil {
			if p.emailHolders == nil {
				p.emailHolders = map[string]*v1.PlatformUser{}
			}
			p.emailHolders[u.Name] = holder
		}
	}
	return p, nil
}

// blocked: the user may hold no license, whatever its pool has.
func (p userPlace) blocked(u *v1.PlatformUser) bool {
	return p.entity == "" || p.emailHolders[u.Name] != nil
}

// misplacedConcierge: the user carries the Concierge role outside the
// platform entity.
func (p userPlace) misplacedConcierge(u *v1.PlatformUser) bool {
	return u.RoleOrDefault() == v1.RoleConcierge && !p.platform
}

// effectiveRole is the role whose capabilities the user gets: a Concierge
// outside the platform entity gets an Administrator's, not more.
func (p userPlace) effectiveRole(u *v1.PlatformUser) v1.PlatformUserRole {
	if p.misplacedConcierge(u) {
		return v1.RoleAdministrator
	}
	return u.RoleOrDefault()
}

func (p userPlace) notInEntityMessage(what string) string {
	return fmt.Sprintf("namespace %q belongs to no entity: a %s there gets no license; create it in the namespace of an Entity (kubectl get entities)",
		p.namespace, what)
}

func (p userPlace) misplacedConciergeMessage() string {
	where := fmt.Sprintf("the platform entity %q", p.platformEntity)
	if p.platformNS != "" {
		where += fmt.Sprintf(" (namespace %q)", p.platformNS)
	}
	return fmt.Sprintf("the Concierge role is valid only in %s: this user has no Concierge right, only what an Administrator of entity %q has; set spec.role to Administrator, or create the Concierge in the platform entity",
		where, p.entity)
}
