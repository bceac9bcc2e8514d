package main

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/apimachinery/pkg/util/wait"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/client/config"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// runOnCluster runs the operator against $KUBECONFIG's cluster, in one of
// three ways, and says which:
//   - the chart is installed there: its Pods serve the webhooks (if on); the local
//     manager runs the controllers only, and only while it holds the leader
//     lease of the chart's namespace (so the two never reconcile at once);
//   - WEBHOOK_HOST names an address of this machine the API server can
//     reach: the local manager serves the webhooks too, registered under a
//     configuration of its own that it removes on exit;
//   - otherwise the controllers run alone, without admission webhooks.
func runOnCluster(ctx context.Context, args []string) error {
	cfg, err := config.GetConfig() // $KUBECONFIG, with its list of files and current context
	if err != nil {
		return err
	}
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(apiextensionsv1.AddToScheme(scheme))
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		return err
	}
	base := []string{"--metrics-bind-address=127.0.0.1:8080", "--metrics-secure=false"}

	ns, webhooks, err := findChart(ctx, c)
	if err != nil {
		return err
	}
	if ns != "" {
		if webhooks {
			fmt.Printf(`The chart is installed in namespace %s: its Pods serve the admission webhooks.
Running the controllers here with webhooks disabled (--enable-webhooks=false). They start once
this process holds the leader lease of %s, so they never run beside the chart's leader; to hand
the controllers over, scale the chart's operator down (admission then fails closed until it is
back: the webhooks are its Pods):
`, ns, ns)
		} else {
			fmt.Printf(`The chart is installed in namespace %s, with its admission webhooks off.
Running the controllers here, without webhooks. They start once this process holds the leader
lease of %s, so they never run beside the chart's leader; to hand the controllers over, scale
the chart's operator down:
`, ns, ns)
		}
		fmt.Printf("    kubectl -n %s scale deployment/visio-operator --replicas=0\n\n", ns)
		if chartBackend, local := backendOf(ctx, c, ns), flagValue(args, "--vmr-backend", "embedded"); chartBackend != "" && chartBackend != local {
			fmt.Printf(`WARNING: the chart's operator uses --vmr-backend=%s and this one %s: once this one leads, it
provisions rooms in another backend. Pass the chart's backend flags: make run ARGS="--vmr-backend=%s ...".

`, chartBackend, local, chartBackend)
		}
		return runManager(ctx, append(append(base, "--enable-webhooks=false", "--leader-elect", "--leader-election-namespace="+ns), args...), os.Environ())
	}

	created, err := installCRDs(ctx, c)
	if err != nil {
		return err
	}
	crdNote := "" // said after the way it runs
	if created > 0 {
		crdNote = `Created the CRDs, which this cluster did not have. Helm adopts only what it created: to install
the chart here later, pass --take-ownership to helm install.

`
	}
	host := os.Getenv("WEBHOOK_HOST")
	if host == "" {
		fmt.Print(`The chart is not installed in this cluster. Installed or updated the CRDs from config/crd.
Running the controllers here WITHOUT admission webhooks: full Deny pools are enforced by the
controllers after the fact, not refused at admission. To serve the webhooks from here, set
WEBHOOK_HOST to an address of this machine that the cluster's API server can reach (port 9443).

`)
		fmt.Print(crdNote)
		return runManager(ctx, append(append(base, "--enable-webhooks=false"), args...), os.Environ())
	}

	wo := &envtest.WebhookInstallOptions{
		Paths:                        []string{filepath.Join("config", "webhook", "manifests.yaml")},
		LocalServingHost:             "0.0.0.0",
		LocalServingHostExternalName: host,
		LocalServingPort:             9443,
	}
	if err := wo.PrepWithoutInstalling(); err != nil {
		return fmt.Errorf("cannot prepare the local webhooks: %w", err)
	}
	// A name of our own: never the chart's, nor the generic name of the
	// generated manifest, which another operator's configuration may bear.
	for _, w := range wo.ValidatingWebhooks {
		w.Name = localWebhookConfiguration
	}
	if err := wo.Install(cfg); err != nil {
		return fmt.Errorf("cannot register the local webhooks: %w", err)
	}
	defer func() {
		for _, w := range wo.ValidatingWebhooks {
			if err := client.IgnoreNotFound(c.Delete(context.Background(), w)); err != nil {
				fmt.Fprintf(os.Stderr, "cannot remove the webhook configuration %s: %v\n", w.Name, err)
			}
		}
		_ = wo.Cleanup()
	}()
	names := ""
	for _, w := range wo.ValidatingWebhooks {
		names += " " + w.Name
	}
	fmt.Printf(`The chart is not installed in this cluster. Installed or updated the CRDs from config/crd.
Serving the admission webhooks from this machine at https://%s:9443, registered as the
ValidatingWebhookConfiguration%s (removed when this stops). The API server must reach that address.

`, host, names)
	fmt.Print(crdNote)
	return runManager(ctx, append(append(base, "--webhook-port=9443", "--webhook-cert-dir="+wo.LocalServingCertDir), args...), os.Environ())
}

// localWebhookConfiguration names the webhook configuration of a local
// manager that serves the webhooks (WEBHOOK_HOST).
const localWebhookConfiguration = "visio-operator-make-run"

// installCRDs creates the CRDs of config/crd, or updates those the cluster
// has to this tree's version, and says how many it created. An update keeps
// the labels and annotations it finds: a chart uninstalled with crds.keep
// leaves its ownership marks on them, and a later helm install adopts the
// CRDs only if they are still there.
func installCRDs(ctx context.Context, c client.Client) (created int, err error) {
	opts := &envtest.CRDInstallOptions{Paths: []string{filepath.Join("config", "crd", "bases")}, ErrorIfPathMissing: true}
	if err := envtest.ReadCRDFiles(opts); err != nil {
		return 0, fmt.Errorf("cannot read the CRDs: %w", err)
	}
	for _, crd := range opts.CRDs {
		existing := &apiextensionsv1.CustomResourceDefinition{}
		err := c.Get(ctx, client.ObjectKeyFromObject(crd), existing)
		switch {
		case apierrors.IsNotFound(err):
			if err := c.Create(ctx, crd); err != nil {
				return created, fmt.Errorf("cannot create the CRD %s: %w", crd.Name, err)
			}
			created++
			continue
		case err != nil:
			return created, fmt.Errorf("cannot read the CRD %s: %w", crd.Name, err)
		}
		existing.Spec = crd.Spec
		existing.Labels = mergeMaps(existing.Labels, crd.Labels)
		existing.Annotations = mergeMaps(existing.Annotations, crd.Annotations)
		if err := c.Update(ctx, existing); err != nil {
			return created, fmt.Errorf("cannot update the CRD %s: %w", crd.Name, err)
		}
	}
	// Served before the manager starts and before anyone creates objects.
	for _, crd := range opts.CRDs {
		err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			got := &apiextensionsv1.CustomResourceDefinition{}
			if err := c.Get(ctx, client.ObjectKeyFromObject(crd), got); err != nil {
				return false, client.IgnoreNotFound(err)
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			return created, fmt.Errorf("the CRD %s is not established: %w", crd.Name, err)
		}
	}
	return created, nil
}

func mergeMaps(into, from map[string]string) map[string]string {
	if len(from) == 0 {
		return into
	}
	if into == nil {
		into = map[string]string{}
	}
	maps.Copy(into, from)
	return into
}

// findChart finds where the chart is installed: the namespace of its webhook
// Service or, with its webhooks off, of its Deployment; "" when it is not.
func findChart(ctx context.Context, c client.Client) (ns string, webhooks bool, err error) {
	vwc := &admissionv1.ValidatingWebhookConfiguration{}
	err = c.Get(ctx, client.ObjectKey{Name: "visio-operator"}, vwc)
	switch {
	case err == nil && len(vwc.Webhooks) > 0 && vwc.Webhooks[0].ClientConfig.Service != nil:
		return vwc.Webhooks[0].ClientConfig.Service.Namespace, true, nil
	case err != nil && !apierrors.IsNotFound(err):
		return "", false, fmt.Errorf("cannot read the cluster's webhook configuration: %w", err)
	}
	deployments := &appsv1.DeploymentList{}
	if err := c.List(ctx, deployments, client.MatchingLabels{"app.kubernetes.io/name": "visio-operator", "app.kubernetes.io/managed-by": "Helm"}); err != nil {
		return "", false, fmt.Errorf("cannot look for the chart's Deployment: %w", err)
	}
	if len(deployments.Items) == 0 {
		return "", false, nil
	}
	return deployments.Items[0].Namespace, false, nil
}

// backendOf is the --vmr-backend of the chart's manager in ns ("" when unknown).
func backendOf(ctx context.Context, c client.Client, ns string) string {
	d := &appsv1.Deployment{}
	if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "visio-operator"}, d); err != nil {
		return ""
	}
	for _, ctr := range d.Spec.Template.Spec.Containers {
		if ctr.Name == "manager" {
			return flagValue(ctr.Args, "--vmr-backend", "embedded")
		}
	}
	return ""
}

// flagValue is the value of the last --name=value (or --name value) in
// args, or def.
func flagValue(args []string, name, def string) string {
	v := def
	for i, a := range args {
		if after, ok := strings.CutPrefix(a, name+"="); ok {
			v = after
		} else if a == name && i+1 < len(args) {
			v = args[i+1]
		}
	}
	return v
}
