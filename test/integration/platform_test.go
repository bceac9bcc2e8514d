package integration

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
)

// platformEntity is the Entity whose namespace holds the Concierges: the
// manager's --platform-entity and the admission policies' default.
const platformEntity = "platform"

// platformNamespace returns the namespace of the platform entity, creating
// the Entity the first time. It is shared by the tests and never deleted:
// people created in it need names of their own (uniqueName).
func platformNamespace(t testing.TB, g Gomega) string {
	t.Helper()
	e := &v1.Entity{ObjectMeta: metav1.ObjectMeta{Name: platformEntity},
		Spec: v1.EntitySpec{DisplayName: "Platform support", DeletionProtection: ptr.To(false)}}
	if err := k8s.Create(ctx(), e); !apierrors.IsAlreadyExists(err) {
		g.Expect(err).NotTo(HaveOccurred())
	}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(e.Status.Conditions, v1.ReadyCondition)).To(BeTrue(), "platform entity not Ready: %v", e.Status.Conditions)
	}).WithTimeout(30 * time.Second).Should(Succeed())
	return e.Status.Namespace
}

// uniqueName is base with a suffix no other test uses.
func uniqueName(base string) string { return fmt.Sprintf("%s-%d", base, entitySeq.Add(1)) }

// applyManifests creates every object of a multi-document YAML file as the
// platform administrator.
func applyManifests(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	for _, doc := range strings.Split(string(data), "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return fmt.Errorf("%s: %w", path, err)
		}
		if len(obj.Object) == 0 {
			continue
		}
		// Strict: a field the API server does not know fails here, not
		// silently dropped.
		if err := k8s.Create(ctx(), obj, client.FieldValidation("Strict")); err != nil {
			return fmt.Errorf("%s: cannot create %s %s: %w", path, obj.GetKind(), obj.GetName(), err)
		}
	}
	return nil
}

// installPolicies installs the admission policies of config/policies, as the
// chart and `make run` do, and waits until the API server enforces them.
func installPolicies() error {
	if err := applyManifests(filepath.Join(root, "config", "policies", "admission-policies.yaml")); err != nil {
		return err
	}
	probe := newUser("default", "policy-probe", false)
	probe.Spec.Role = v1.RoleConcierge
	for range 300 {
		err := k8s.Create(ctx(), probe, client.DryRunAll)
		if err != nil && isPolicyDenial(err) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return errors.New("the admission policies are not enforced: is the ValidatingAdmissionPolicy plugin on?")
}

// isPolicyDenial tells a refusal by a ValidatingAdmissionPolicy.
func isPolicyDenial(err error) bool {
	return err != nil && strings.Contains(err.Error(), "ValidatingAdmissionPolicy")
}
