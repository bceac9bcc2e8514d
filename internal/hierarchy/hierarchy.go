// Package hierarchy holds the rules of sub-entities: which Entity may be a
// parent, whether a child stands in its parent's hierarchy, and the subtree
// counts of a parent. The admission webhook and the Entity controller apply
// the same rules, so what one refuses the other never grants.
//
// The rules depend on specs only (spec.parent is set at creation and never
// changes), never on the order in which entities were created or reconciled:
//   - an entity may be a parent when it has no parent and is not the platform
//     entity;
//   - a child stands in the hierarchy when its parent exists and may be a
//     parent, and the child is not the platform entity.
//
// So when a parent and a child of that child are created at the same instant
// and both pass admission, the grandchild is the one kept out, whatever the
// order: its parent has a parent.
package hierarchy

import (
	"fmt"
	"reflect"
	"strings"

	v1 "visio.dev/operator/api/v1alpha1"
)

// CanBeParent reports whether e may have sub-entities.
func CanBeParent(e *v1.Entity, platformEntity string) bool {
	return e.Spec.Parent == "" && e.Name != platformEntity
}

// Standing is where a sub-entity stands: Reason is empty when it is in its
// parent's hierarchy, else the Stalled reason (ReasonNestingTooDeep,
// ReasonParentNotFound); Message says why, naming both entities, as
// admission refuses it; Condition says the same and what the controller does
// about it, as the entity's Stalled condition.
type Standing struct {
	Reason    string
	Message   string
	Condition string
}

// InHierarchy reports whether the child stands in its parent's hierarchy.
func (s Standing) InHierarchy() bool { return s.Reason == "" }

// Check says where child, an entity with spec.parent set, stands; parent is
// the Entity spec.parent names, or nil when it does not exist.
func Check(child, parent *v1.Entity, platformEntity string) Standing {
	name, want := child.Name, child.Spec.Parent
	const out = "; it stays out of the hierarchy: the administrators of %q get nothing in it and %q does not count it"
	tooDeep := func(format string, args ...any) Standing {
		msg := fmt.Sprintf(format, args...)
		return Standing{v1.ReasonNestingTooDeep, msg, msg + fmt.Sprintf(out, want, want)}
	}
	switch {
	case child.Name == platformEntity:
		return tooDeep("entity %q is the platform entity and cannot be a sub-entity of %q: the platform entity is neither parent nor child", name, want)
	case want == platformEntity:
		return tooDeep("entity %q cannot be a sub-entity of %q: %q is the platform entity, which is neither parent nor child", name, want, want)
	case want == name:
		return tooDeep("entity %q cannot be its own parent", name)
	case parent == nil:
		msg := fmt.Sprintf("entity %q names %q as its parent, which does not exist", name, want)
		return Standing{v1.ReasonParentNotFound, msg, msg + fmt.Sprintf("; it stays out of the hierarchy until Entity %q is created", want)}
	case parent.Spec.Parent != "":
		return tooDeep("entity %q cannot be a sub-entity of %q: %q is itself a sub-entity of %q, and sub-entities are one level deep (name %q or another entity without a parent)",
			name, want, want, parent.Spec.Parent, parent.Spec.Parent)
	}
	return Standing{}
}

// HasChildrenMessage is admission's refusal of an entity that would become a
// sub-entity of parent while entities already name it as their parent.
func HasChildrenMessage(name, parent string, children []string) string {
	return fmt.Sprintf("entity %q cannot be a sub-entity of %q: %s already %s %q as %s parent, and sub-entities are one level deep",
		name, parent, Names(children, 10), pick(len(children) == 1, "names", "name"), name, pick(len(children) == 1, "its", "their"))
}

// Names lists entity names for a message, quoted, at most max of them:
// `"a"`, `"a" and "b"`, `"a", "b" and 3 more`.
func Names(names []string, max int) string {
	quoted := make([]string, 0, min(len(names), max))
	for i, n := range names {
		if i == max {
			break
		}
		quoted = append(quoted, fmt.Sprintf("%q", n))
	}
	if more := len(names) - len(quoted); more > 0 {
		return strings.Join(quoted, ", ") + fmt.Sprintf(" and %d more", more)
	}
	if len(quoted) <= 1 {
		return strings.Join(quoted, "")
	}
	return strings.Join(quoted[:len(quoted)-1], ", ") + " and " + quoted[len(quoted)-1]
}

func pick(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}

// Subtree sums a parent's own counts with its children's. Every counter of
// the count types is summed, whatever fields they gain: numbers field by
// field, maps key by key, nested structures recursively; so a counter added
// to LicenseCounts, UserCounts or VMRCounts is in the subtree with no change
// here.
func Subtree(own v1.EntityCounts, children ...v1.EntityCounts) v1.EntityCounts {
	out := *own.DeepCopy()
	for i := range children {
		add(reflect.ValueOf(&out).Elem(), reflect.ValueOf(children[i]))
	}
	return out
}

// add adds src to dst, which have the same type.
func add(dst, src reflect.Value) {
	switch dst.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		dst.SetInt(dst.Int() + src.Int())
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		dst.SetUint(dst.Uint() + src.Uint())
	case reflect.Float32, reflect.Float64:
		dst.SetFloat(dst.Float() + src.Float())
	case reflect.Struct:
		for i := 0; i < dst.NumField(); i++ {
			if dst.Type().Field(i).IsExported() {
				add(dst.Field(i), src.Field(i))
			}
		}
	case reflect.Map:
		if src.Len() == 0 {
			return
		}
		if dst.IsNil() {
			dst.Set(reflect.MakeMapWithSize(dst.Type(), src.Len()))
		}
		iter := src.MapRange()
		for iter.Next() {
			sum := reflect.New(dst.Type().Elem()).Elem()
			if have := dst.MapIndex(iter.Key()); have.IsValid() {
				sum.Set(have)
			}
			add(sum, iter.Value())
			dst.SetMapIndex(iter.Key(), sum)
		}
	case reflect.Pointer:
		if src.IsNil() {
			return
		}
		if dst.IsNil() {
			dst.Set(reflect.New(dst.Type().Elem()))
		}
		add(dst.Elem(), src.Elem())
	default:
		// Strings, lists and times are no counters: the parent's stay.
	}
}
