package visioctl

import (
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	v1 "visio.dev/operator/api/v1alpha1"
)

func TestRequestFlags(t *testing.T) {
	ok := requestFlags{licenses: 5, reason: "new staff", dryRun: "none"}
	cases := []struct {
		name string
		f    requestFlags
		want string // a problem the error names; "" for none
	}{
		{"valid", ok, ""},
		{"zero licenses", requestFlags{licenses: 0, reason: "x", dryRun: "none"}, "--licenses: must be between 1 and 10000, not 0"},
		{"too many", requestFlags{licenses: 10001, reason: "x", dryRun: "none"}, "--licenses: must be between 1 and 10000, not 10001"},
		{"blank reason", requestFlags{licenses: 1, reason: "  ", dryRun: "none"}, "--reason: required"},
		{"long reason", requestFlags{licenses: 1, reason: strings.Repeat("é", 1025), dryRun: "none"}, "--reason: required, at most 1024"},
		{"bad duration", requestFlags{licenses: 1, reason: "x", duration: "90 days", dryRun: "none"}, `--duration: "90 days" is not a duration`},
		{"short duration", requestFlags{licenses: 1, reason: "x", duration: "59m", dryRun: "none"}, "--duration: must be at least 1h, not 59m"},
		{"output", requestFlags{licenses: 1, reason: "x", output: "table", dryRun: "none"}, `-o: must be "yaml" or "json"`},
		{"dry run", requestFlags{licenses: 1, reason: "x", dryRun: "all"}, `--dry-run: must be "none", "client" or "server"`},
	}
	for _, c := range cases {
		spec, err := c.f.spec("default")
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: unexpected error %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: error %v, want one naming %q", c.name, err, c.want)
		case c.want == "" && (spec.Licenses != 5 || spec.LicensePool != "default" || spec.Duration != nil):
			t.Errorf("%s: spec %+v", c.name, spec)
		}
	}
	f := ok
	f.duration = "2160h"
	if spec, err := f.spec("p"); err != nil || spec.Duration.Duration != 2160*time.Hour {
		t.Errorf("duration 2160h: %v %v", spec.Duration, err)
	}
}

func TestSortRequests(t *testing.T) {
	at := func(h int) metav1.Time { return metav1.NewTime(time.Date(2026, 12, 1, h, 0, 0, 0, time.UTC)) }
	req := func(name string, h int, decided bool) v1.LicenseRequest {
		r := v1.LicenseRequest{ObjectMeta: metav1.ObjectMeta{Name: name, CreationTimestamp: at(h)}}
		if decided {
			r.Status.Decision = &v1.LicenseDecision{State: v1.DecisionApproved}
		}
		return r
	}
	items := []v1.LicenseRequest{req("old-decided", 1, true), req("new-waiting", 4, false), req("new-decided", 3, true), req("old-waiting", 2, false)}
	sortRequests(items)
	var got []string
	for _, r := range items {
		got = append(got, r.Name)
	}
	if want := "old-waiting new-waiting new-decided old-decided"; strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
}
