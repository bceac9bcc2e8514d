package visioctl

import (
	"context"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/userimport"
)

// Dry-run modes, as kubectl names them.
const (
	dryRunNone   = "none"
	dryRunClient = "client"
	dryRunServer = "server"
)

type importOptions struct {
	*Options
	dryRun         string
	output         string
	forceConflicts bool
}

func newImportCommand(o *Options) *cobra.Command {
	io := &importOptions{Options: o}
	cmd := &cobra.Command{
		Use:   "import FILE -n NAMESPACE",
		Short: "Create and update the users of an entity from a spreadsheet (CSV)",
		Long: `Create and update the users of an entity from a CSV file, as Excel, LibreOffice
or Google Sheets export it: separator ",", ";" or tab, UTF-8 (with or without BOM)
or Windows-1252, all detected.

Columns are matched without regard to case, accents or spaces, in English or
French:
  email (courriel, e-mail)      required
  givenName (prénom)            required
  familyName (nom)              required
  phone (téléphone)             E.164, or a French number such as 06 12 34 56 78
  country (pays)                ISO code, or a name in French or English ("France")
  postalCode (code postal)
  timeZone (fuseau horaire)     IANA name, e.g. Europe/Paris
  role (rôle)                   User, DelegatedOrganizer, Administrator, Concierge,
                                or Utilisateur, Organisateur délégué, Administrateur
  active (actif)                true/false, yes/no, oui/non, 1/0 (default true)
  licensePool (pool)            default "default"
Other columns are ignored. A column the file lacks leaves that field of existing
users as it is; a blank cell of a column it has clears the field.

Rows are matched to existing users by email; a new user's name is derived from
its email, the same way every time. Every row is checked first: if any is
invalid, nothing is written and each problem is printed as
"line N: <column>: <message>". Rows are then applied with server-side apply
(field manager "kubectl-visio"); unchanged rows are not written. A row the API
server refuses (a full license pool) is printed with its line; the others still
apply. The exit status is 1 when a row was invalid or refused.`,
		Example: `  # Import the agents of an entity from an Excel export
  kubectl visio users import agents.csv -n entity-quimper

  # See what would change, checked by the API server (and its license pools), writing nothing
  kubectl visio users import agents.csv -n entity-quimper --dry-run=server

  # Write the manifests for a git repository instead of applying them
  kubectl visio users import agents.csv -n entity-quimper -o yaml > users.yaml

  # Read the file from standard input
  cat agents.csv | kubectl visio users import - -n entity-quimper`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return io.run(cmd.Context(), args[0])
		},
	}
	cmd.Flags().StringVar(&io.dryRun, "dry-run", dryRunNone, `"none", "client" (compare with the cluster, write nothing) or "server" (ask the API server, write nothing)`)
	cmd.Flags().StringVarP(&io.output, "output", "o", "", `"yaml" prints the manifests instead of applying them`)
	cmd.Flags().BoolVar(&io.forceConflicts, "force-conflicts", false, "take over fields another manager (GitOps, kubectl edit) owns, as kubectl apply --server-side --force-conflicts")
	return cmd
}

// tally counts what happened to the rows.
type tally struct{ created, updated, unchanged, refused int }

func (t tally) String() string {
	return fmt.Sprintf("%d created, %d updated, %d unchanged, %d refused", t.created, t.updated, t.unchanged, t.refused)
}

func (o *importOptions) run(ctx context.Context, file string) error {
	switch o.dryRun {
	case dryRunNone, dryRunClient, dryRunServer:
	default:
		return fmt.Errorf(`--dry-run must be "none", "client" or "server", not %q`, o.dryRun)
	}
	if o.output != "" && o.output != "yaml" {
		return fmt.Errorf(`-o must be "yaml", not %q`, o.output)
	}
	ns, _, err := o.namespace()
	if err != nil {
		return err
	}
	data, err := o.read(file)
	if err != nil {
		return err
	}
	sheet := userimport.Parse(data)
	if len(sheet.Ignored) > 0 {
		o.errorf("Ignoring the columns %s", quoteAll(sheet.Ignored))
	}
	if len(sheet.Problems) > 0 {
		for _, p := range sheet.Problems {
			o.errorf("%s", p)
		}
		o.errorf("%d problems in %s: nothing was written", len(sheet.Problems), file)
		o.printf("%s", tally{})
		return ErrReported
	}
	if o.output == "yaml" {
		return o.printManifests(ns, sheet)
	}

	c, err := o.client()
	if err != nil {
		return err
	}
	users, err := listUsers(ctx, c, ns)
	if err != nil {
		return err
	}
	byEmail, byName := map[string]*v1.PlatformUser{}, map[string]*v1.PlatformUser{}
	for i := range users {
		byEmail[users[i].Spec.Email], byName[users[i].Name] = &users[i], &users[i]
	}

	suffix := map[string]string{dryRunNone: "", dryRunClient: " (dry run)", dryRunServer: " (server dry run)"}[o.dryRun]
	progress := o.progress(len(sheet.Rows))
	var t tally
	for i, row := range sheet.Rows {
		progress(i)
		live := byEmail[row.Spec.Email]
		var liveSpec *v1.PlatformUserSpec
		name := userimport.UserName(row.Spec.Email)
		if live != nil {
			liveSpec, name = &live.Spec, live.Name
		} else if other := byName[name]; other != nil {
			t.refused++
			o.errorf("line %d: %s: refused: the name %s derived from this address is taken by the user %s", row.Line, row.Spec.Email, name, other.Spec.Email)
			continue
		}
		desired := sheet.Desired(row, liveSpec)
		if live != nil && userimport.Same(desired, *liveSpec) {
			t.unchanged++
			continue
		}
		var owned map[userimport.Column]bool
		if live != nil {
			owned = userimport.Owned(live.ManagedFields, FieldManager)
		}
		if err := o.apply(ctx, c, userimport.Manifest(ns, name, desired, sheet.Fields(owned))); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			t.refused++
			o.errorf("line %d: %s: refused: %s", row.Line, row.Spec.Email, refusal(err))
			continue
		}
		verb := "updated"
		if live == nil {
			verb = "created"
			t.created++
		} else {
			t.updated++
		}
		o.printf("line %d: %s %s%s", row.Line, row.Spec.Email, verb, suffix)
	}
	progress(-1)
	o.printf("%s%s", t, suffix)
	if t.refused > 0 {
		return ErrReported
	}
	return nil
}

func (o *importOptions) read(file string) ([]byte, error) {
	if file == "-" {
		return io.ReadAll(o.In)
	}
	return os.ReadFile(file)
}

func (o *importOptions) apply(ctx context.Context, c client.Client, m *unstructured.Unstructured) error {
	if o.dryRun == dryRunClient {
		return nil
	}
	opts := &client.ApplyOptions{FieldManager: FieldManager, Force: ptr.To(o.forceConflicts)}
	if o.dryRun == dryRunServer {
		opts.DryRun = []string{"All"}
	}
	return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(m), opts)
}

// printManifests writes the users as YAML documents, for git: names from the
// emails, no cluster needed.
func (o *importOptions) printManifests(ns string, sheet *userimport.Sheet) error {
	for _, row := range sheet.Rows {
		m := userimport.Manifest(ns, userimport.UserName(row.Spec.Email), sheet.Desired(row, nil), nil)
		out, err := yaml.Marshal(m.Object)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(o.Out, "---\n%s", out)
	}
	return nil
}

// progress returns a function that shows, on a terminal, how far the import
// is (i < 0 clears it). Piped, it prints nothing.
func (o *importOptions) progress(total int) func(i int) {
	f, ok := o.ErrOut.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) || total < 20 {
		return func(int) {}
	}
	var last time.Time
	return func(i int) {
		switch {
		case i < 0:
			_, _ = fmt.Fprint(f, "\r\033[K")
		case time.Since(last) > 100*time.Millisecond:
			last = time.Now()
			_, _ = fmt.Fprintf(f, "\r\033[Kapplying row %d of %d", i+1, total)
		}
	}
}

// listUsers reads the users of ns, in pages.
func listUsers(ctx context.Context, c client.Client, ns string) ([]v1.PlatformUser, error) {
	var out []v1.PlatformUser
	opts := []client.ListOption{client.InNamespace(ns), client.Limit(500)}
	for {
		list := &v1.PlatformUserList{}
		if err := c.List(ctx, list, opts...); err != nil {
			if apierrors.IsForbidden(err) {
				return nil, fmt.Errorf("you may not read the users of namespace %q: only the administrators of its entity, concierges and platform administrators may (%w)", ns, err)
			}
			return nil, fmt.Errorf("cannot list the users of namespace %q: %w", ns, err)
		}
		out = append(out, list.Items...)
		if list.Continue == "" {
			break
		}
		opts = []client.ListOption{client.InNamespace(ns), client.Limit(500), client.Continue(list.Continue)}
	}
	slices.SortFunc(out, func(a, b v1.PlatformUser) int { return strings.Compare(a.Spec.Email, b.Spec.Email) })
	return out, nil
}

// refusal is what the API server said, without the envelope of its wording.
func refusal(err error) string {
	msg := err.Error()
	switch {
	case apierrors.IsForbidden(err) && !strings.Contains(msg, "admission webhook"):
		return "you may not write the users of this namespace: " + msg
	case apierrors.IsConflict(err):
		// Server-side apply: another manager (GitOps, kubectl edit) owns a
		// field the row changes.
		return msg + "; run again with --force-conflicts to take these fields over"
	}
	return msg
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = fmt.Sprintf("%q", s)
	}
	return strings.Join(q, ", ")
}
