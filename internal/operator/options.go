package operator

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/embedded"
	"visio.dev/operator/internal/backend/pexip"
)

// The defaults of the operator's settings. Each one has a single owner: the
// flag that sets it. Nothing further down applies a default of its own.
const (
	DefaultPlatformEntity     = "platform"
	DefaultReservationTTL     = 30 * time.Second
	DefaultMaxConcurrent      = 4
	DefaultJoinBaseURL        = "https://visio.example/join/"
	DefaultSIPDomain          = "visio.example"
	DefaultDriftCheckInterval = 10 * time.Minute
	DefaultBackendTimeout     = 15 * time.Second
)

// DefaultNumericIDs gives six-digit room numbers, easy to dial from a keypad.
var DefaultNumericIDs = NumericIDRange{Min: 100000, Max: 999999}

// Generated room numbers have 4 to 12 digits, the VMR schema's rule for given ones.
const (
	minNumericID = 1000
	maxNumericID = 999999999999
)

// NumericIDRange is the inclusive range of generated room numbers. It is its
// own flag.Value: `--numeric-id-range=MIN-MAX` is parsed and checked once.
type NumericIDRange struct{ Min, Max uint64 }

// String prints the range as the flag takes it.
func (r *NumericIDRange) String() string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%d-%d", r.Min, r.Max)
}

// Set parses MIN-MAX and checks it.
func (r *NumericIDRange) Set(s string) error {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return fmt.Errorf("want MIN-MAX, got %q", s)
	}
	minID, err1 := strconv.ParseUint(strings.TrimSpace(lo), 10, 64)
	maxID, err2 := strconv.ParseUint(strings.TrimSpace(hi), 10, 64)
	if err1 != nil || err2 != nil {
		return fmt.Errorf("want MIN-MAX in digits, got %q", s)
	}
	v := NumericIDRange{Min: minID, Max: maxID}
	if err := v.Validate(); err != nil {
		return err
	}
	*r = v
	return nil
}

// Validate checks that the range is not empty and that its numbers have 4 to
// 12 digits.
func (r NumericIDRange) Validate() error {
	switch {
	case r.Min > r.Max:
		return fmt.Errorf("range %d-%d is empty: MIN must not exceed MAX", r.Min, r.Max)
	case r.Min < minNumericID || r.Max > maxNumericID:
		return fmt.Errorf("range %d-%d must stay within %d-%d (4 to 12 digits)", r.Min, r.Max, minNumericID, maxNumericID)
	}
	return nil
}

// stringList is a comma-separated flag; blanks are dropped.
type stringList struct{ list *[]string }

func (l stringList) String() string {
	if l.list == nil {
		return ""
	}
	return strings.Join(*l.list, ",")
}

func (l stringList) Set(s string) error {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	*l.list = out
	return nil
}

// BindFlags registers the operator's settings on fs, with their defaults.
// Backend, DisableWebhooks and Clock are not flags: the caller builds them.
func (o *Options) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&o.PlatformEntity, "platform-entity", DefaultPlatformEntity,
		"Name of the Entity whose namespace holds the Concierges (the platform's own support staff).")
	fs.StringVar(&o.UsernamePrefix, "rbac-username-prefix", "",
		"Prefix of PlatformUser emails in RBAC subjects; match the API server's --oidc-username-prefix.")
	o.PlatformAdminGroups = []string{"system:masters"}
	fs.Var(stringList{&o.PlatformAdminGroups}, "platform-admin-groups",
		"Comma-separated groups whose members are platform administrators (may grant the Concierge role).")
	fs.DurationVar(&o.ReservationTTL, "license-reservation-ttl", DefaultReservationTTL,
		"How long a license reserved at admission waits for its user to appear.")
	fs.IntVar(&o.MaxConcurrentReconciles, "max-concurrent-reconciles", DefaultMaxConcurrent,
		"Objects of one kind reconciled in parallel.")
	o.NumericIDs = DefaultNumericIDs
	fs.Var(&o.NumericIDs, "numeric-id-range", "Range of generated room numbers, MIN-MAX (4 to 12 digits).")
	fs.StringVar(&o.JoinBaseURL, "join-base-url", DefaultJoinBaseURL,
		"Base of the rooms' join URL; the room number is appended.")
	fs.StringVar(&o.SIPDomain, "sip-domain", DefaultSIPDomain, "SIP domain of the rooms' SIP URI.")
	fs.DurationVar(&o.DriftCheckInterval, "drift-check-interval", DefaultDriftCheckInterval,
		"How often a Ready room is compared with the backend (0 disables).")
	fs.DurationVar(&o.BackendTimeout, "backend-timeout", DefaultBackendTimeout, "Time limit of one backend call.")
}

// Validate checks every setting and names the flag of each one that is wrong.
func (o *Options) Validate() error {
	var errs []error
	bad := func(flag, format string, args ...any) {
		errs = append(errs, fmt.Errorf("--%s: %s", flag, fmt.Sprintf(format, args...)))
	}
	if msgs := validation.IsDNS1123Label(o.PlatformEntity); len(msgs) > 0 {
		bad("platform-entity", "%q cannot be an Entity name: %s", o.PlatformEntity, strings.Join(msgs, "; "))
	}
	for _, g := range o.PlatformAdminGroups {
		if strings.TrimSpace(g) == "" {
			bad("platform-admin-groups", "empty group name")
		}
	}
	if o.ReservationTTL <= 0 {
		bad("license-reservation-ttl", "must be positive, got %s", o.ReservationTTL)
	}
	if o.MaxConcurrentReconciles < 1 {
		bad("max-concurrent-reconciles", "must be at least 1, got %d", o.MaxConcurrentReconciles)
	}
	if err := o.NumericIDs.Validate(); err != nil {
		bad("numeric-id-range", "%v", err)
	}
	if u, err := url.Parse(o.JoinBaseURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("join-base-url", "want an absolute http(s) URL, got %q", o.JoinBaseURL)
	}
	if msgs := validation.IsDNS1123Subdomain(o.SIPDomain); len(msgs) > 0 {
		bad("sip-domain", "%q is not a domain name: %s", o.SIPDomain, strings.Join(msgs, "; "))
	}
	if o.DriftCheckInterval < 0 {
		bad("drift-check-interval", "must not be negative, got %s", o.DriftCheckInterval)
	}
	if o.BackendTimeout <= 0 {
		bad("backend-timeout", "must be positive, got %s", o.BackendTimeout)
	}
	if o.Backend == nil {
		errs = append(errs, errors.New("no room backend"))
	}
	return errors.Join(errs...)
}

// BackendOptions choose and reach the room backend.
type BackendOptions struct {
	// Kind is embedded or pexip.
	Kind string
	// PexipURL is the Pexip Infinity management node.
	PexipURL string
	// PexipCredentialsDir holds the files username and password.
	PexipCredentialsDir string
	// PexipCAFile is a PEM bundle of the CAs that sign the management node's
	// certificate (a private CA), added to the system's.
	PexipCAFile string
	// PexipOwner scopes this installation's rooms on the Pexip node: it is
	// put in their tags, and the sweep and every check of a room's tag keep
	// to it, so that installations sharing a node never sweep or change
	// each other's rooms. Empty: DefaultPexipOwner fills it in.
	PexipOwner string
}

// ownerNamespace is the namespace whose UID names the cluster: made with
// the cluster, never deleted, kept by an etcd restore as the VMR UIDs in the
// rooms' keys are.
const ownerNamespace = "kube-system"

// DefaultPexipOwner sets PexipOwner, when the flag left it empty and the
// backend is Pexip, to "cluster-" followed by the first 12 hexadecimal
// digits of the kube-system namespace's UID: distinct for each cluster and
// stable for its life. Two installations in one cluster share their VMRs,
// so they may share an owner.
func (b *BackendOptions) DefaultPexipOwner(ctx context.Context, c client.Reader) error {
	if b.Kind != "pexip" || b.PexipOwner != "" {
		return nil
	}
	ns := &corev1.Namespace{}
	if err := c.Get(ctx, client.ObjectKey{Name: ownerNamespace}, ns); err != nil {
		return fmt.Errorf("--pexip-owner is not set and cannot be derived from the %s namespace's UID: %w", ownerNamespace, err)
	}
	b.PexipOwner = DerivedPexipOwner(ns.UID)
	return nil
}

// DerivedPexipOwner is the owner derived from a cluster's kube-system UID.
func DerivedPexipOwner(uid types.UID) string {
	hex := strings.ReplaceAll(strings.ToLower(string(uid)), "-", "")
	return "cluster-" + hex[:min(12, len(hex))]
}

// BindFlags registers the backend flags on fs.
func (b *BackendOptions) BindFlags(fs *flag.FlagSet) {
	fs.StringVar(&b.Kind, "vmr-backend", "embedded", "Room backend: embedded (the operator is the registry) or pexip.")
	fs.StringVar(&b.PexipURL, "pexip-url", "", "Base URL of the Pexip Infinity management node (with --vmr-backend=pexip).")
	fs.StringVar(&b.PexipCredentialsDir, "pexip-credentials-dir", "",
		"Directory with files username and password for the Pexip API (a mounted Secret; read again when it changes).")
	fs.StringVar(&b.PexipCAFile, "pexip-ca-file", "",
		"PEM bundle of the CAs that sign the Pexip management node's certificate, added to the system's (a private CA).")
	fs.StringVar(&b.PexipOwner, "pexip-owner", "",
		"This installation's name on the Pexip node, put in its rooms' tags (<owner>:visio-<VMR UID>) so that installations "+
			"sharing a node never sweep or change each other's rooms: a DNS label. "+
			"Default: cluster-<first 12 hex digits of the kube-system namespace's UID>.")
}

// New builds the backend. timeout is the time limit of one backend call; a
// Pexip request gets a quarter of it, leaving room for retries.
func (b BackendOptions) New(timeout time.Duration) (backend.Backend, error) {
	switch b.Kind {
	case "embedded":
		return embedded.New(), nil
	case "pexip":
		if b.PexipURL == "" || b.PexipCredentialsDir == "" {
			return nil, errors.New("--vmr-backend=pexip needs --pexip-url and --pexip-credentials-dir")
		}
		if b.PexipOwner == "" {
			return nil, errors.New("--vmr-backend=pexip needs --pexip-owner (or its default, see DefaultPexipOwner)")
		}
		if err := pexip.ValidateOwner(b.PexipOwner); err != nil {
			return nil, fmt.Errorf("--pexip-owner: %w", err)
		}
		c, err := pexip.New(pexip.Config{URL: b.PexipURL, CredentialsDir: b.PexipCredentialsDir, CAFile: b.PexipCAFile, Owner: b.PexipOwner,
			RequestTimeout: max(timeout/4, time.Second)}) // room for retries within one backend call
		if err != nil {
			return nil, fmt.Errorf("--vmr-backend=pexip: %w", err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("--vmr-backend: unknown backend %q (embedded or pexip)", b.Kind)
}
