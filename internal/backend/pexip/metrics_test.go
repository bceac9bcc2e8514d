package pexip

import (
	"context"
	"strings"
	"testing"
	"time"

	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"visio.dev/operator/internal/backend/pexip/pexiptest"
	"visio.dev/operator/internal/metrics"
)

// backendCount reads visio_backend_requests_total{backend="pexip"} from the
// manager's registry, by "operation code".
func backendCount(t *testing.T) map[string]float64 {
	t.Helper()
	families, err := crmetrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "visio_backend_requests_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			if l["backend"] == "pexip" {
				out[l["operation"]+" "+l["code"]] += m.GetCounter().GetValue()
			}
		}
	}
	return out
}

// TestRequestsCounted: every HTTP request the client sends is counted once,
// under the Backend call it serves and the answer's status, a timeout when no
// answer came in time.
func TestRequestsCounted(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, func(cfg *Config) { cfg.RequestTimeout = 200 * time.Millisecond })
	before := backendCount(t)
	srv.FailNext("GET conference", pexiptest.FaultError)
	srv.FailNext("POST conference", pexiptest.FaultHangBeforeApply)
	room := sampleRoom(1)
	ref, err := c.Create(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(context.Background(), ref, room.Key); err != nil {
		t.Fatal(err)
	}
	after := backendCount(t)
	delta := map[string]float64{}
	total := 0.0
	for k, v := range after {
		if d := v - before[k]; d != 0 {
			delta[k] = d
			total += d
		}
	}
	sent := 0
	for _, n := range srv.Requests() {
		sent += n
	}
	if total != float64(sent) {
		t.Errorf("counted %v requests, the server saw %d: %v", total, sent, delta)
	}
	if delta["create 200"]+delta["create 201"] < 1 {
		t.Errorf("no successful create request counted: %v", delta)
	}
	for _, want := range []string{"create timeout", "get 200"} {
		if delta[want] < 1 {
			t.Errorf("no request counted as %q: %v", want, delta)
		}
	}
	if delta["create 500"]+delta["create 503"] < 1 {
		t.Errorf("the server error was not counted: %v", delta)
	}
}

// TestEveryRequestNamed: each Backend call's requests are counted under the
// call's operation, the sweep's listing (also when it falls back from a
// refused tag prefix) and Release included; none under another operation
// (OpOther among them).
func TestEveryRequestNamed(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, func(cfg *Config) { cfg.Owner = "paris" })
	room := sampleRoom(1)
	calls := []struct {
		op   string
		call func() error
	}{
		{metrics.OpCreate, func() error { _, err := c.Create(t.Context(), room); return err }},
		{metrics.OpFind, func() error { _, _, err := c.Find(t.Context(), room.Key); return err }},
		{metrics.OpGet, func() error { _, err := c.Get(t.Context(), "1", room.Key); return err }},
		{metrics.OpUpdate, func() error { r := room; r.Description = "changed"; return c.Update(t.Context(), "1", r) }},
		{metrics.OpListTagged, func() error { _, err := c.ListTagged(t.Context(), "uid-"); return err }},
		{metrics.OpRelease, func() error { return c.Release(t.Context(), "1", room.Key) }},
		{metrics.OpCreate, func() error { _, err := c.Create(t.Context(), sampleRoom(2)); return err }},
		{metrics.OpDelete, func() error { return c.Delete(t.Context(), "2", sampleRoom(2).Key) }},
	}
	for _, call := range calls {
		before := backendCount(t)
		srv.ResetRequests()
		if err := call.call(); err != nil {
			t.Fatalf("%s: %v", call.op, err)
		}
		sent := 0
		for _, n := range srv.Requests() {
			sent += n
		}
		counted := 0.0
		for k, v := range backendCount(t) {
			d := v - before[k]
			if d == 0 {
				continue
			}
			counted += d
			if op, _, _ := strings.Cut(k, " "); op != call.op {
				t.Errorf("%s: %v requests counted as %q", call.op, d, k)
			}
		}
		if sent == 0 || counted != float64(sent) {
			t.Errorf("%s: counted %v requests, the server saw %d", call.op, counted, sent)
		}
	}
}
