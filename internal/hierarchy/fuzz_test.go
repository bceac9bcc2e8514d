package hierarchy

import (
	"fmt"
	"strings"
	"testing"

	v1 "visio.dev/operator/api/v1alpha1"
)

// FuzzCheck: a sub-entity stands in its parent's hierarchy exactly when the
// parent exists, has no parent and neither is the platform entity nor the
// child itself; otherwise the reason is one of the two of DESIGN.md and the
// message names both entities.
func FuzzCheck(f *testing.F) {
	f.Add("clohars", "quimperle", "", true, "platform")
	f.Add("clohars", "quimperle", "", false, "platform")
	f.Add("bourg", "clohars", "quimperle", true, "platform")
	f.Add("clohars", "platform", "", true, "platform")
	f.Add("platform", "quimperle", "", true, "platform")
	f.Add("loop", "loop", "loop", true, "platform")
	f.Add("a", "b", "a", true, "")
	f.Add("\"quoted\"", "x\ny", "", true, "platform")
	f.Fuzz(func(t *testing.T, child, parent, grandparent string, parentExists bool, platform string) {
		if parent == "" {
			t.Skip("Check is for entities with spec.parent set")
		}
		c := entity(child, parent)
		var p *v1.Entity
		if parentExists {
			p = entity(parent, grandparent)
		}
		s := Check(c, p, platform)
		if s != Check(c, p, platform) {
			t.Fatal("Check is not deterministic")
		}
		want := parent != "" && parentExists && grandparent == "" && child != platform && parent != platform && child != parent
		if s.InHierarchy() != want {
			t.Fatalf("Check(%q -> %q -> %q, exists=%v, platform %q) in hierarchy = %v, want %v (%s)",
				child, parent, grandparent, parentExists, platform, s.InHierarchy(), want, s.Message)
		}
		switch s.Reason {
		case "":
			if s.Message != "" || s.Condition != "" {
				t.Fatalf("a child in the hierarchy has message %q", s.Message)
			}
			return
		case v1.ReasonParentNotFound:
			if parentExists {
				t.Fatalf("ParentNotFound for an existing parent: %s", s.Message)
			}
		case v1.ReasonNestingTooDeep:
		default:
			t.Fatalf("unknown reason %q", s.Reason)
		}
		for _, n := range []string{child, parent} {
			if !strings.Contains(s.Message, fmt.Sprintf("%q", n)) {
				t.Fatalf("message %q does not name %q", s.Message, n)
			}
		}
		if !strings.HasPrefix(s.Condition, s.Message+"; ") {
			t.Fatalf("condition %q does not start with the message %q", s.Condition, s.Message)
		}
	})
}

// FuzzForest: whatever entities name whatever parents (cycles, self
// references, the platform entity, missing parents), the children that
// Check keeps in a hierarchy form one level: none of their parents is a
// child or the platform entity, and every such parent may be a parent.
func FuzzForest(f *testing.F) {
	f.Add([]byte{1, 0, 2, 1})       // a grandchild
	f.Add([]byte{0, 1, 1, 0})       // a cycle of two
	f.Add([]byte{3, 4, 4, 0, 5, 4}) // the platform entity as parent and as child
	f.Add([]byte{2, 7, 6, 1, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Names from a small alphabet, so that parents are found, missing,
		// shared and cyclic; "e4" is the platform entity.
		const platform = "e4"
		name := func(b byte) string { return fmt.Sprintf("e%d", b%8) }
		all := map[string]*v1.Entity{}
		for i := 0; i+1 < len(data) && len(all) < 8; i += 2 {
			n, p := name(data[i]), ""
			if data[i+1]%9 != 8 {
				p = name(data[i+1])
			}
			if _, dup := all[n]; !dup {
				all[n] = entity(n, p)
			}
		}
		inHierarchy := map[string]bool{}
		for n, e := range all {
			if e.Spec.Parent != "" && Check(e, all[e.Spec.Parent], platform).InHierarchy() {
				inHierarchy[n] = true
			}
		}
		for n := range inHierarchy {
			p := all[n].Spec.Parent
			if inHierarchy[p] || all[p].Spec.Parent != "" || p == platform || n == platform || !CanBeParent(all[p], platform) {
				t.Fatalf("%q under %q is not one level (entities %v)", n, p, specs(all))
			}
		}
	})
}

func specs(all map[string]*v1.Entity) map[string]string {
	out := map[string]string{}
	for n, e := range all {
		out[n] = e.Spec.Parent
	}
	return out
}
