// Package visioctl is the kubectl plugin `kubectl visio`: import and export
// an entity's users from and to spreadsheets, and a usage report of entities.
package visioctl

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// FieldManager owns, in server-side apply, the fields an import sets: a
// re-import owns the same fields and so changes nothing, and fields other
// managers (GitOps, kubectl edit) own stay theirs.
const FieldManager = "kubectl-visio"

// The client's rate limit: client-go's default (5 requests a second) would
// make a 2,000-row import last minutes.
const (
	clientQPS   = 100
	clientBurst = 200
)

// ErrReported is returned when the command has said what went wrong on its
// output: the process exits 1 with nothing more to print.
var ErrReported = errors.New("failed")

// Options are the settings every command shares.
type Options struct {
	genericiooptions.IOStreams
	Flags *genericclioptions.ConfigFlags
}

// NewCommand is `kubectl visio`. flags carries kubectl's connection flags
// (--kubeconfig, --context, -n, --as...); tests set its WrapConfigFn to count
// requests.
func NewCommand(streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) *cobra.Command {
	o := &Options{IOStreams: streams, Flags: flags}
	cmd := &cobra.Command{
		Use:   "kubectl-visio",
		Short: "Manage the users of visio entities from spreadsheets, their license requests, and report their usage",
		Long: `kubectl visio imports and exports the users of an entity from and to the
spreadsheets administrators keep them in, and reports the usage of entities:
licenses, users per role and rooms.`,
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl visio"},
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	cmd.SetOut(streams.Out)
	cmd.SetErr(streams.ErrOut)
	cmd.SetIn(streams.In)
	flags.AddFlags(cmd.PersistentFlags())

	users := &cobra.Command{Use: "users", Short: "Import and export the users of an entity"}
	users.AddCommand(newImportCommand(o), newExportCommand(o))
	cmd.AddCommand(users, newLicensesCommand(o), newReportCommand(o))
	return cmd
}

// Run runs `kubectl visio` with args and returns the exit status.
func Run(ctx context.Context, args []string, streams genericiooptions.IOStreams, flags *genericclioptions.ConfigFlags) int {
	cmd := NewCommand(streams, flags)
	cmd.SetArgs(args)
	if err := cmd.ExecuteContext(ctx); err != nil {
		if !errors.Is(err, ErrReported) {
			_, _ = fmt.Fprintln(streams.ErrOut, "error:", err)
		}
		return 1
	}
	return 0
}

var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(v1.AddToScheme(s))
	return s
}()

// restMapper knows the kinds the plugin reads and writes, so that it needs no
// discovery request (nor the right to make one).
func restMapper() meta.RESTMapper {
	m := meta.NewDefaultRESTMapper([]schema.GroupVersion{v1.GroupVersion})
	for _, kind := range []string{"PlatformUser", "LicensePool", "LicenseRequest", "VMR"} {
		m.Add(v1.GroupVersion.WithKind(kind), meta.RESTScopeNamespace)
	}
	m.Add(v1.GroupVersion.WithKind("Entity"), meta.RESTScopeRoot)
	return m
}

// client connects as kubectl would, with kubectl's flags.
func (o *Options) client() (client.Client, error) {
	cfg, err := o.Flags.ToRESTConfig()
	if err != nil {
		return nil, err
	}
	if cfg.QPS == 0 {
		cfg.QPS, cfg.Burst = clientQPS, clientBurst
	}
	return client.New(cfg, client.Options{Scheme: scheme, Mapper: restMapper()})
}

// namespace is -n, or the kubeconfig context's namespace; explicit tells
// whether -n was given.
func (o *Options) namespace() (ns string, explicit bool, err error) {
	return o.Flags.ToRawKubeConfigLoader().Namespace()
}

func (o *Options) errorf(format string, args ...any) {
	_, _ = fmt.Fprintf(o.ErrOut, format+"\n", args...)
}

func (o *Options) printf(format string, args ...any) {
	_, _ = fmt.Fprintf(o.Out, format+"\n", args...)
}
