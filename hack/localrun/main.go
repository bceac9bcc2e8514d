// Command localrun is `make run`: it runs the operator against $KUBECONFIG's
// cluster when set (see runOnCluster), and otherwise on a local control plane (etcd,
// kube-apiserver and kube-controller-manager built by hack/controlplane.sh)
// that it starts, with what the chart installs apart from the Deployment (the
// CRDs, the webhook configuration, the admission policies, the shipped
// ClusterRoles) and the samples applied. The operator runs as its service
// account, bound to its ClusterRole only, as in the chart. Ctrl-C stops
// everything it started.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/config/samples"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "make run:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("localrun", flag.ContinueOnError)
	fs.StringVar(&managerBinary, "manager", "", "Manager binary to run (default: build ./cmd into bin/manager). Flags after -- go to the manager.")
	if err := fs.Parse(args); err != nil {
		return err
	}
	args = fs.Args() // what followed --
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	if kc := os.Getenv("KUBECONFIG"); kc != "" {
		fmt.Println("Running the operator against the cluster of KUBECONFIG =", kc)
		return runOnCluster(ctx, args)
	}

	assets, err := output("hack/controlplane.sh")
	if err != nil {
		return fmt.Errorf("cannot build the control plane: %w", err)
	}
	local, _ := filepath.Abs(".local")
	if err := os.MkdirAll(local, 0o700); err != nil {
		return err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		CRDDirectoryPaths:     []string{filepath.Join("config", "crd", "bases")},
		ErrorIfCRDPathMissing: true,
		WebhookInstallOptions: envtest.WebhookInstallOptions{Paths: []string{filepath.Join("config", "webhook", "manifests.yaml")}},
	}
	fmt.Println("Starting etcd and kube-apiserver", filepath.Base(assets))
	if _, err := env.Start(); err != nil {
		return fmt.Errorf("cannot start the control plane: %w", err)
	}
	defer func() {
		fmt.Println("Stopping the control plane")
		_ = env.Stop()
	}()
	admin, err := env.AddUser(envtest.User{Name: "admin", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return err
	}
	kubeconfig, err := admin.KubeConfig()
	if err != nil {
		return err
	}
	kubeconfigPath := filepath.Join(local, "kubeconfig")
	if err := os.WriteFile(kubeconfigPath, kubeconfig, 0o600); err != nil {
		return err
	}
	fmt.Println("Installing the shipped roles and the admission policies")
	if err := installManifests(ctx, kubeconfigPath, []string{
		filepath.Join("config", "rbac", "service_account.yaml"),
		filepath.Join("config", "rbac", "role.yaml"),
		filepath.Join("config", "rbac", "role_binding.yaml"),
		filepath.Join("config", "rbac", "leader_election_role.yaml"),
		filepath.Join("config", "rbac", "roles.yaml"),
		filepath.Join("config", "policies", "admission-policies.yaml"),
	}); err != nil {
		return err
	}
	// The operator's identity: the service account the role binding and the
	// admission policies name, as the chart runs it.
	operatorUser, err := env.AddUser(envtest.User{Name: operatorServiceAccount, Groups: []string{"system:serviceaccounts", "system:authenticated"}}, nil)
	if err != nil {
		return err
	}
	operatorKubeconfig, err := operatorUser.KubeConfig()
	if err != nil {
		return err
	}
	operatorKubeconfigPath := filepath.Join(local, "operator.kubeconfig")
	if err := os.WriteFile(operatorKubeconfigPath, operatorKubeconfig, 0o600); err != nil {
		return err
	}

	kcm := exec.CommandContext(ctx, filepath.Join(assets, "kube-controller-manager"), "--kubeconfig="+kubeconfigPath,
		"--controllers=garbage-collector-controller,namespace-controller", "--leader-elect=false", "--secure-port=0")
	kcmLog, err := os.Create(filepath.Join(local, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	defer func() { _ = kcmLog.Close() }()
	kcm.Stdout, kcm.Stderr = kcmLog, kcmLog
	kcm.Cancel = func() error { return kcm.Process.Signal(syscall.SIGTERM) }
	if err := kcm.Start(); err != nil {
		return fmt.Errorf("cannot start kube-controller-manager: %w", err)
	}
	defer func() { _ = kcm.Process.Signal(syscall.SIGTERM); _ = kcm.Wait() }()

	wo := env.WebhookInstallOptions
	managerArgs := append([]string{
		"--kubeconfig=" + operatorKubeconfigPath, "--metrics-bind-address=127.0.0.1:8080", "--metrics-secure=false",
		fmt.Sprintf("--webhook-port=%d", wo.LocalServingPort), "--webhook-cert-dir=" + wo.LocalServingCertDir,
	}, args...)

	go applySamples(ctx, kubeconfigPath, assets)
	return runManager(ctx, managerArgs, os.Environ())
}

// managerBinary is the -manager flag: a manager built beforehand (the
// real-node tests run this program where nothing can be built).
var managerBinary string

// runManager builds the manager (unless -manager names one) and runs it in
// the foreground until ctx ends.
func runManager(ctx context.Context, args, env []string) error {
	bin := managerBinary
	if bin == "" {
		bin = filepath.Join("bin", "manager")
		if out, err := exec.Command("go", "build", "-o", bin, "./cmd").CombinedOutput(); err != nil {
			return fmt.Errorf("cannot build the manager: %v\n%s", err, out)
		}
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr, cmd.Env = os.Stdout, os.Stderr, env
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 15 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return nil // stopped by Ctrl-C
	}
	return err
}

// applySamples applies config/samples once the webhooks answer: the Entity
// first, then, once its namespace exists, the rest.
func applySamples(ctx context.Context, kubeconfig, assets string) {
	scheme := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(scheme))
	utilruntime.Must(v1.AddToScheme(scheme))
	objs, err := samples.Objects()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot read the samples:", err)
		return
	}
	restCfg, err := clientConfig(kubeconfig)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	c, err := client.New(restCfg, client.Options{Scheme: scheme})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return
	}
	for _, obj := range objs {
		for {
			err := c.Create(ctx, obj.DeepCopy())
			if err == nil || strings.Contains(err.Error(), "already exists") {
				break
			}
			if ctx.Err() != nil {
				return
			}
			time.Sleep(time.Second) // webhooks not up yet, or the namespace not created yet
		}
	}
	fmt.Printf("\nThe samples are applied. In another terminal:\n\n    export KUBECONFIG=%s\n    %s get visio -A\n\nCtrl-C here stops the operator and the control plane.\n\n",
		kubeconfig, filepath.Join(assets, "kubectl"))
}

func output(cmd string) (string, error) {
	c := exec.Command(cmd)
	c.Stderr = os.Stderr
	out, err := c.Output()
	return strings.TrimSpace(string(out)), err
}
