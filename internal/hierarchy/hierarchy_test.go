package hierarchy

import (
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "visio.dev/operator/api/v1alpha1"
)

func entity(name, parent string) *v1.Entity {
	return &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: v1.EntitySpec{Parent: parent}}
}

func TestCheck(t *testing.T) {
	const platform = "platform"
	for _, tc := range []struct {
		what          string
		child, parent *v1.Entity
		reason        string
		names         []string
	}{
		{"child of a root", entity("c", "p"), entity("p", ""), "", nil},
		{"parent missing", entity("c", "p"), nil, v1.ReasonParentNotFound, []string{`"c"`, `"p"`}},
		{"grandchild", entity("g", "c"), entity("c", "p"), v1.ReasonNestingTooDeep, []string{`"g"`, `"c"`, `"p"`}},
		{"platform as parent", entity("c", platform), entity(platform, ""), v1.ReasonNestingTooDeep, []string{`"c"`, `"platform"`}},
		{"platform as parent, missing", entity("c", platform), nil, v1.ReasonNestingTooDeep, []string{`"c"`, `"platform"`}},
		{"platform as child", entity(platform, "p"), entity("p", ""), v1.ReasonNestingTooDeep, []string{`"platform"`, `"p"`}},
		{"own parent", entity("c", "c"), entity("c", "c"), v1.ReasonNestingTooDeep, []string{`"c"`}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			s := Check(tc.child, tc.parent, platform)
			if s.Reason != tc.reason || s.InHierarchy() != (tc.reason == "") {
				t.Fatalf("reason %q (%s), want %q", s.Reason, s.Message, tc.reason)
			}
			for _, n := range tc.names {
				if !strings.Contains(s.Message, n) {
					t.Errorf("message %q does not name %s", s.Message, n)
				}
			}
		})
	}
}

func TestCanBeParent(t *testing.T) {
	if !CanBeParent(entity("p", ""), "platform") {
		t.Error("a root entity may be a parent")
	}
	if CanBeParent(entity("c", "p"), "platform") {
		t.Error("a sub-entity may not be a parent")
	}
	if CanBeParent(entity("platform", ""), "platform") {
		t.Error("the platform entity may not be a parent")
	}
}

func TestNames(t *testing.T) {
	for _, tc := range []struct {
		in   []string
		want string
	}{
		{nil, ""},
		{[]string{"a"}, `"a"`},
		{[]string{"a", "b"}, `"a" and "b"`},
		{[]string{"a", "b", "c"}, `"a", "b" and "c"`},
		{[]string{"a", "b", "c", "d"}, `"a", "b" and 2 more`},
	} {
		if got := Names(tc.in, 2+boolInt(len(tc.in) == 3)); got != tc.want {
			t.Errorf("Names(%q) = %s, want %s", tc.in, got, tc.want)
		}
	}
	if got := HasChildrenMessage("b", "a", []string{"c"}); got != `entity "b" cannot be a sub-entity of "a": "c" already names "b" as its parent, and sub-entities are one level deep` {
		t.Errorf("HasChildrenMessage: %s", got)
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestSubtree(t *testing.T) {
	own := v1.EntityCounts{
		Licenses: v1.LicenseCounts{Capacity: 10, Used: 4, Available: 6, Pending: 0},
		Users:    v1.UserCounts{Total: 5, Active: 4, Licensed: 4, ByRole: map[v1.PlatformUserRole]int32{v1.RoleUser: 4, v1.RoleAdministrator: 1}},
		VMRs:     v1.VMRCounts{Total: 2, Ready: 1},
	}
	a := v1.EntityCounts{
		Licenses: v1.LicenseCounts{Capacity: 3, Used: 3, Available: 0, Pending: 2},
		Users:    v1.UserCounts{Total: 6, Active: 5, Licensed: 3, ByRole: map[v1.PlatformUserRole]int32{v1.RoleUser: 5, v1.RoleDelegatedOrganizer: 1}},
		VMRs:     v1.VMRCounts{Total: 1, Ready: 1},
	}
	b := v1.EntityCounts{} // a child that has reported nothing yet
	got := Subtree(own, a, b)
	want := v1.EntityCounts{
		Licenses: v1.LicenseCounts{Capacity: 13, Used: 7, Available: 6, Pending: 2},
		Users: v1.UserCounts{Total: 11, Active: 9, Licensed: 7, ByRole: map[v1.PlatformUserRole]int32{
			v1.RoleUser: 9, v1.RoleAdministrator: 1, v1.RoleDelegatedOrganizer: 1}},
		VMRs: v1.VMRCounts{Total: 3, Ready: 2},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Subtree = %+v, want %+v", got, want)
	}
	if own.Users.ByRole[v1.RoleUser] != 4 || own.Licenses.Capacity != 10 {
		t.Fatal("Subtree changed the parent's own counts")
	}
	if got := Subtree(own); !reflect.DeepEqual(got, own) {
		t.Fatalf("Subtree of no child = %+v, want the parent's own", got)
	}
}

// TestSubtreeSumsEveryCounter sets every number of the count types, whatever
// fields they have now or gain later, to a distinct value and checks each is
// summed: a counter added to LicenseCounts (say, licenses requested) is in the
// subtree without anyone remembering to add it.
func TestSubtreeSumsEveryCounter(t *testing.T) {
	var own, child v1.EntityCounts
	n := 0
	fill(reflect.ValueOf(&own).Elem(), &n)
	fill(reflect.ValueOf(&child).Elem(), &n)
	if n < 2*9 {
		t.Fatalf("only %d counters found", n)
	}
	got := Subtree(own, child)
	checkSum(t, "EntityCounts", reflect.ValueOf(got), reflect.ValueOf(own), reflect.ValueOf(child))
}

func fill(v reflect.Value, n *int) {
	switch v.Kind() {
	case reflect.Int32, reflect.Int64, reflect.Int:
		*n++
		v.SetInt(int64(*n))
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				fill(v.Field(i), n)
			}
		}
	case reflect.Map:
		v.Set(reflect.MakeMap(v.Type()))
		*n++
		v.SetMapIndex(reflect.ValueOf(v1.RoleUser).Convert(v.Type().Key()), reflect.ValueOf(int32(*n)).Convert(v.Type().Elem()))
	}
}

func checkSum(t *testing.T, path string, got, a, b reflect.Value) {
	t.Helper()
	switch got.Kind() {
	case reflect.Int32, reflect.Int64, reflect.Int:
		if got.Int() != a.Int()+b.Int() {
			t.Errorf("%s = %d, want %d + %d", path, got.Int(), a.Int(), b.Int())
		}
	case reflect.Struct:
		for i := 0; i < got.NumField(); i++ {
			if got.Type().Field(i).IsExported() {
				checkSum(t, path+"."+got.Type().Field(i).Name, got.Field(i), a.Field(i), b.Field(i))
			}
		}
	case reflect.Map:
		for _, k := range a.MapKeys() {
			checkSum(t, path+"["+k.String()+"]", got.MapIndex(k), a.MapIndex(k), b.MapIndex(k))
		}
	}
}
