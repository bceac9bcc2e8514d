package visioctl

import (
	"bytes"
	"regexp"
	"testing"

	v1 "visio.dev/operator/api/v1alpha1"
)

func reportRow(entity, parent string, capacity, used, users int32) *EntityReport {
	return &EntityReport{Entity: entity, Namespace: "entity-" + entity, Parent: parent,
		LicenseCounts: v1.LicenseCounts{Capacity: capacity, Used: used, Available: capacity - used},
		Users:         UserReport{Total: users, ByRole: map[v1.PlatformUserRole]int32{v1.RoleUser: users}}}
}

// A parent's children follow it, and its subtree sums them with it; an
// entity whose parent is not in the report stands alone.
func TestReportSubtrees(t *testing.T) {
	rows := withSubtrees(map[string]*EntityReport{
		"a": reportRow("rennes", "", 10, 4, 4),
		"b": reportRow("moelan", "quimperle", 5, 5, 6),
		"c": reportRow("quimperle", "", 20, 8, 8),
		"d": reportRow("clohars", "quimperle", 3, 1, 1),
		"e": reportRow("orphan", "gone", 2, 0, 0),
	})
	var order []string
	for _, r := range rows {
		order = append(order, r.Entity)
	}
	want := []string{"orphan", "quimperle", "clohars", "moelan", "rennes"}
	if len(order) != len(want) {
		t.Fatalf("order %v, want %v", order, want)
	}
	for i := range want {
		if order[i] != want[i] {
			t.Fatalf("order %v, want %v", order, want)
		}
	}
	st := rows[1].Subtree
	if st == nil || st.Capacity != 28 || st.Used != 14 || st.Available != 14 || st.Users != 15 ||
		len(st.Children) != 2 || st.Children[0] != "clohars" || st.Children[1] != "moelan" {
		t.Fatalf("subtree of quimperle: %+v", st)
	}
	for _, i := range []int{0, 2, 3, 4} {
		if rows[i].Subtree != nil {
			t.Errorf("%s has a subtree: %+v", rows[i].Entity, rows[i].Subtree)
		}
	}

	var out bytes.Buffer
	o := &Options{}
	o.Out = &out
	if err := o.printReport(rows, "table"); err != nil {
		t.Fatal(err)
	}
	table := regexp.MustCompile(`^ENTITY\s+PARENT\s+CAPACITY.*\n` +
		`orphan\s+gone\s+2\s+0\s+2\s.*\n` +
		`quimperle\s+-\s+20\s+8\s+12\s.*\n` +
		`clohars\s+quimperle\s+3\s+1\s+2\s.*\n` +
		`moelan\s+quimperle\s+5\s+5\s+0\s.*\n` +
		`quimperle \(subtree\)\s+-\s+28\s+14\s+14\s+0\s+0\s+-\s+15\s+-\s+-\s+-\s+0/0\n` +
		`rennes\s+-\s+10\s+4\s+6\s.*\n$`)
	if !table.MatchString(out.String()) {
		t.Errorf("table:\n%s", out.String())
	}
}
