package metrics

import (
	"context"
	"fmt"

	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// ForgetDeleted removes the series of pools and entities as their deletion
// reaches the cache. The controllers do the same on their deletion paths, but
// only the leader runs them, while every replica serves admission and counts
// its decisions: this handler, which runs in every replica, keeps the
// replicas that are not leader from exporting the counters of a pool that is
// gone.
func ForgetDeleted(ctx context.Context, informers cache.Informers) error {
	for _, w := range []struct {
		obj    client.Object
		forget func(any)
	}{
		{&v1.LicensePool{}, func(o any) {
			if p, ok := o.(*v1.LicensePool); ok {
				ForgetPool(p.Namespace, p.Name)
			}
		}},
		{&v1.Entity{}, func(o any) {
			if e, ok := o.(*v1.Entity); ok {
				ForgetEntity(e.Name)
			}
		}},
	} {
		obj, forget := w.obj, w.forget
		inf, err := informers.GetInformer(ctx, obj)
		if err != nil {
			return fmt.Errorf("cannot watch %T for metrics: %w", obj, err)
		}
		if _, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{DeleteFunc: func(o any) {
			if d, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			forget(o)
		}}); err != nil {
			return fmt.Errorf("cannot watch %T for metrics: %w", obj, err)
		}
	}
	return nil
}
