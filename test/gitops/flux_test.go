//go:build gitops

package gitops

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"
)

var kustomizationGVK = schema.GroupVersionKind{Group: "kustomize.toolkit.fluxcd.io", Version: "v1", Kind: "Kustomization"}

// bootstrap creates what `flux bootstrap` would: the GitRepository of the
// platform repository and the Kustomization of its clusters/local directory,
// which holds the Kustomizations of every layer.
func bootstrap(g Gomega) {
	for _, doc := range []string{fmt.Sprintf(`
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata:
  name: platform
  namespace: flux-system
spec:
  interval: 2s
  url: %s
  ref:
    branch: main
`, repo.URL), `
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata:
  name: platform
  namespace: flux-system
spec:
  interval: 10m
  retryInterval: 5s
  sourceRef:
    kind: GitRepository
    name: platform
  path: ./clusters/local
  prune: true
`} {
		u := &unstructured.Unstructured{}
		g.Expect(yaml.Unmarshal([]byte(doc), &u.Object)).To(Succeed())
		g.Expect(k8s.Create(ctx(), u)).To(Succeed())
	}
}

// kustomization is what the tests read of a Flux Kustomization.
type kustomization struct {
	metav1.ObjectMeta `json:"metadata"`
	Status            struct {
		ObservedGeneration     int64              `json:"observedGeneration"`
		Conditions             []metav1.Condition `json:"conditions"`
		LastAppliedRevision    string             `json:"lastAppliedRevision"`
		LastAttemptedRevision  string             `json:"lastAttemptedRevision"`
		LastHandledReconcileAt string             `json:"lastHandledReconcileAt"`
		Inventory              *struct {
			Entries []inventoryEntry `json:"entries"`
		} `json:"inventory"`
	} `json:"status"`
}

// inventoryEntry is one object Flux applied: id is
// <namespace>_<name>_<group>_<kind>, v its version.
type inventoryEntry struct {
	ID string `json:"id"`
	V  string `json:"v"`
}

func (k *kustomization) condition(t string) *metav1.Condition {
	return meta.FindStatusCondition(k.Status.Conditions, t)
}

// readyAt says whether the Kustomization is Ready with revision applied.
func (k *kustomization) readyAt(revision string) bool {
	return k.Status.ObservedGeneration == k.Generation && meta.IsStatusConditionTrue(k.Status.Conditions, "Ready") &&
		k.Status.LastAppliedRevision == revision
}

func (k *kustomization) inventory() []string {
	if k.Status.Inventory == nil {
		return nil
	}
	out := make([]string, 0, len(k.Status.Inventory.Entries))
	for _, e := range k.Status.Inventory.Entries {
		out = append(out, e.ID)
	}
	sort.Strings(out)
	return out
}

// conditionsText prints the conditions as `kubectl get -o yaml` would show them,
// one per line, for the test log.
func (k *kustomization) conditionsText() string {
	var b strings.Builder
	for _, c := range k.Status.Conditions {
		fmt.Fprintf(&b, "  %s=%s reason=%s: %s\n", c.Type, c.Status, c.Reason, c.Message)
	}
	fmt.Fprintf(&b, "  lastAppliedRevision=%s lastAttemptedRevision=%s\n", k.Status.LastAppliedRevision, k.Status.LastAttemptedRevision)
	return b.String()
}

func getKustomization(g Gomega, name string) *kustomization {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kustomizationGVK)
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: fluxNamespace, Name: name}, u)).To(Succeed())
	return decodeKustomization(g, u)
}

func decodeKustomization(g Gomega, u *unstructured.Unstructured) *kustomization {
	data, err := json.Marshal(u.Object)
	g.Expect(err).NotTo(HaveOccurred())
	k := &kustomization{}
	g.Expect(json.Unmarshal(data, k)).To(Succeed())
	return k
}

// waitReady waits until every named Kustomization is Ready with revision
// applied, and returns them.
func waitReady(g Gomega, revision string, timeout time.Duration, names ...string) map[string]*kustomization {
	out := map[string]*kustomization{}
	g.Eventually(func(g Gomega) {
		noProcessExited(g)
		for _, name := range names {
			k := getKustomization(g, name)
			g.Expect(k.readyAt(revision)).To(BeTrue(), "Kustomization %s not Ready at %s:\n%s", name, revision, k.conditionsText())
			out[name] = k
		}
	}).WithTimeout(timeout).WithPolling(250 * time.Millisecond).Should(Succeed())
	return out
}

// noProcessExited ends an Eventually at once when one of the suite's
// processes has ended: nothing would bring it back.
func noProcessExited(g Gomega) {
	if ended := exitedProcesses(); len(ended) > 0 {
		StopTrying(fmt.Sprintf("processes ended: %v (their logs follow the test output)", ended)).Now()
	}
}

// inventoryObjects reads every object of a Kustomization's inventory.
func inventoryObjects(g Gomega, k *kustomization) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	for _, e := range k.Status.Inventory.Entries {
		ns, name, group, kind := splitID(g, e.ID)
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: group, Version: e.V, Kind: kind})
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, u)).To(Succeed(), e.ID)
		out = append(out, u)
	}
	return out
}

// splitID splits an inventory id, <namespace>_<name>_<group>_<kind>.
func splitID(g Gomega, id string) (ns, name, group, kind string) {
	parts := strings.Split(id, "_")
	g.Expect(parts).To(HaveLen(4), id)
	return parts[0], parts[1], parts[2], parts[3]
}

// kstatusOf is what kustomize-controller's health check computes for an
// object (the same kstatus library).
func kstatusOf(g Gomega, u *unstructured.Unstructured) status.Status {
	res, err := status.Compute(u)
	g.Expect(err).NotTo(HaveOccurred())
	return res.Status
}

// fluxEvent is an event kustomize-controller recorded on a Kustomization.
type fluxEvent struct {
	Seq                             int // order of arrival
	Type, Reason, Message, Revision string
}

func (e fluxEvent) String() string {
	return fmt.Sprintf("%s %s (%s): %s", e.Type, e.Reason, e.Revision, e.Message)
}

// eventSink receives every event of the Flux controllers, as
// notification-controller would (--events-addr). They also go to the
// Kubernetes Event API, for kubectl, but there the client's spam filter keeps
// about 25 events per object and drops the rest: too few to count on in a
// test that commits a dozen times.
type eventSink struct {
	mu     sync.Mutex
	events map[string][]fluxEvent // by Kustomization name
	seq    int
	srv    *http.Server
	URL    string
}

func startEventSink() (*eventSink, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	s := &eventSink{events: map[string][]fluxEvent{}, URL: "http://" + l.Addr().String() + "/"}
	s.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(s.receive)}
	go func() { _ = s.srv.Serve(l) }()
	return s, nil
}

func (s *eventSink) receive(w http.ResponseWriter, r *http.Request) {
	var e struct {
		InvolvedObject corev1.ObjectReference `json:"involvedObject"`
		Severity       string                 `json:"severity"`
		Message        string                 `json:"message"`
		Reason         string                 `json:"reason"`
		Metadata       map[string]string      `json:"metadata"`
	}
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if e.InvolvedObject.Kind == "Kustomization" {
		typ := corev1.EventTypeNormal
		if e.Severity == "error" {
			typ = corev1.EventTypeWarning
		}
		s.mu.Lock()
		s.seq++
		s.events[e.InvolvedObject.Name] = append(s.events[e.InvolvedObject.Name], fluxEvent{Seq: s.seq, Type: typ,
			Reason: e.Reason, Message: e.Message, Revision: e.Metadata["kustomize.toolkit.fluxcd.io/revision"]})
		s.mu.Unlock()
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *eventSink) close() { _ = s.srv.Close() }

// eventsOf lists the events of a Kustomization, oldest first.
func eventsOf(_ Gomega, name string) []fluxEvent {
	events.mu.Lock()
	defer events.mu.Unlock()
	return slices.Clone(events.events[name])
}

// requestReconcile asks kustomize-controller to reconcile a Kustomization
// now, as `flux reconcile kustomization` does, and returns the token that
// status.lastHandledReconcileAt carries once it has.
func requestReconcile(g Gomega, name string) string {
	token := time.Now().UTC().Format(time.RFC3339Nano)
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(kustomizationGVK)
	u.SetNamespace(fluxNamespace)
	u.SetName(name)
	patch := fmt.Sprintf(`{"metadata":{"annotations":{"reconcile.fluxcd.io/requestedAt":%q}}}`, token)
	g.Expect(k8s.Patch(ctx(), u, client.RawPatch("application/merge-patch+json", []byte(patch)))).To(Succeed())
	return token
}
