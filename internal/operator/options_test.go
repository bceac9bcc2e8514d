package operator

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client/fake"

	"visio.dev/operator/internal/backend/embedded"
)

// parse binds the flags on a fresh set, parses args and validates, as the
// manager's main does.
func parse(t *testing.T, args ...string) (Options, error) {
	t.Helper()
	fs := flag.NewFlagSet("manager", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var o Options
	o.BindFlags(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	o.Backend = embedded.New()
	return o, o.Validate()
}

func TestOptionsDefaults(t *testing.T) {
	o, err := parse(t)
	if err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if o.PlatformEntity != "platform" || o.ReservationTTL != 30*time.Second || o.NumericIDs != (NumericIDRange{100000, 999999}) ||
		o.BackendTimeout != 15*time.Second || o.MaxConcurrentReconciles != 4 || len(o.PlatformAdminGroups) != 1 || o.PlatformAdminGroups[0] != "system:masters" {
		t.Errorf("unexpected defaults: %+v", o)
	}
}

func TestOptionsParse(t *testing.T) {
	o, err := parse(t, "--platform-entity=support", "--numeric-id-range=1000-9999", "--license-reservation-ttl=1m",
		"--platform-admin-groups= ops , oidc:platform ,", "--drift-check-interval=0")
	if err != nil {
		t.Fatal(err)
	}
	if o.PlatformEntity != "support" || o.NumericIDs != (NumericIDRange{1000, 9999}) || o.ReservationTTL != time.Minute ||
		strings.Join(o.PlatformAdminGroups, "|") != "ops|oidc:platform" || o.DriftCheckInterval != 0 {
		t.Errorf("flags not applied: %+v", o)
	}
}

// Each bad setting stops the manager with a message that names its flag.
func TestOptionsRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--license-reservation-ttl=0"}, "--license-reservation-ttl: must be positive"},
		{[]string{"--license-reservation-ttl=-5s"}, "--license-reservation-ttl: must be positive"},
		{[]string{"--license-reservation-ttl=soon"}, "license-reservation-ttl"},
		{[]string{"--numeric-id-range=999999-100000"}, "numeric-id-range"},
		{[]string{"--numeric-id-range=5-99"}, "4 to 12 digits"},
		{[]string{"--numeric-id-range=1000-9999999999999"}, "4 to 12 digits"},
		{[]string{"--numeric-id-range=100000"}, "want MIN-MAX"},
		{[]string{"--numeric-id-range=a-b"}, "want MIN-MAX in digits"},
		{[]string{"--platform-entity=Platform"}, "--platform-entity"},
		{[]string{"--platform-entity=a.b"}, "--platform-entity"},
		{[]string{"--platform-entity="}, "--platform-entity"},
		{[]string{"--platform-entity=" + strings.Repeat("p", 64)}, "--platform-entity"},
		{[]string{"--max-concurrent-reconciles=0"}, "--max-concurrent-reconciles"},
		{[]string{"--backend-timeout=0"}, "--backend-timeout"},
		{[]string{"--drift-check-interval=-1m"}, "--drift-check-interval"},
		{[]string{"--join-base-url=visio.example/join"}, "--join-base-url"},
		{[]string{"--sip-domain=not a domain"}, "--sip-domain"},
	} {
		_, err := parse(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// Options built in code (the tests, another binary) go through the same check.
func TestOptionsValidateInCode(t *testing.T) {
	o, err := parse(t)
	if err != nil {
		t.Fatal(err)
	}
	o.ReservationTTL = 0
	o.NumericIDs = NumericIDRange{}
	err = o.Validate()
	if err == nil || !strings.Contains(err.Error(), "--license-reservation-ttl") || !strings.Contains(err.Error(), "--numeric-id-range") {
		t.Errorf("got %v, want both settings named", err)
	}
}

func TestNumericIDRangeString(t *testing.T) {
	r := NumericIDRange{}
	if err := r.Set(" 1000 - 2000 "); err != nil {
		t.Fatal(err)
	}
	if r.String() != "1000-2000" {
		t.Errorf("got %q", r.String())
	}
	before := r
	if err := r.Set("3000-1000"); err == nil || r != before {
		t.Errorf("a refused value changed the range: %v %+v", err, r)
	}
}

func TestBackendOptions(t *testing.T) {
	if _, err := (BackendOptions{Kind: "zoom"}).New(time.Second); err == nil || !strings.Contains(err.Error(), "--vmr-backend") {
		t.Errorf("unknown backend: got %v", err)
	}
	if _, err := (BackendOptions{Kind: "pexip"}).New(time.Second); err == nil || !strings.Contains(err.Error(), "--pexip-url") {
		t.Errorf("pexip without URL: got %v", err)
	}
	if b, err := (BackendOptions{Kind: "embedded"}).New(time.Second); err != nil || b == nil {
		t.Errorf("embedded: %v", err)
	}
}

// The Pexip owner: the flag's value when set and valid; otherwise derived
// from the cluster's kube-system namespace, the same for every start.
func TestPexipOwner(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"username", "password"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pexipOpts := func(owner string) BackendOptions {
		return BackendOptions{Kind: "pexip", PexipURL: "https://pexip.example/", PexipCredentialsDir: dir, PexipOwner: owner}
	}
	for _, bad := range []string{"", "Paris", "a:b", strings.Repeat("a", 64)} {
		if _, err := pexipOpts(bad).New(time.Second); err == nil || !strings.Contains(err.Error(), "--pexip-owner") {
			t.Errorf("owner %q: got %v", bad, err)
		}
	}
	if _, err := pexipOpts("paris-prod").New(time.Second); err != nil {
		t.Errorf("owner paris-prod: %v", err)
	}

	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	kubeSystem := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "kube-system", UID: "3F2A9C1B-7D4E-4b5a-9c1d-0e2f3a4b5c6d"}}
	c := fake.NewClientBuilder().WithScheme(scheme).WithObjects(kubeSystem).Build()
	b := pexipOpts("")
	if err := b.DefaultPexipOwner(t.Context(), c); err != nil || b.PexipOwner != "cluster-3f2a9c1b7d4e" {
		t.Fatalf("derived owner %q, %v", b.PexipOwner, err)
	}
	if _, err := b.New(time.Second); err != nil {
		t.Errorf("derived owner refused: %v", err)
	}
	b.PexipOwner = "paris-prod"
	if err := b.DefaultPexipOwner(t.Context(), c); err != nil || b.PexipOwner != "paris-prod" {
		t.Errorf("a set owner was replaced: %q, %v", b.PexipOwner, err)
	}
	empty := fake.NewClientBuilder().WithScheme(scheme).Build()
	b = pexipOpts("")
	if err := b.DefaultPexipOwner(t.Context(), empty); err == nil || !strings.Contains(err.Error(), "--pexip-owner") {
		t.Errorf("no kube-system namespace: %v", err)
	}
	e := BackendOptions{Kind: "embedded"}
	if err := e.DefaultPexipOwner(t.Context(), empty); err != nil || e.PexipOwner != "" {
		t.Errorf("embedded backend: %q, %v", e.PexipOwner, err)
	}
}
