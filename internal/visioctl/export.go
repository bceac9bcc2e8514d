package visioctl

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
	"sigs.k8s.io/yaml"

	"visio.dev/operator/internal/userimport"
)

func newExportCommand(o *Options) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "export -n NAMESPACE",
		Short: "Write the users of an entity as CSV or YAML",
		Long: `Write the users of an entity as CSV (English header, separator ",", UTF-8),
which any spreadsheet opens and "kubectl visio users import" reads back
unchanged, or as YAML manifests.`,
		Example: `  # Export the users of an entity to a spreadsheet
  kubectl visio users export -n entity-quimper > agents.csv

  # Export them as manifests for a git repository
  kubectl visio users export -n entity-quimper -o yaml > users.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.export(cmd.Context(), output)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "csv", `"csv" or "yaml"`)
	return cmd
}

func (o *Options) export(ctx context.Context, output string) error {
	if output != "csv" && output != "yaml" {
		return fmt.Errorf(`-o must be "csv" or "yaml", not %q`, output)
	}
	ns, _, err := o.namespace()
	if err != nil {
		return err
	}
	c, err := o.client()
	if err != nil {
		return err
	}
	users, err := listUsers(ctx, c, ns)
	if err != nil {
		return err
	}
	if output == "csv" {
		return userimport.WriteCSV(o.Out, users)
	}
	for i := range users {
		u := &users[i]
		out, err := yaml.Marshal(userimport.Manifest(u.Namespace, u.Name, u.Spec, nil).Object)
		if err != nil {
			return err
		}
		_, _ = fmt.Fprintf(o.Out, "---\n%s", out)
	}
	return nil
}
