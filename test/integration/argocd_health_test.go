package integration

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// TestArgoCDHealth runs the chart's Argo CD health script, in the Lua
// interpreter Argo CD itself embeds, on objects the operator has just
// reported on: a settled object is Healthy, a user waiting for a license
// Degraded (someone must act), and an object the operator has not seen yet
// Progressing.
func TestArgoCDHealth(t *testing.T) {
	g := NewWithT(t)
	script, err := os.ReadFile(filepath.Join(root, "charts", "visio-operator", "argocd", "health.lua"))
	g.Expect(err).NotTo(HaveOccurred())

	e, ns := newEntity(t, g)
	g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(e), e)).To(Succeed())
	g.Expect(argoHealth(g, string(script), e)).To(Equal("Healthy"))

	newPool(g, ns, "default", 1, v1.EnforcementQueue)
	g.Expect(k8s.Create(ctx(), newUser(ns, "licensed", true))).To(Succeed())
	settle(g, ns, "default", 1, 0)
	g.Expect(k8s.Create(ctx(), newUser(ns, "waiting", true))).To(Succeed())
	settle(g, ns, "default", 1, 1)
	for name, want := range map[string]string{"licensed": "Healthy", "waiting": "Degraded"} {
		u := &v1.PlatformUser{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed())
		g.Expect(argoHealth(g, string(script), u)).To(Equal(want), name)
	}

	// An object whose status speaks of an older generation is in progress,
	// whatever its conditions say.
	p := getPool(g, ns, "default")
	g.Expect(argoHealth(g, string(script), p)).To(Equal("Healthy"))
	p.Generation++
	g.Expect(argoHealth(g, string(script), p)).To(Equal("Progressing"))
	p.Status = v1.LicensePoolStatus{}
	g.Expect(argoHealth(g, string(script), p)).To(Equal("Progressing"))

	// Once the pool grows, the waiting user turns Healthy.
	g.Eventually(func(g Gomega) {
		p := getPool(g, ns, "default")
		p.Spec.Licenses = ptr.To[int32](2)
		g.Expect(k8s.Update(ctx(), p)).To(Succeed())
	}).WithTimeout(10 * time.Second).Should(Succeed())
	settle(g, ns, "default", 2, 0)
	u := &v1.PlatformUser{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "waiting"}, u)).To(Succeed())
	g.Expect(argoHealth(g, string(script), u)).To(Equal("Healthy"))
}

// argoHealth evaluates script with obj as Argo CD does: the object, as
// unstructured JSON, in the global obj; the script returns {status, message}.
func argoHealth(g Gomega, script string, obj client.Object) string {
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	g.Expect(err).NotTo(HaveOccurred())
	L := lua.NewState(lua.Options{SkipOpenLibs: false})
	defer L.Close()
	L.SetGlobal("obj", toLua(L, u))
	g.Expect(L.DoString(script)).To(Succeed())
	hs, ok := L.Get(-1).(*lua.LTable)
	g.Expect(ok).To(BeTrue(), "the script returns a table")
	g.Expect(hs.RawGetString("message").Type()).To(Equal(lua.LTString))
	return hs.RawGetString("status").String()
}

// toLua converts unstructured JSON into Lua values.
func toLua(L *lua.LState, v any) lua.LValue {
	switch v := v.(type) {
	case map[string]any:
		t := L.NewTable()
		for k, e := range v {
			t.RawSetString(k, toLua(L, e))
		}
		return t
	case []any:
		t := L.NewTable()
		for _, e := range v {
			t.Append(toLua(L, e))
		}
		return t
	case string:
		return lua.LString(v)
	case bool:
		return lua.LBool(v)
	case int64:
		return lua.LNumber(v)
	case float64:
		return lua.LNumber(v)
	case nil:
		return lua.LNil
	default:
		return lua.LNil
	}
}
