package integration

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/client-go/kubernetes"

	v1 "visio.dev/operator/api/v1alpha1"
)

// groupWrites counts, as the API server does (apiserver_request_total),
// every write to the operator's API group, by verb, resource (with its
// subresource) and code: "PATCH platformusers/status 200". Counting on the
// server rather than in the manager's client sees every writer, the
// admission webhook's reservations and a second replica included, and the
// refused writes (409) a conflict loop would make.
func groupWrites(g Gomega) map[string]float64 {
	cs, err := kubernetes.NewForConfig(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	raw, err := cs.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx())
	g.Expect(err).NotTo(HaveOccurred())
	families, err := parseMetrics(strings.NewReader(string(raw)))
	g.Expect(err).NotTo(HaveOccurred())
	out := map[string]float64{}
	for _, f := range families {
		if f.GetName() != "apiserver_request_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["group"] != v1.GroupVersion.Group {
				continue
			}
			switch labels["verb"] {
			case "GET", "LIST", "WATCH", "WATCHLIST":
				continue
			}
			key := labels["verb"] + " " + labels["resource"]
			if labels["subresource"] != "" {
				key += "/" + labels["subresource"]
			}
			out[key+" "+labels["code"]] += m.GetCounter().GetValue()
		}
	}
	return out
}

// writesSince is what counts added to since, without the zeroes.
func writesSince(now, since map[string]float64) map[string]float64 {
	delta := map[string]float64{}
	for k, v := range now {
		if d := v - since[k]; d > 0 {
			delta[k] = d
		}
	}
	return delta
}

// formatWrites prints a window's writes in a stable order.
func formatWrites(w map[string]float64) string {
	if len(w) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(w)) {
		parts = append(parts, fmt.Sprintf("%s ×%.0f", k, w[k]))
	}
	return strings.Join(parts, ", ")
}

// quietWindows counts the group's writes in n consecutive windows of length
// window, logging each, and returns them in order. explain, when not nil, is
// called with the start of each window that saw writes, to log what they
// changed.
func quietWindows(g Gomega, logf func(string, ...any), phase string, n int, window time.Duration, explain func(since time.Time)) []map[string]float64 {
	var out []map[string]float64
	before := groupWrites(g)
	for w := range n {
		start := time.Now()
		time.Sleep(window)
		after := groupWrites(g)
		delta := writesSince(after, before)
		logf("%s, window %d (%s): writes to %s: %s", phase, w+1, window, v1.GroupVersion.Group, formatWrites(delta))
		if len(delta) > 0 && explain != nil {
			explain(start)
		}
		out = append(out, delta)
		before = after
	}
	return out
}
