package webhook

import (
	"context"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/index"
)

// userView is where a ledger reads the users of a pool from: this replica's
// cache, which is cheap and may lag the API server by a moment, or one list
// of the namespace read from the API server, which does not.
type userView interface {
	// poolUsers are the users that name the pool or hold one of its licenses.
	poolUsers(ctx context.Context, pool *v1.LicensePool) ([]v1.PlatformUser, error)
	// user is the named user, nil when there is none.
	user(ctx context.Context, namespace, name string) (*v1.PlatformUser, error)
	// live tells that the view is the API server's own.
	live() bool
}

// cachedUsers is the view of this replica's cache, through its pool index.
type cachedUsers struct{ cache client.Reader }

func (c cachedUsers) poolUsers(ctx context.Context, pool *v1.LicensePool) ([]v1.PlatformUser, error) {
	users := &v1.PlatformUserList{}
	if err := c.cache.List(ctx, users, client.InNamespace(pool.Namespace), client.MatchingFields{index.UserPool: pool.Name}); err != nil {
		return nil, err
	}
	return users.Items, nil
}

func (c cachedUsers) user(ctx context.Context, namespace, name string) (*v1.PlatformUser, error) {
	u := &v1.PlatformUser{}
	if err := c.cache.Get(ctx, types.NamespacedName{Namespace: namespace, Name: name}, u); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("cannot read user %q: %w", name, err)
	}
	return u, nil
}

func (cachedUsers) live() bool { return false }

// liveUsers is every user of one namespace as the API server listed them.
// The whole namespace rather than the pool's users: the pool a user names is
// not a field the API server selects on, and a reserved user that moved away
// must be found without a read of its own.
type liveUsers struct{ byName map[string]*v1.PlatformUser }

func listLiveUsers(ctx context.Context, reader client.Reader, namespace string) (liveUsers, error) {
	users := &v1.PlatformUserList{}
	if err := reader.List(ctx, users, client.InNamespace(namespace)); err != nil {
		return liveUsers{}, fmt.Errorf("cannot list the users of namespace %q: %w", namespace, err)
	}
	byName := make(map[string]*v1.PlatformUser, len(users.Items))
	for i := range users.Items {
		byName[users.Items[i].Name] = &users.Items[i]
	}
	return liveUsers{byName: byName}, nil
}

func (l liveUsers) poolUsers(_ context.Context, pool *v1.LicensePool) ([]v1.PlatformUser, error) {
	var in []v1.PlatformUser
	for _, u := range l.byName {
		if u.PoolName() == pool.Name || u.Status.LicensePool == pool.Name {
			in = append(in, *u)
		}
	}
	return in, nil
}

func (l liveUsers) user(_ context.Context, _, name string) (*v1.PlatformUser, error) {
	return l.byName[name], nil
}

func (liveUsers) live() bool { return true }
