package webhook

import (
	"os"
	"reflect"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	v1 "visio.dev/operator/api/v1alpha1"
)

// delegatingPool is a parent's pool of 10 licenses delegating 3 to y.
func delegatingPool() *v1.LicensePool {
	return &v1.LicensePool{
		ObjectMeta: metav1.ObjectMeta{Namespace: "entity-x", Name: "default", Labels: map[string]string{"team": "a"},
			Finalizers: []string{"tenancy.visio.dev/license-requests"}},
		Spec: v1.LicensePoolSpec{Licenses: ptr.To[int32](10), Enforcement: v1.EnforcementDeny,
			Delegations: []v1.LicenseDelegation{{Entity: "y", LicensePool: "default", Licenses: 3}}},
	}
}

// TestOnlyDelegationsChanged: what an entity Administrator may change of a
// pool, and each thing it may not.
func TestOnlyDelegationsChanged(t *testing.T) {
	for _, c := range []struct {
		name   string
		change func(p *v1.LicensePool)
		want   bool
	}{
		{"nothing", func(*v1.LicensePool) {}, true},
		{"a delegation raised", func(p *v1.LicensePool) { p.Spec.Delegations[0].Licenses = 5 }, true},
		{"a delegation added", func(p *v1.LicensePool) {
			p.Spec.Delegations = append(p.Spec.Delegations, v1.LicenseDelegation{Entity: "z", LicensePool: "default", Licenses: 1})
		}, true},
		{"delegations removed", func(p *v1.LicensePool) { p.Spec.Delegations = nil }, true},
		{"status", func(p *v1.LicensePool) { p.Status.Used = 7 }, true},
		{"licenses", func(p *v1.LicensePool) { p.Spec.Licenses = ptr.To[int32](100) }, false},
		{"a grant", func(p *v1.LicensePool) {
			p.Spec.Grants = []v1.LicenseGrant{{Name: "more", Licenses: 5, Reason: "self"}}
		}, false},
		{"enforcement", func(p *v1.LicensePool) { p.Spec.Enforcement = v1.EnforcementQueue }, false},
		{"a label", func(p *v1.LicensePool) { p.Labels["team"] = "b" }, false},
		{"an annotation", func(p *v1.LicensePool) { p.Annotations = map[string]string{"a": "b"} }, false},
		{"the finalizers", func(p *v1.LicensePool) { p.Finalizers = nil }, false},
		{"an owner", func(p *v1.LicensePool) {
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "ConfigMap", Name: "c", UID: "u"}}
		}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			old, p := delegatingPool(), delegatingPool()
			c.change(p)
			if got := onlyDelegationsChanged(old, p); got != c.want {
				t.Fatalf("onlyDelegationsChanged = %v, want %v", got, c.want)
			}
		})
	}
}

// TestDelegationsPolicyGuardsEverySpecField: the admission policy that holds
// the delegators to spec.delegations without the webhook compares each other
// field of the pool's spec; a field added to the API and not to the policy
// would be theirs to change.
func TestDelegationsPolicyGuardsEverySpecField(t *testing.T) {
	data, err := os.ReadFile("../../config/policies/admission-policies.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, policy, found := strings.Cut(string(data), "name: visio-license-pool-delegations\n")
	if !found {
		t.Fatal("no policy visio-license-pool-delegations")
	}
	policy, _, _ = strings.Cut(policy, "\n---\n")
	spec := reflect.TypeFor[v1.LicensePoolSpec]()
	for i := range spec.NumField() {
		name, _, _ := strings.Cut(spec.Field(i).Tag.Get("json"), ",")
		if name == "delegations" {
			continue
		}
		for _, side := range []string{"object", "oldObject"} {
			if ref := side + ".spec." + name; !strings.Contains(policy, ref) {
				t.Errorf("spec.%s: the policy never reads %s", name, ref)
			}
		}
		if !strings.Contains(policy, "'spec."+name+": ") {
			t.Errorf("spec.%s: no refusal names the field", name)
		}
	}
}
