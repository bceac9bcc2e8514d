package pexip

import (
	"context"
	"testing"
	"time"

	crmetrics "sigs.k8s.io/controller-runtime/pkg/metrics"

	"visio.dev/operator/internal/backend/pexip/pexiptest"
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
