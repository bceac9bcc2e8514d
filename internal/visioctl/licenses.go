package visioctl

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	authnv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
)

// Limits of a request's spec, as its schema has them: checked here first so
// that a mistake is named before anything is sent.
const (
	maxRequestLicenses = 10000
	maxReasonLength    = 1024
	minRequestDuration = time.Hour
)

func newLicensesCommand(o *Options) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "licenses",
		Short: "Ask the platform for more licenses, and decide such requests",
		Long: `An entity Administrator asks the platform for more licenses of one of its
pools (a LicenseRequest); a Concierge or a platform administrator approves or
denies it. An approved request counts in its pool's capacity for its duration,
or until it is deleted. A decision is final.`,
	}
	cmd.AddCommand(newLicensesRequestCommand(o), newLicensesListCommand(o),
		newLicensesDecideCommand(o, v1.DecisionApproved), newLicensesDecideCommand(o, v1.DecisionDenied))
	return cmd
}

// requestFlags are what `licenses request` asks for.
type requestFlags struct {
	licenses int32
	reason   string
	duration string
	output   string
	dryRun   string
}

// spec checks the flags and builds the request's spec; every problem is
// named by its flag.
func (f requestFlags) spec(pool string) (v1.LicenseRequestSpec, error) {
	var problems []string
	if f.licenses < 1 || f.licenses > maxRequestLicenses {
		problems = append(problems, fmt.Sprintf("--licenses: must be between 1 and %d, not %d", maxRequestLicenses, f.licenses))
	}
	if n := len([]rune(strings.TrimSpace(f.reason))); n == 0 || len([]rune(f.reason)) > maxReasonLength {
		problems = append(problems, fmt.Sprintf("--reason: required, at most %d characters: say why the entity needs the licenses", maxReasonLength))
	}
	spec := v1.LicenseRequestSpec{LicensePool: pool, Licenses: f.licenses, Reason: f.reason}
	if f.duration != "" {
		d, err := time.ParseDuration(f.duration)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("--duration: %q is not a duration such as 2160h (90 days)", f.duration))
		case d < minRequestDuration:
			problems = append(problems, fmt.Sprintf("--duration: must be at least 1h, not %s", f.duration))
		default:
			spec.Duration = &metav1.Duration{Duration: d}
		}
	}
	if f.output != "" && f.output != "yaml" && f.output != "json" {
		problems = append(problems, fmt.Sprintf(`-o: must be "yaml" or "json", not %q`, f.output))
	}
	if f.dryRun != "none" && f.dryRun != "client" && f.dryRun != "server" {
		problems = append(problems, fmt.Sprintf(`--dry-run: must be "none", "client" or "server", not %q`, f.dryRun))
	}
	if len(problems) > 0 {
		return spec, fmt.Errorf("%s", strings.Join(problems, "\n"))
	}
	return spec, nil
}

func newLicensesRequestCommand(o *Options) *cobra.Command {
	f := requestFlags{}
	cmd := &cobra.Command{
		Use:   "request [POOL] --licenses N --reason TEXT [--duration 2160h] -n NAMESPACE",
		Short: "Ask the platform for more licenses of a pool (default: the pool named default)",
		Example: `  # 5 more licenses of the default pool, for the school year
  kubectl visio licenses request --licenses 5 --reason "Remote classes 2026-2027" --duration 7440h -n entity-quimper

  # The manifest, for git
  kubectl visio licenses request --licenses 5 --reason "New staff" -n entity-quimper --dry-run=client -o yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool := v1.DefaultLicensePool
			if len(args) == 1 {
				pool = args[0]
			}
			spec, err := f.spec(pool)
			if err != nil {
				return err
			}
			ns, _, err := o.namespace()
			if err != nil {
				return err
			}
			lr := &v1.LicenseRequest{TypeMeta: metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "LicenseRequest"},
				ObjectMeta: metav1.ObjectMeta{Namespace: ns, GenerateName: pool + "-"}, Spec: spec}
			if f.dryRun != "client" {
				c, err := o.client()
				if err != nil {
					return err
				}
				var opts []client.CreateOption
				if f.dryRun == "server" {
					opts = append(opts, client.DryRunAll)
				}
				if err := c.Create(cmd.Context(), lr, opts...); err != nil {
					return fmt.Errorf("cannot request licenses: %w", err)
				}
			}
			if f.output != "" {
				return o.printObjects(f.output, lr)
			}
			if f.dryRun != "none" {
				o.printf("licenserequest (%s dry run): %s for license pool %q of namespace %s", f.dryRun, licensesText(spec.Licenses), pool, ns)
				return nil
			}
			o.printf("licenserequest/%s created: %s for license pool %q, awaiting a decision", lr.Name, licensesText(spec.Licenses), pool)
			return nil
		},
	}
	cmd.Flags().Int32Var(&f.licenses, "licenses", 0, "how many licenses (1 to 10000)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why the entity needs them (required)")
	cmd.Flags().StringVar(&f.duration, "duration", "", "how long they count once approved, at least 1h (default: until the request is deleted)")
	cmd.Flags().StringVarP(&f.output, "output", "o", "", `print the request as "yaml" or "json"`)
	cmd.Flags().StringVar(&f.dryRun, "dry-run", "none", `"none", "client" (print only) or "server" (checked by the API server, nothing stored)`)
	return cmd
}

func newLicensesListCommand(o *Options) *cobra.Command {
	var (
		all    bool
		output string
	)
	cmd := &cobra.Command{
		Use:   "list [-A | -n NAMESPACE]",
		Short: "List license requests: those awaiting a decision first, oldest first",
		Example: `  # Every entity's requests (Concierges): what awaits a decision comes first
  kubectl visio licenses list -A

  # The requests of one entity, as YAML
  kubectl visio licenses list -n entity-quimper -o yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "yaml" && output != "json" {
				return fmt.Errorf(`-o must be "table", "yaml" or "json", not %q`, output)
			}
			ns, explicit, err := o.namespace()
			if err != nil {
				return err
			}
			if all && explicit {
				return fmt.Errorf("-A and -n cannot be used together")
			}
			c, err := o.client()
			if err != nil {
				return err
			}
			list := &v1.LicenseRequestList{}
			var opts []client.ListOption
			if !all {
				opts = append(opts, client.InNamespace(ns))
			}
			if err := c.List(cmd.Context(), list, opts...); err != nil {
				return fmt.Errorf("cannot list license requests: %w", err)
			}
			sortRequests(list.Items)
			if output != "table" {
				objs := make([]any, len(list.Items))
				for i := range list.Items {
					list.Items[i].TypeMeta = metav1.TypeMeta{APIVersion: v1.GroupVersion.String(), Kind: "LicenseRequest"}
					list.Items[i].ManagedFields = nil
					objs[i] = &list.Items[i]
				}
				return o.printObjects(output, objs...)
			}
			return o.printRequests(list.Items, all, time.Now())
		},
	}
	cmd.Flags().BoolVarP(&all, "all-namespaces", "A", false, "the requests of every entity (Concierges and platform administrators)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", `"table", "yaml" or "json"`)
	return cmd
}

// sortRequests puts the requests awaiting a decision first, oldest first,
// then the decided ones, most recent first.
func sortRequests(items []v1.LicenseRequest) {
	slices.SortStableFunc(items, func(a, b v1.LicenseRequest) int {
		ap, bp := a.Status.Decision == nil, b.Status.Decision == nil
		switch {
		case ap != bp:
			if ap {
				return -1
			}
			return 1
		case ap:
			return a.CreationTimestamp.Compare(b.CreationTimestamp.Time)
		default:
			return b.CreationTimestamp.Compare(a.CreationTimestamp.Time)
		}
	})
}

func (o *Options) printRequests(items []v1.LicenseRequest, withNamespace bool, now time.Time) error {
	w := tabwriter.NewWriter(o.Out, 0, 8, 2, ' ', 0)
	header := "NAME\tPOOL\tLICENSES\tDURATION\tDECISION\tBY\tEXPIRES\tAGE\tSTATUS"
	if withNamespace {
		header = "NAMESPACE\t" + header
	}
	_, _ = fmt.Fprintln(w, header)
	for i := range items {
		lr := &items[i]
		decision, by := "Awaiting", "-"
		if d := lr.Status.Decision; d != nil {
			decision, by = string(d.State), d.By
		}
		dur, expires := "-", "-"
		if lr.Spec.Duration != nil {
			dur = lr.Spec.Duration.Duration.String()
		}
		if lr.Status.ExpiresAt != nil {
			expires = lr.Status.ExpiresAt.UTC().Format(time.RFC3339)
		}
		status := ""
		if c := meta.FindStatusCondition(lr.Status.Conditions, v1.ReadyCondition); c != nil {
			status = c.Message
		}
		row := fmt.Sprintf("%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s", lr.Name, lr.PoolName(), lr.Spec.Licenses, dur, decision, by, expires,
			duration.HumanDuration(now.Sub(lr.CreationTimestamp.Time)), status)
		if withNamespace {
			row = lr.Namespace + "\t" + row
		}
		_, _ = fmt.Fprintln(w, row)
	}
	return w.Flush()
}

func newLicensesDecideCommand(o *Options, state v1.LicenseDecisionState) *cobra.Command {
	var message string
	verb := map[v1.LicenseDecisionState]string{v1.DecisionApproved: "approve", v1.DecisionDenied: "deny"}[state]
	cmd := &cobra.Command{
		Use: verb + " NAME -n NAMESPACE [--message TEXT]",
		Short: map[v1.LicenseDecisionState]string{v1.DecisionApproved: "Approve a license request: its licenses count in its pool",
			v1.DecisionDenied: "Deny a license request"}[state],
		Example: map[v1.LicenseDecisionState]string{
			v1.DecisionApproved: `  kubectl visio licenses approve default-x7k2p -n entity-quimper --message "granted for the school year"`,
			v1.DecisionDenied:   `  kubectl visio licenses deny default-x7k2p -n entity-quimper --message "the entity's size allows 25"`}[state],
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(message) > maxReasonLength {
				return fmt.Errorf("--message: at most %d characters", maxReasonLength)
			}
			return o.decide(cmd.Context(), args[0], state, message)
		},
	}
	cmd.Flags().StringVar(&message, "message", "", "a word to the entity, e.g. why a request is denied")
	return cmd
}

// decide writes the decision under the caller's own name, as the API server
// knows it. The write is conditional on the request's resourceVersion, so of
// two deciders racing exactly one wins: the other reads the request again
// and is told the decision that stands.
func (o *Options) decide(ctx context.Context, name string, state v1.LicenseDecisionState, message string) error {
	ns, _, err := o.namespace()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	me, err := o.whoAmI(ctx)
	if err != nil {
		return err
	}
	for {
		lr := &v1.LicenseRequest{}
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: name}, lr); err != nil {
			return fmt.Errorf("cannot read license request %q: %w", name, err)
		}
		if d := lr.Status.Decision; d != nil {
			o.errorf("license request %s was already %s by %s at %s; a decision is final", name, d.State, d.By, d.At.UTC().Format(time.RFC3339))
			return ErrReported
		}
		orig := lr.DeepCopy()
		lr.Status.Decision = &v1.LicenseDecision{State: state, By: me, At: metav1.NewTime(time.Now().Truncate(time.Second)), Message: message}
		err := c.Status().Patch(ctx, lr, client.MergeFromWithOptions(orig, client.MergeFromWithOptimisticLock{}))
		switch {
		case err == nil:
			o.printf("licenserequest/%s %s by %s: %s for license pool %q", name, strings.ToLower(string(state)), me,
				licensesText(lr.Spec.Licenses), lr.PoolName())
			return nil
		case apierrors.IsConflict(err):
			continue // written meanwhile: read it again
		default:
			verb := map[v1.LicenseDecisionState]string{v1.DecisionApproved: "approve", v1.DecisionDenied: "deny"}[state]
			return fmt.Errorf("cannot %s license request %q: %w", verb, name, err)
		}
	}
}

// whoAmI is the caller's username as the API server sees it (with --as, the
// impersonated user): the name a decision must carry.
func (o *Options) whoAmI(ctx context.Context) (string, error) {
	cfg, err := o.Flags.ToRESTConfig()
	if err != nil {
		return "", err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return "", err
	}
	r, err := cs.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authnv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("cannot tell who you are (SelfSubjectReview): %w", err)
	}
	return r.Status.UserInfo.Username, nil
}

// printObjects prints objects as one YAML stream or a JSON document.
func (o *Options) printObjects(output string, objs ...any) error {
	if output == "json" {
		enc := json.NewEncoder(o.Out)
		enc.SetIndent("", "  ")
		if len(objs) == 1 {
			return enc.Encode(objs[0])
		}
		return enc.Encode(map[string]any{"apiVersion": "v1", "kind": "List", "items": objs})
	}
	for i, obj := range objs {
		data, err := yaml.Marshal(obj)
		if err != nil {
			return err
		}
		if i > 0 {
			_, _ = fmt.Fprintln(o.Out, "---")
		}
		_, _ = o.Out.Write(data)
	}
	return nil
}

// licensesText is "1 license" or "n licenses".
func licensesText(n int32) string {
	if n == 1 {
		return "1 license"
	}
	return fmt.Sprintf("%d licenses", n)
}
