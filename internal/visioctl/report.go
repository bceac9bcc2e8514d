package visioctl

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// EntityReport is one entity's usage: the report's row.
type EntityReport struct {
	Entity    string `json:"entity"`
	Namespace string `json:"namespace"`
	// Parent is the entity this one is a sub-entity of, "" for none.
	Parent string `json:"parent,omitempty"`
	// LicenseCounts holds capacity, used, available, pending and requested
	// (licenses asked for by LicenseRequests awaiting a decision).
	v1.LicenseCounts
	// NextExpiry is when the next grant of the entity's pools expires.
	NextExpiry *time.Time   `json:"nextExpiry"`
	Users      UserReport   `json:"users"`
	Rooms      v1.VMRCounts `json:"rooms"`
	// Subtree, on a parent, sums its own row and its children's (those in
	// the report).
	Subtree *SubtreeReport `json:"subtree,omitempty"`
}

// SubtreeReport is a parent's organisation as a whole: its counts plus its
// children's.
type SubtreeReport struct {
	Children []string `json:"children"`
	v1.LicenseCounts
	Users int32        `json:"users"`
	Rooms v1.VMRCounts `json:"rooms"`
}

// UserReport counts an entity's users, by role.
type UserReport struct {
	Total  int32                         `json:"total"`
	ByRole map[v1.PlatformUserRole]int32 `json:"byRole"`
}

func newReportCommand(o *Options) *cobra.Command {
	var (
		all    bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "report [-A | -n NAMESPACE]",
		Short: "Show the usage of every entity you may read: licenses, users per role, rooms",
		Long: `Show one row per entity: its parent (for a sub-entity), license capacity,
used, available, pending and requested (awaiting a decision), summed over its
license pools, when the next granted licenses expire, its users per role and
its rooms ready out of total.

A sub-entity follows its parent, and a "(subtree)" row after the last child
sums the parent and its children (in JSON: the parent's "subtree"; CSV has
the parent column only, so that its rows add up).

Without -n, every entity you may read: a concierge sees them all, an entity
administrator (who may not list entities) the entity of the current namespace.
With -n, the entity of that namespace.`,
		Example: `  # Every entity at a glance (concierges)
  kubectl visio report -A

  # The entity of a namespace, as CSV for a spreadsheet
  kubectl visio report -n entity-quimper -o csv > usage.csv

  # As JSON, for scripts
  kubectl visio report -A -o json | jq '.[] | select(.available == 0)'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "csv" && output != "json" {
				return fmt.Errorf(`-o must be "table", "csv" or "json", not %q`, output)
			}
			rows, err := o.report(cmd.Context(), all)
			if err != nil {
				return err
			}
			return o.printReport(rows, output)
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "every entity (needs the right to list entities)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", `"table", "csv" or "json"`)
	return cmd
}

func (o *Options) report(ctx context.Context, all bool) ([]EntityReport, error) {
	ns, explicit, err := o.namespace()
	if err != nil {
		return nil, err
	}
	if all && explicit {
		return nil, fmt.Errorf("-A and -n cannot be used together")
	}
	c, err := o.client()
	if err != nil {
		return nil, err
	}
	entities := &v1.EntityList{}
	fellBack := false
	switch err := c.List(ctx, entities); {
	case err == nil:
	case apierrors.IsForbidden(err) && !all:
		fellBack = !explicit
		// An entity administrator may read its own Entity, not list them: report
		// the entity of the namespace.
		entities.Items = nil
		if e, ok := entityOfNamespace(ctx, c, ns); ok {
			entities.Items = append(entities.Items, *e)
		} else {
			entities.Items = append(entities.Items, v1.Entity{Status: v1.EntityStatus{Namespace: ns}})
		}
		explicit = true
	case apierrors.IsForbidden(err):
		return nil, fmt.Errorf("you may not list entities (concierges and platform administrators may): use -n with your entity's namespace (%w)", err)
	default:
		return nil, fmt.Errorf("cannot list entities: %w", err)
	}

	rows := map[string]*EntityReport{} // by namespace
	for i := range entities.Items {
		e := &entities.Items[i]
		n := e.Status.Namespace
		if n == "" && e.Name != "" {
			n = e.NamespaceName()
		}
		if explicit && n != ns {
			continue
		}
		name := e.Name
		if name == "" {
			name = strings.TrimPrefix(n, "entity-")
		}
		rows[n] = &EntityReport{Entity: name, Namespace: n, Parent: e.Spec.Parent, Users: UserReport{ByRole: map[v1.PlatformUserRole]int32{}}}
	}
	if explicit && len(rows) == 0 {
		return nil, fmt.Errorf("namespace %q belongs to no entity", ns)
	}
	var in []client.ListOption
	if explicit {
		in = append(in, client.InNamespace(ns))
	}

	pools := &v1.LicensePoolList{}
	if err := c.List(ctx, pools, in...); err != nil {
		if fellBack && apierrors.IsForbidden(err) {
			return nil, fmt.Errorf("you may not list entities, nor read namespace %q: use -n with your entity's namespace (%w)", ns, err)
		}
		return nil, fmt.Errorf("cannot list license pools: %w", err)
	}
	for i := range pools.Items {
		p := &pools.Items[i]
		r := rows[p.Namespace]
		if r == nil {
			continue
		}
		r.Capacity += p.Status.Capacity
		r.Used += p.Status.Used
		r.Available += p.Status.Available
		r.Pending += p.Status.Pending
		r.Requested += p.Status.Requested
		if x := p.Status.NextExpiry; x != nil && (r.NextExpiry == nil || x.Time.Before(*r.NextExpiry)) {
			t := x.UTC()
			r.NextExpiry = &t
		}
	}
	users := &v1.PlatformUserList{}
	if err := c.List(ctx, users, in...); err != nil {
		return nil, fmt.Errorf("cannot list users: %w", err)
	}
	for i := range users.Items {
		u := &users.Items[i]
		if r := rows[u.Namespace]; r != nil && u.DeletionTimestamp.IsZero() {
			r.Users.Total++
			r.Users.ByRole[u.RoleOrDefault()]++
		}
	}
	vmrs := &v1.VMRList{}
	if err := c.List(ctx, vmrs, in...); err != nil {
		return nil, fmt.Errorf("cannot list rooms: %w", err)
	}
	for i := range vmrs.Items {
		v := &vmrs.Items[i]
		if r := rows[v.Namespace]; r != nil && v.DeletionTimestamp.IsZero() {
			r.Rooms.Total++
			if meta.IsStatusConditionTrue(v.Status.Conditions, v1.ReadyCondition) {
				r.Rooms.Ready++
			}
		}
	}

	return withSubtrees(rows), nil
}

// withSubtrees orders the rows with each parent's children right after it,
// and gives each parent in the report the sum of its subtree.
func withSubtrees(rows map[string]*EntityReport) []EntityReport {
	byName := map[string]*EntityReport{}
	for _, r := range rows {
		byName[r.Entity] = r
	}
	for _, r := range rows {
		parent := byName[r.Parent]
		if r.Parent == "" || parent == nil {
			continue
		}
		if parent.Subtree == nil {
			parent.Subtree = &SubtreeReport{}
			parent.Subtree.add(parent)
		}
		parent.Subtree.Children = append(parent.Subtree.Children, r.Entity)
		parent.Subtree.add(r)
	}
	// The key of a row: its root (the parent present in the report, or
	// itself), then itself.
	root := func(r EntityReport) string {
		if byName[r.Parent] != nil {
			return r.Parent
		}
		return r.Entity
	}
	out := make([]EntityReport, 0, len(rows))
	for _, r := range rows {
		if r.Subtree != nil {
			slices.Sort(r.Subtree.Children)
		}
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b EntityReport) int {
		if c := strings.Compare(root(a), root(b)); c != 0 {
			return c
		}
		if a.Entity == root(a) || b.Entity == root(b) {
			return strings.Compare(a.Parent, b.Parent) // the parent ("" as its parent) first
		}
		return strings.Compare(a.Entity, b.Entity)
	})
	return out
}

func (s *SubtreeReport) add(r *EntityReport) {
	s.Capacity += r.Capacity
	s.Used += r.Used
	s.Available += r.Available
	s.Pending += r.Pending
	s.Requested += r.Requested
	s.Users += r.Users.Total
	s.Rooms.Total += r.Rooms.Total
	s.Rooms.Ready += r.Rooms.Ready
}

// entityOfNamespace finds the Entity of ns that the caller may read by name:
// an administrator has get on its own Entity. The namespace of an Entity is
// entity-<name> unless its spec says otherwise; then the entity stays unnamed.
func entityOfNamespace(ctx context.Context, c client.Client, ns string) (*v1.Entity, bool) {
	name, ok := strings.CutPrefix(ns, "entity-")
	if !ok {
		return nil, false
	}
	e := &v1.Entity{}
	if err := c.Get(ctx, client.ObjectKey{Name: name}, e); err != nil || e.NamespaceName() != ns {
		return nil, false
	}
	return e, true
}

func (o *Options) printReport(rows []EntityReport, output string) error {
	switch output {
	case "json":
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	case "csv":
		w := csv.NewWriter(o.Out)
		header := []string{"entity", "parent", "namespace", "capacity", "used", "available", "pending", "requested", "nextExpiry", "users"}
		for _, role := range v1.Roles {
			header = append(header, string(role))
		}
		if err := w.Write(append(header, "roomsReady", "roomsTotal")); err != nil {
			return err
		}
		for _, r := range rows {
			rec := []string{r.Entity, r.Parent, r.Namespace, itoa(r.Capacity), itoa(r.Used), itoa(r.Available), itoa(r.Pending), itoa(r.Requested),
				expiry(r.NextExpiry, ""), itoa(r.Users.Total)}
			for _, role := range v1.Roles {
				rec = append(rec, itoa(r.Users.ByRole[role]))
			}
			if err := w.Write(append(rec, itoa(r.Rooms.Ready), itoa(r.Rooms.Total))); err != nil {
				return err
			}
		}
		w.Flush()
		return w.Error()
	default:
		w := tabwriter.NewWriter(o.Out, 0, 8, 2, ' ', 0)
		_, _ = fmt.Fprintln(w, "ENTITY\tPARENT\tCAPACITY\tUSED\tAVAILABLE\tPENDING\tREQUESTED\tNEXT EXPIRY\tUSERS\tORGANIZERS\tADMINISTRATORS\tCONCIERGES\tROOMS")
		for i, r := range rows {
			_, _ = fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%d\t%d\t%d\t%d/%d\n", r.Entity, orDash(r.Parent), r.Capacity, r.Used, r.Available, r.Pending, r.Requested,
				expiry(r.NextExpiry, "-"), r.Users.ByRole[v1.RoleUser], r.Users.ByRole[v1.RoleDelegatedOrganizer],
				r.Users.ByRole[v1.RoleAdministrator], r.Users.ByRole[v1.RoleConcierge], r.Rooms.Ready, r.Rooms.Total)
			// A parent's subtree total follows its last child.
			if p := subtreeEnding(rows, i); p != nil {
				t := p.Subtree
				_, _ = fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t%s\t%s\t%s\t%d/%d\n", p.Entity+" (subtree)", "-", t.Capacity, t.Used, t.Available, t.Pending, t.Requested,
					"-", t.Users, "-", "-", "-", t.Rooms.Ready, t.Rooms.Total)
			}
		}
		return w.Flush()
	}
}

// subtreeEnding returns the parent whose subtree ends at row i (its last
// child), nil when none does.
func subtreeEnding(rows []EntityReport, i int) *EntityReport {
	parent := rows[i].Parent
	if parent == "" || i+1 < len(rows) && rows[i+1].Parent == parent {
		return nil
	}
	for j := i - 1; j >= 0; j-- {
		if rows[j].Entity == parent && rows[j].Subtree != nil {
			return &rows[j]
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func expiry(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.Format(time.RFC3339)
}
