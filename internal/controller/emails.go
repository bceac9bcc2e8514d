package controller

import (
	"context"
	"fmt"

	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/email"
	"visio.dev/operator/internal/index"
)

// emailHolder returns the user that holds u's email in u's entity, when that
// is another user: the oldest by creation time, then by name. Admission
// refuses a second user with a taken email, but two created at the same
// instant both pass its check (each is the first in the webhook's cache), and
// without admission nothing checks at all: this is the rule that decides,
// the same for the RBAC bindings and for the user's status.
func emailHolder(ctx context.Context, c client.Reader, u *v1.PlatformUser) (*v1.PlatformUser, error) {
	list := &v1.PlatformUserList{}
	if err := c.List(ctx, list, client.InNamespace(u.Namespace), client.MatchingFields{index.UserEmail: email.Canonical(u.Spec.Email)}); err != nil {
		return nil, fmt.Errorf("cannot list users with the email of user %q: %w", u.Name, err)
	}
	var holder *v1.PlatformUser
	for i := range list.Items {
		o := &list.Items[i]
		if !o.DeletionTimestamp.IsZero() && o.Name != u.Name {
			continue
		}
		if holder == nil || olderUser(o, holder) {
			holder = o
		}
	}
	if holder == nil || holder.Name == u.Name {
		return nil, nil
	}
	return holder, nil
}

func olderUser(a, b *v1.PlatformUser) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// emailHolders drops from users those whose email another user of their
// entity holds: they are bound to nothing.
func emailHolders(ctx context.Context, c client.Reader, users []v1.PlatformUser) ([]v1.PlatformUser, error) {
	out := users[:0:0]
	for i := range users {
		other, err := emailHolder(ctx, c, &users[i])
		if err != nil {
			return nil, err
		}
		if other == nil {
			out = append(out, users[i])
		}
	}
	return out, nil
}

// emailConflictMessage says which user holds the email of the one that lost it.
func emailConflictMessage(u, holder *v1.PlatformUser) string {
	return fmt.Sprintf("email %q is already used by PlatformUser %q of this entity, created first; this user is bound to no role and holds no license: change spec.email or delete one of the two",
		email.Canonical(u.Spec.Email), holder.Name)
}
