package webhook

import (
	"context"
	"fmt"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/hierarchy"
)

// +kubebuilder:webhook:path=/validate-tenancy-visio-dev-v1alpha1-entity,mutating=false,failurePolicy=fail,sideEffects=None,groups=tenancy.visio.dev,resources=entities,verbs=create;delete,versions=v1alpha1,name=ventity.tenancy.visio.dev,admissionReviewVersions=v1,timeoutSeconds=10

// EntityValidator enforces deletion protection (an Entity that still has
// users, rooms or sub-entities is not deleted while spec.deletionProtection
// is true) and the one-level hierarchy of sub-entities at creation
// (spec.parent cannot change afterwards: the schema says so).
type EntityValidator struct {
	checker
	// APIReader counts what remains from the API server, not the cache: a
	// deletion is rare and cannot be undone, so a user created a moment ago
	// and not yet in this replica's cache must still protect its entity. The
	// hierarchy is read from it too: a parent and a child created at the same
	// instant must see each other as soon as the API server has either.
	APIReader client.Reader
}

// ValidateCreate refuses a sub-entity that would not stand in its parent's
// hierarchy: a parent that has a parent, the platform entity as parent or
// child, or an entity that other entities already name as their parent. A
// parent that does not exist yet is admitted with a warning (GitOps may
// apply the child first); the entity stays out of the hierarchy until it
// exists.
func (v *EntityValidator) ValidateCreate(ctx context.Context, e *v1.Entity) (admission.Warnings, error) {
	if e.Spec.Parent == "" {
		return nil, nil
	}
	path := field.NewPath("spec", "parent")
	var parent *v1.Entity
	p := &v1.Entity{}
	switch err := v.APIReader.Get(ctx, client.ObjectKey{Name: e.Spec.Parent}, p); {
	case apierrors.IsNotFound(err):
	case err != nil:
		return nil, apierrors.NewInternalError(fmt.Errorf("cannot read parent entity %q: %w", e.Spec.Parent, err))
	default:
		parent = p
	}
	var warnings admission.Warnings
	switch s := hierarchy.Check(e, parent, v.opts.PlatformEntity); {
	case s.Reason == v1.ReasonParentNotFound:
		warnings = append(warnings, fmt.Sprintf("spec.parent: %s", s.Condition))
	case !s.InHierarchy():
		return nil, invalidEntity(e, field.Invalid(path, e.Spec.Parent, s.Message))
	}
	children := &v1.EntityList{}
	if err := v.APIReader.List(ctx, children, client.MatchingFields{v1.ParentFieldSelector: e.Name}); err != nil {
		return nil, apierrors.NewInternalError(fmt.Errorf("cannot list the sub-entities of %q: %w", e.Name, err))
	}
	if len(children.Items) > 0 {
		names := make([]string, 0, len(children.Items))
		for i := range children.Items {
			names = append(names, children.Items[i].Name)
		}
		slices.Sort(names)
		return nil, invalidEntity(e, field.Invalid(path, e.Spec.Parent, hierarchy.HasChildrenMessage(e.Name, e.Spec.Parent, names)))
	}
	return warnings, nil
}

func invalidEntity(e *v1.Entity, errs ...*field.Error) error {
	return apierrors.NewInvalid(v1.GroupVersion.WithKind("Entity").GroupKind(), e.Name, errs)
}

// ValidateUpdate has nothing to check beyond the schema (spec.parent is
// immutable there).
func (v *EntityValidator) ValidateUpdate(context.Context, *v1.Entity, *v1.Entity) (admission.Warnings, error) {
	return nil, nil
}

// ValidateDelete refuses to delete a protected Entity that still has users or
// rooms, and says what remains.
func (v *EntityValidator) ValidateDelete(ctx context.Context, e *v1.Entity) (admission.Warnings, error) {
	if !e.DeletionProtected() {
		return nil, nil
	}
	ns := e.NamespaceName()
	users := &v1.PlatformUserList{}
	if err := v.APIReader.List(ctx, users, client.InNamespace(ns)); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	vmrs := &v1.VMRList{}
	if err := v.APIReader.List(ctx, vmrs, client.InNamespace(ns)); err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	var remains []string
	if n := len(users.Items); n > 0 {
		remains = append(remains, plural(n, "PlatformUser"))
	}
	if n := len(vmrs.Items); n > 0 {
		remains = append(remains, plural(n, "VMR"))
	}
	children, err := hierarchy.ProtectingChildren(ctx, v.APIReader, e, v.opts.PlatformEntity)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	if len(remains) == 0 && len(children) == 0 {
		return nil, nil
	}
	var what []string
	if len(remains) > 0 {
		what = append(what, fmt.Sprintf("%s in namespace %q", strings.Join(remains, " and "), ns))
	}
	if len(children) > 0 {
		what = append(what, fmt.Sprintf("%s %s naming it as parent", plural(len(children), "sub-entity"), hierarchy.Names(children, 10)))
	}
	// The message starts with the reason the Entity's conditions use for the
	// same refusal, so that what a GitOps tool reports of a refused prune
	// (Flux's PruneFailed message, Argo CD's sync result) names it too.
	return nil, apierrors.NewForbidden(v1.GroupVersion.WithResource("entities").GroupResource(), e.Name, fmt.Errorf(
		"%s: entity %q is protected from deletion and still has %s; delete them first, or set spec.deletionProtection to false to delete everything",
		v1.ReasonDeletionProtected, e.Name, strings.Join(what, ", and ")))
}

func plural(n int, kind string) string {
	switch {
	case n == 1:
		return "1 " + kind
	case strings.HasSuffix(kind, "y"):
		return fmt.Sprintf("%d %sies", n, strings.TrimSuffix(kind, "y"))
	}
	return fmt.Sprintf("%d %ss", n, kind)
}
