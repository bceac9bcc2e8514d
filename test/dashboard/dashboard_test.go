// Package dashboard checks the chart's Grafana dashboard. It is a module of its
// own so that the Prometheus query parser, a large dependency, stays out of
// the operator's go.mod.
package dashboard

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/prometheus/promql/parser"

	"visio.dev/operator/internal/metrics"
)

const path = "../../charts/visio-operator/files/grafana-dashboard.json"

type target struct {
	Expr  string `json:"expr"`
	RefID string `json:"refId"`
}

type panel struct {
	ID         int            `json:"id"`
	Type       string         `json:"type"`
	Title      string         `json:"title"`
	Datasource map[string]any `json:"datasource"`
	GridPos    struct{ X, Y, W, H int }
	Targets    []target `json:"targets"`
	Panels     []panel  `json:"panels"`
}

type dashboard struct {
	UID        string  `json:"uid"`
	Title      string  `json:"title"`
	Panels     []panel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

// exported are the series names the operator serves: its own metrics (a
// histogram as its _bucket, _sum and _count) and the scrape's up.
func exported(t *testing.T) map[string]bool {
	names := map[string]bool{}
	fq := regexp.MustCompile(`fqName: "([^"]+)"`)
	for _, c := range metrics.Collectors() {
		ch := make(chan *prometheus.Desc, 1)
		go func() { c.Describe(ch); close(ch) }()
		for d := range ch {
			m := fq.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("cannot read the name of %s", d)
			}
			names[m[1]] = true
			if _, ok := c.(*prometheus.HistogramVec); ok {
				for _, s := range []string{"_bucket", "_sum", "_count"} {
					names[m[1]+s] = true
				}
			}
		}
	}
	return names
}

// grafanaVars stand for Grafana's variables so that a query parses as
// Prometheus will see it.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__interval", "1m", "$__range", "1h", "$organisation", ".*", "$entity", ".*", "$pool", ".*")

func TestDashboard(t *testing.T) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s is not valid JSON: %v", path, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Errorf("the dashboard needs a uid and a title")
	}
	names := exported(t)
	used := map[string]bool{}
	check := func(where, expr string) {
		e, err := parser.NewParser(parser.Options{}).ParseExpr(grafanaVars.Replace(expr))
		if err != nil {
			t.Errorf("%s: %q does not parse: %v", where, expr, err)
			return
		}
		for _, sel := range parser.ExtractSelectors(e) {
			for _, m := range sel {
				if m.Name != "__name__" {
					continue
				}
				if !names[m.Value] {
					t.Errorf("%s: %q uses %s, which the operator does not export", where, expr, m.Value)
				}
				used[m.Value] = true
			}
		}
	}

	vars := map[string]string{}
	labelValues := regexp.MustCompile(`^label_values\((.*),\s*(\w+)\)$`)
	for _, v := range d.Templating.List {
		q, _ := v.Query.(map[string]any)
		s, _ := q["query"].(string)
		vars[v.Name] = s
		if v.Type != "query" {
			continue
		}
		m := labelValues.FindStringSubmatch(s)
		if m == nil {
			t.Errorf("variable %s: %q is not label_values(selector, label)", v.Name, s)
			continue
		}
		check("variable "+v.Name, m[1])
	}
	for _, want := range []string{"datasource", "organisation", "entity", "pool"} {
		if _, ok := vars[want]; !ok {
			t.Errorf("the dashboard has no variable %q", want)
		}
	}
	// Sub-entities are grouped under their parent: choosing an organisation
	// narrows the entities to it.
	if !strings.Contains(vars["entity"], `organisation=~"$organisation"`) {
		t.Errorf("variable entity: %q does not follow the organisation variable", vars["entity"])
	}

	ids := map[int]bool{}
	var titles []string
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W <= 0 || p.GridPos.H <= 0 || p.GridPos.X+p.GridPos.W > 24 {
				t.Errorf("panel %q: bad gridPos %+v", p.Title, p.GridPos)
			}
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			titles = append(titles, p.Title)
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			if p.Datasource["uid"] != "${datasource}" {
				t.Errorf("panel %q does not use the datasource variable", p.Title)
			}
			for _, tg := range p.Targets {
				check("panel "+p.Title, tg.Expr)
			}
		}
	}
	walk(d.Panels)

	// What the dashboard must show, and that it shows every metric of the
	// operator.
	for _, want := range []string{"Licenses used and capacity per entity", "Entities nearest to full", "Users waiting for a license",
		"Grants expiring within 30 days", "Rooms not ready", "Backend requests", "Backend errors", "Admission refusals",
		"Licenses used and capacity per organisation", "Licenses delegated to sub-entities"} {
		if !slices.Contains(titles, want) {
			t.Errorf("no panel %q", want)
		}
	}
	for name := range names {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if name == base && !used[name] && !used[name+"_bucket"] && name != "visio_licensepool_available" {
			t.Errorf("metric %s is on no panel", name)
		}
	}
}
