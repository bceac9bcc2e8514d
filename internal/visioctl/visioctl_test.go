package visioctl

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"sigs.k8s.io/yaml"

	v1 "visio.dev/operator/api/v1alpha1"
)

// run runs the plugin with no cluster: a kubeconfig pointing nowhere, so a
// command that tries to connect fails.
func run(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(kubeconfig, []byte("apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster: {server: 'https://127.0.0.1:1'}\ncontexts:\n- name: c\n  context: {cluster: c, namespace: entity-from-context}\ncurrent-context: c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	streams := genericiooptions.IOStreams{In: strings.NewReader(stdin), Out: &out, ErrOut: &errOut}
	code := Run(context.Background(), append([]string{"--kubeconfig", kubeconfig}, args...), streams, genericclioptions.NewConfigFlags(false))
	return code, out.String(), errOut.String()
}

func TestEveryCommandHasExamples(t *testing.T) {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && c.Name() != "help" && c.Name() != "completion" && c.Example == "" {
			t.Errorf("%q has no example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(NewCommand(genericiooptions.NewTestIOStreamsDiscard(), genericclioptions.NewConfigFlags(false)))
}

func TestImportYAMLNeedsNoCluster(t *testing.T) {
	file := "Courriel;Prénom;Nom;Rôle;Actif;Fonction\nMarius.Paris@Quimper.example;Marius;Pâris;Administrateur;non;DGS\n"
	code, out, errOut := run(t, file, "users", "import", "-", "-n", "entity-quimper", "-o", "yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if errOut != "Ignoring the columns \"Fonction\"\n" {
		t.Errorf("stderr %q", errOut)
	}
	docs := strings.Split(strings.TrimPrefix(out, "---\n"), "---\n")
	if len(docs) != 1 {
		t.Fatalf("%d documents:\n%s", len(docs), out)
	}
	u := &v1.PlatformUser{}
	if err := yaml.UnmarshalStrict([]byte(docs[0]), u); err != nil {
		t.Fatal(err)
	}
	if u.Kind != "PlatformUser" || u.APIVersion != v1.GroupVersion.String() || u.Namespace != "entity-quimper" ||
		!strings.HasPrefix(u.Name, "marius-paris-") || u.Spec.Email != "marius.paris@quimper.example" ||
		u.Spec.Role != v1.RoleAdministrator || u.Spec.Active == nil || *u.Spec.Active {
		t.Errorf("manifest %+v", u)
	}
	// The same file gives the same manifests every time.
	if _, again, _ := run(t, file, "users", "import", "-", "-n", "entity-quimper", "-o", "yaml"); again != out {
		t.Errorf("manifests change:\n%s\n%s", out, again)
	}
}

func TestImportInvalidNeedsNoCluster(t *testing.T) {
	code, out, errOut := run(t, "email,givenName\nnot-an-email,Ann\n", "users", "import", "-")
	if code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	want := "line 1: familyName: missing column: the file needs a column \"familyName\" (or \"nom\")\n" +
		"line 2: email: not an email address: \"not-an-email\"\n2 problems in -: nothing was written\n"
	if errOut != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", errOut, want)
	}
	if out != "0 created, 0 updated, 0 unchanged, 0 refused\n" {
		t.Errorf("stdout %q", out)
	}
}

func TestFlagsAreChecked(t *testing.T) {
	for _, args := range [][]string{
		{"users", "import", "-", "--dry-run=maybe"},
		{"users", "import", "-", "-o", "json"},
		{"users", "export", "-o", "xlsx"},
		{"report", "-o", "yaml"},
		{"report", "-A", "-n", "entity-a"},
	} {
		if code, _, errOut := run(t, "email,givenName,familyName\n", args...); code != 1 || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}
