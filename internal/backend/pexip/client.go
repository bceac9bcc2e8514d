// Package pexip keeps permanent virtual meeting rooms in Pexip Infinity
// through its management configuration API.
//
// How a backend.Room maps onto Pexip:
//
//   - Room.Key, in this installation's scope, is the conference's tag: the
//     key itself without an Owner, "<owner>:<key>" with one. It is what
//     makes a conference ours: Find lists conferences by tag, every call
//     that acts on a recorded conference id first checks that the
//     conference there still carries it (after a backup restore or a new
//     --pexip-url the id can name somebody else's room), and the sweep
//     lists only the tags of this scope, so that installations sharing a
//     node never touch each other's rooms. A conference tagged with the
//     bare key while an Owner is set was made before the owner was: it is
//     still ours (the key holds the VMR's UID, which no other installation
//     has), reported with an empty Key so that the caller's next Update
//     moves it into the scope.
//   - Room.Name is the conference name, unique in Pexip, shown to
//     participants.
//   - Every dial string (the numeric id and the aliases) is a
//     conference_alias of the conference, created inline with the
//     conference. Aliases carry nothing else: the alias description shows
//     in directory search, so no marker is kept there; which alias is the
//     numeric id is the operator's business, and ownership is the tag of
//     the conference the alias belongs to.
//   - The reference returned by Create is the conference id in decimal.
//
// Rooms are protected against duplication by Pexip's uniqueness of conference
// names and aliases: a create whose answer was lost is detected by looking the
// room up again (by tag, then by name) before posting anew.
package pexip

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/metrics"
)

// Config configures a Client.
type Config struct {
	// URL is the management node's base URL, e.g. https://pexip.example/.
	URL string
	// Username and Password are the management API credentials. Leave
	// them empty and set CredentialsDir to read them from a mounted
	// Secret instead.
	Username string
	Password string
	// CredentialsDir holds the files "username" and "password" (a mounted
	// Secret). They are read again whenever they change, so that rotated
	// credentials are used without a restart.
	CredentialsDir string
	// CAFile is a PEM bundle of the certificate authorities that sign the
	// management node's certificate, added to the system's (a private CA).
	CAFile string
	// RequestTimeout bounds each HTTP request (one attempt); default 10s.
	RequestTimeout time.Duration
	// MaxRetries is how many times a failed request is repeated; default 5,
	// negative for none.
	MaxRetries int
	// RetryBaseDelay is the first backoff delay, doubled on each retry;
	// default 250ms.
	RetryBaseDelay time.Duration
	// RetryMaxDelay caps the backoff delay and the server's Retry-After;
	// default 10s.
	RetryMaxDelay time.Duration
	// Owner scopes the rooms to one installation when several share a
	// management node: a DNS label (lowercase letters, digits and '-', at
	// most 63), put in front of every tag. Empty: tags are the bare keys,
	// and the node must serve no other installation.
	Owner string
	// HTTPClient carries proxies and other transport settings; its Timeout
	// should be zero or longer than RequestTimeout. Default: a client with
	// the default transport. Redirects are never followed, whatever its
	// CheckRedirect says.
	HTTPClient *http.Client
}

// Client is a backend.Backend for Pexip Infinity. It is safe for concurrent
// use; concurrent calls for the same room key are not coordinated (the
// controller reconciles one room at a time).
type Client struct {
	owner      string
	base       *url.URL
	basePath   string
	creds      *credentials
	hc         *http.Client
	timeout    time.Duration
	maxRetries int
	baseDelay  time.Duration
	maxDelay   time.Duration

	// noPrefixFilter is set once the node refused tag__startswith: the
	// sweep lists by service type and filters the tags itself since.
	noPrefixFilter atomic.Bool
}

var _ backend.Backend = (*Client)(nil)

// New checks cfg and returns a client; it does not contact the server.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("pexip: invalid URL: %w", err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("pexip: URL %q must be an absolute http(s) URL", cfg.URL)
	}
	if u.User != nil {
		return nil, errors.New("pexip: URL must not carry credentials; set Username and Password")
	}
	if err := ValidateOwner(cfg.Owner); err != nil {
		return nil, err
	}
	creds := &credentials{dir: cfg.CredentialsDir, username: cfg.Username, password: cfg.Password}
	switch {
	case cfg.CredentialsDir != "" && (cfg.Username != "" || cfg.Password != ""):
		return nil, errors.New("pexip: set either a credentials directory or a username and password, not both")
	case cfg.CredentialsDir != "":
		if _, _, err := creds.get(); err != nil {
			return nil, err
		}
	case cfg.Username == "" || cfg.Password == "":
		return nil, errors.New("pexip: username and password are required")
	}
	hc, err := httpClient(cfg)
	if err != nil {
		return nil, err
	}
	c := &Client{
		owner:      cfg.Owner,
		base:       &url.URL{Scheme: u.Scheme, Host: u.Host},
		basePath:   strings.TrimSuffix(u.Path, "/"),
		creds:      creds,
		hc:         hc,
		timeout:    cfg.RequestTimeout,
		maxRetries: cfg.MaxRetries,
		baseDelay:  cfg.RetryBaseDelay,
		maxDelay:   cfg.RetryMaxDelay,
	}
	if c.timeout <= 0 {
		c.timeout = 10 * time.Second
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = 5
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.baseDelay <= 0 {
		c.baseDelay = 250 * time.Millisecond
	}
	if c.maxDelay <= 0 {
		c.maxDelay = 10 * time.Second
	}
	if c.maxDelay < c.baseDelay {
		c.maxDelay = c.baseDelay
	}
	return c, nil
}

// maxOwnerLength keeps a tag within reach of Pexip's field: a DNS label.
const maxOwnerLength = 63

var ownerPattern = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)

// ValidateOwner checks an owner: empty, or a DNS label. Keys never hold ':',
// so "<owner>:" cannot start the tag of another owner or a bare key.
func ValidateOwner(owner string) error {
	if owner == "" {
		return nil
	}
	if len(owner) > maxOwnerLength || !ownerPattern.MatchString(owner) {
		return fmt.Errorf("pexip: owner %q must be a DNS label: at most %d lowercase letters, digits and '-', starting and ending with a letter or digit",
			owner, maxOwnerLength)
	}
	return nil
}

// tag is the conference tag of key in this installation's scope.
func (c *Client) tag(key string) string {
	if c.owner == "" {
		return key
	}
	return c.owner + ":" + key
}

// carries tells whether a conference tagged tag is the room of key: in this
// scope (exact), or tagged with the bare key before an owner was set
// (legacy), which only this installation can have made (the key holds the
// VMR's UID).
func (c *Client) carries(tag, key string) (exact, legacy bool) {
	if tag == c.tag(key) {
		return true, false
	}
	return false, c.owner != "" && tag == key
}

// roomOf reads conf as the room of key; a legacy tag reads as an empty Key,
// so that the caller's comparison sees it differ and updates the room.
func (c *Client) roomOf(conf conference, key string) *backend.Room {
	r := roomFromConference(conf)
	r.Key = ""
	if exact, _ := c.carries(conf.Tag, key); exact {
		r.Key = key
	}
	return r
}

// httpClient returns the client's own copy of cfg.HTTPClient, with the
// private CA and without redirects. A redirect is never followed: Go turns a
// POST answered 301 or 302 into a GET, which would report a create that
// never happened as done, and a redirect to another host would carry the
// credentials there.
func httpClient(cfg Config) (*http.Client, error) {
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	if cfg.HTTPClient != nil {
		cp := *cfg.HTTPClient
		hc = &cp
	}
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	if cfg.CAFile == "" {
		return hc, nil
	}
	pem, err := os.ReadFile(cfg.CAFile)
	if err != nil {
		return nil, fmt.Errorf("pexip: reading CA bundle: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("pexip: CA bundle %s holds no PEM certificate", cfg.CAFile)
	}
	var tr *http.Transport
	switch t := hc.Transport.(type) {
	case nil:
		tr = http.DefaultTransport.(*http.Transport).Clone()
	case *http.Transport:
		tr = t.Clone()
	default:
		return nil, errors.New("pexip: a CA bundle needs an HTTP client with an *http.Transport")
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.RootCAs = pool
	hc.Transport = tr
	return hc, nil
}

// credentials are the management API's username and password, read again
// from dir whenever its files change (kubelet swaps a mounted Secret's files
// in place when the Secret changes).
type credentials struct {
	dir string

	mu                 sync.Mutex
	username, password string
	stamp              string
}

// get returns the current credentials. With a directory, the files are
// checked on every call (two stat calls) and read again when they changed.
func (c *credentials) get() (string, string, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dir == "" {
		return c.username, c.password, nil
	}
	stamp, err := fileStamp(filepath.Join(c.dir, "username"), filepath.Join(c.dir, "password"))
	if err == nil && stamp == c.stamp && c.username != "" {
		return c.username, c.password, nil
	}
	user, pass, lerr := LoadCredentials(c.dir)
	if lerr != nil {
		if c.username != "" {
			// Half-written during a swap: keep what worked until the
			// files are whole again.
			return c.username, c.password, nil
		}
		return "", "", lerr
	}
	c.username, c.password, c.stamp = user, pass, stamp
	return user, pass, nil
}

func fileStamp(paths ...string) (string, error) {
	var b strings.Builder
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

// LoadCredentials reads the files "username" and "password" of a mounted
// Secret directory. Only line endings are trimmed: other whitespace may be
// part of a password.
func LoadCredentials(dir string) (username, password string, err error) {
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("pexip: reading credentials: %w", err)
		}
		v := strings.TrimRight(string(b), "\r\n")
		if v == "" {
			return "", fmt.Errorf("pexip: credentials file %s is empty", filepath.Join(dir, name))
		}
		return v, nil
	}
	if username, err = read("username"); err != nil {
		return "", "", err
	}
	if password, err = read("password"); err != nil {
		return "", "", err
	}
	return username, password, nil
}

// Name implements backend.Backend.
func (c *Client) Name() string { return "pexip" }

// Find implements backend.Backend. More than one conference carrying key is
// reported as an error rather than resolved: only an administrator can tell
// which one is in use.
func (c *Client) Find(ctx context.Context, key string) (string, *backend.Room, error) {
	ctx = metrics.WithOperation(ctx, metrics.OpFind)
	conf, err := c.findByTag(ctx, c.tag(key))
	if errors.Is(err, backend.ErrNotFound) && c.owner != "" {
		conf, err = c.findByTag(ctx, key) // made before the owner was set
	}
	if err != nil {
		return "", nil, err
	}
	return strconv.Itoa(conf.ID), c.roomOf(conf, key), nil
}

// Get implements backend.Backend.
func (c *Client) Get(ctx context.Context, ref, key string) (*backend.Room, error) {
	ctx = metrics.WithOperation(ctx, metrics.OpGet)
	conf, err := c.getOurs(ctx, ref, key)
	if err != nil {
		return nil, err
	}
	return c.roomOf(conf, key), nil
}

// getOurs reads the conference at ref and checks that it carries key.
func (c *Client) getOurs(ctx context.Context, ref, key string) (conference, error) {
	id, err := parseRef(ref)
	if err != nil {
		return conference{}, err
	}
	if key == "" {
		return conference{}, errors.New("pexip: empty room key")
	}
	conf, err := c.getConference(ctx, id)
	if err != nil {
		return conference{}, err
	}
	if exact, legacy := c.carries(conf.Tag, key); !exact && !legacy {
		return conference{}, fmt.Errorf("%w: pexip conference %d is not this room (it carries another tag: a restored backup or another management node?)",
			backend.ErrConflict, id)
	}
	return conf, nil
}

// Create implements backend.Backend.
//
// The room is looked up by key first: one found (an earlier call's answer was
// lost, or the caller crashed before recording it) is made to match room as
// Update would, so that a caller needs no lookup of its own before creating.
// Otherwise the conference is created with all its aliases in one request,
// which the node refuses whole when the name or an alias is taken: a room in
// conflict leaves nothing dialable behind. Should a node ever apply such a
// create in part, what it left under our key is removed before returning.
// Normally: one list and one create.
func (c *Client) Create(ctx context.Context, room backend.Room) (string, error) {
	ctx = metrics.WithOperation(ctx, metrics.OpCreate)
	if err := validateRoom(room); err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		conf, err := c.findByTag(ctx, c.tag(room.Key))
		if err == nil {
			return strconv.Itoa(conf.ID), c.update(ctx, conf, room)
		}
		if !errors.Is(err, backend.ErrNotFound) {
			return "", err
		}

		id, err := c.postConference(ctx, room)
		switch {
		case err == nil && id != 0:
			return strconv.Itoa(id), nil
		case err == nil:
			// Created, but without a usable Location: find it by key.
			err = errNoLocation
		case errors.Is(err, errNameTaken):
			owner, lerr := c.findByName(ctx, room.Name)
			if lerr == nil {
				if exact, legacy := c.carries(owner.Tag, room.Key); exact || legacy {
					return strconv.Itoa(owner.ID), c.update(ctx, owner, room)
				}
				return "", fmt.Errorf("%w: pexip conference %d is already named %q", backend.ErrConflict, owner.ID, room.Name)
			}
			if !errors.Is(lerr, backend.ErrNotFound) {
				return "", lerr
			}
			// Deleted since: post again.
		case errors.Is(err, errAliasTaken):
			return c.aliasConflict(ctx, room)
		case errors.Is(err, errOutcomeUnknown):
			// Look up by key on the next turn before posting again.
		default:
			return "", err
		}
		if attempt >= c.maxRetries {
			return "", err
		}
		if serr := sleep(ctx, c.backoff(attempt)); serr != nil {
			return "", fmt.Errorf("%w (retry interrupted: %w)", err, serr)
		}
	}
}

// aliasConflict settles a create refused for a taken alias. The alias may
// be held by our own room, created whole by an earlier attempt whose answer
// was lost: that room is the answer. Otherwise whatever a node that applied
// the create in part left under our key is removed, and the error names the
// conferences in the way.
func (c *Client) aliasConflict(ctx context.Context, room backend.Room) (string, error) {
	conf, err := c.findByTag(ctx, c.tag(room.Key))
	switch {
	case err == nil && hasAll(conf, room.DialStrings()):
		return strconv.Itoa(conf.ID), c.update(ctx, conf, room)
	case err == nil:
		if derr := c.deleteConference(ctx, conf.ID); derr != nil {
			return "", fmt.Errorf("pexip: removing the part of room %q created despite a taken alias: %w", room.Name, derr)
		}
	case !errors.Is(err, backend.ErrNotFound):
		return "", err
	}
	var conflicts []string
	for _, a := range room.DialStrings() {
		cur, err := c.findAlias(ctx, a)
		if errors.Is(err, backend.ErrNotFound) {
			continue
		}
		if err != nil {
			return "", err
		}
		holder, _ := idFromURI(cur.Conference, conferencePath)
		conflicts = append(conflicts, fmt.Sprintf("alias %q belongs to pexip conference %d", a, holder))
	}
	if len(conflicts) == 0 {
		// Released since: the caller's next attempt creates the room.
		return "", fmt.Errorf("pexip: an alias of room %q was taken and is free again", room.Name)
	}
	return "", fmt.Errorf("%w: %s", backend.ErrConflict, strings.Join(conflicts, "; "))
}

// hasAll reports whether conf has every one of dial as an alias.
func hasAll(conf conference, dial []string) bool {
	for _, d := range dial {
		if !slices.ContainsFunc(conf.Aliases, func(a conferenceAlias) bool { return a.Alias == d }) {
			return false
		}
	}
	return true
}

// Update implements backend.Backend: only differing fields are written, then
// aliases are made to match exactly (missing ones created, others deleted).
func (c *Client) Update(ctx context.Context, ref string, room backend.Room) error {
	ctx = metrics.WithOperation(ctx, metrics.OpUpdate)
	id, err := parseRef(ref)
	if err != nil {
		return err
	}
	if room.Name == "" {
		return fmt.Errorf("pexip: room %s: name is required", ref)
	}
	conf, err := c.getOurs(ctx, strconv.Itoa(id), room.Key)
	if err != nil {
		return err
	}
	return c.update(ctx, conf, room)
}

// update makes conf, as just read, match room.
func (c *Client) update(ctx context.Context, conf conference, room backend.Room) error {
	if patch := conferencePatch(conf, room, c.tag(room.Key)); len(patch) > 0 {
		cl := call{
			method:  http.MethodPatch,
			path:    conferenceURI(conf.ID),
			body:    patch,
			secrets: roomPINs(room, conf),
		}
		resp, err := c.do(ctx, cl)
		if err != nil {
			return err
		}
		switch {
		case isSuccess(resp.status):
		case resp.status == http.StatusNotFound:
			return fmt.Errorf("pexip: conference %d: %w", conf.ID, backend.ErrNotFound)
		case resp.status == http.StatusBadRequest && alreadyExists(resp.body, "conference", "name"):
			return fmt.Errorf("%w: cannot rename pexip conference %d: another conference is named %q", backend.ErrConflict, conf.ID, room.Name)
		default:
			return c.apiError(cl, resp)
		}
	}
	return c.ensureAliases(ctx, conf, room)
}

// Delete implements backend.Backend. Pexip deletes the aliases with the
// conference. A reference made by another backend (the operator used to run
// with the embedded one) names no room here, so deleting it succeeds. The
// conference is read first: one that does not carry key is not ours and is
// never deleted.
func (c *Client) Delete(ctx context.Context, ref, key string) error {
	ctx = metrics.WithOperation(ctx, metrics.OpDelete)
	conf, err := c.getOurs(ctx, ref, key)
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.deleteConference(ctx, conf.ID)
}

func (c *Client) deleteConference(ctx context.Context, id int) error {
	return c.doUnlessGone(ctx, call{method: http.MethodDelete, path: conferenceURI(id)})
}

// doUnlessGone sends cl to a conference; that conference being gone (404)
// counts as success, as deleting or releasing a room that is no more.
func (c *Client) doUnlessGone(ctx context.Context, cl call) error {
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if isSuccess(resp.status) || resp.status == http.StatusNotFound {
		return nil
	}
	return c.apiError(cl, resp)
}

// ReleasedTagPrefix starts the tag of a room handed over with Release.
const ReleasedTagPrefix = "retained-"

// Release implements backend.Backend: the tag becomes "retained-" followed by
// the tag it had in this scope, which no sweep lists.
func (c *Client) Release(ctx context.Context, ref, key string) error {
	ctx = metrics.WithOperation(ctx, metrics.OpRelease)
	conf, err := c.getOurs(ctx, ref, key)
	if errors.Is(err, backend.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.doUnlessGone(ctx, call{method: http.MethodPatch, path: conferenceURI(conf.ID), body: map[string]any{"tag": ReleasedTagPrefix + c.tag(key)}})
}

// ListTagged implements backend.Backend: one paged list of the conferences
// whose tag, in this installation's scope, starts with prefix; the keys
// returned are without the scope. Rooms of other owners, and rooms tagged
// with a bare key while an owner is set, are never listed.
//
// Tastypie serves tag__startswith only if the node declares that lookup for
// the tag field, which Pexip does not document. A node that refuses it (400)
// is listed by service type instead, the tags checked here, from then on.
func (c *Client) ListTagged(ctx context.Context, prefix string) ([]backend.Tagged, error) {
	ctx = metrics.WithOperation(ctx, metrics.OpListTagged)
	if prefix == "" {
		return nil, errors.New("pexip: empty tag prefix")
	}
	scoped := c.tag(prefix)
	var all []conference
	var err error
	if !c.noPrefixFilter.Load() {
		all, err = listAll[conference](ctx, c, conferencePath, url.Values{"tag__startswith": {scoped}})
		if apiErr, ok := errors.AsType[*APIError](err); ok && apiErr.StatusCode == http.StatusBadRequest {
			c.noPrefixFilter.Store(true)
		}
	}
	if c.noPrefixFilter.Load() {
		all, err = listAll[conference](ctx, c, conferencePath, url.Values{"service_type": {serviceTypeConference}})
	}
	if err != nil {
		return nil, err
	}
	out := make([]backend.Tagged, 0, len(all))
	for _, conf := range all {
		// Checked here too: a node that ignored the filter must not make
		// the sweep remove somebody else's room.
		rest, ok := strings.CutPrefix(conf.Tag, scoped)
		if !ok || strings.Contains(rest, ":") {
			continue
		}
		out = append(out, backend.Tagged{Ref: strconv.Itoa(conf.ID), Key: prefix + rest})
	}
	return out, nil
}

var (
	errNameTaken  = errors.New("conference name already exists")
	errAliasTaken = errors.New("conference alias already exists")
	errNoLocation = errors.New("pexip: conference created but the answer has no Location header")
)

func isSuccess(status int) bool { return status >= 200 && status < 300 }

func roomPINs(room backend.Room, conf conference) []string {
	return []string{room.HostPIN, room.GuestPIN, conf.PIN, conf.GuestPIN}
}

func (c *Client) getConference(ctx context.Context, id int) (conference, error) {
	cl := call{method: http.MethodGet, path: conferenceURI(id)}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return conference{}, err
	}
	switch resp.status {
	case http.StatusOK:
	case http.StatusNotFound:
		return conference{}, fmt.Errorf("pexip: conference %d: %w", id, backend.ErrNotFound)
	default:
		return conference{}, c.apiError(cl, resp)
	}
	var conf conference
	if err := json.Unmarshal(resp.body, &conf); err != nil {
		return conference{}, fmt.Errorf("pexip: decoding conference %d: %w", id, err)
	}
	return conf, nil
}

func (c *Client) findByTag(ctx context.Context, key string) (conference, error) {
	if key == "" {
		return conference{}, errors.New("pexip: empty room key")
	}
	return c.findConference(ctx, "tag", key, func(conf conference) string { return conf.Tag })
}

func (c *Client) findByName(ctx context.Context, name string) (conference, error) {
	return c.findConference(ctx, "name", name, func(conf conference) string { return conf.Name })
}

// findConference checks the filter's result itself: a server that ignored
// the filter must not make us adopt somebody else's room.
func (c *Client) findConference(ctx context.Context, field, value string, get func(conference) string) (conference, error) {
	all, err := listAll[conference](ctx, c, conferencePath, url.Values{field: {value}})
	if err != nil {
		return conference{}, err
	}
	var found []conference
	for _, conf := range all {
		if get(conf) == value {
			found = append(found, conf)
		}
	}
	switch len(found) {
	case 0:
		return conference{}, fmt.Errorf("pexip: no conference with %s %q: %w", field, value, backend.ErrNotFound)
	case 1:
		return found[0], nil
	}
	ids := make([]string, len(found))
	for i, conf := range found {
		ids[i] = strconv.Itoa(conf.ID)
	}
	return conference{}, fmt.Errorf("pexip: conferences %s all have %s %q; remove all but one", strings.Join(ids, ", "), field, value)
}

func (c *Client) findAlias(ctx context.Context, alias string) (conferenceAlias, error) {
	all, err := listAll[conferenceAlias](ctx, c, aliasPath, url.Values{"alias": {alias}})
	if err != nil {
		return conferenceAlias{}, err
	}
	for _, a := range all {
		if a.Alias == alias {
			return a, nil
		}
	}
	return conferenceAlias{}, fmt.Errorf("pexip: no alias %q: %w", alias, backend.ErrNotFound)
}

// postConference returns the new conference's id, or 0 when the answer had
// no usable Location.
func (c *Client) postConference(ctx context.Context, room backend.Room) (int, error) {
	cl := call{
		method:  http.MethodPost,
		path:    conferencePath,
		body:    createBody(room, c.tag(room.Key)),
		secrets: []string{room.HostPIN, room.GuestPIN},
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return 0, err
	}
	switch {
	case isSuccess(resp.status):
		id, _ := idFromURI(resp.header.Get("Location"), conferencePath)
		return id, nil
	case resp.status == http.StatusBadRequest && alreadyExists(resp.body, "conference", "name"):
		return 0, errNameTaken
	case resp.status == http.StatusBadRequest && aliasTakenBody(resp.body):
		return 0, errAliasTaken
	default:
		return 0, c.apiError(cl, resp)
	}
}

// ensureAliases creates room's missing aliases on conf and deletes the ones
// room does not have. Aliases held by other conferences are skipped and
// reported together in one error wrapping backend.ErrConflict, after the
// others are done.
func (c *Client) ensureAliases(ctx context.Context, conf conference, room backend.Room) error {
	want := room.DialStrings()
	have := make(map[string]bool, len(conf.Aliases))
	for _, a := range conf.Aliases {
		have[a.Alias] = true
	}
	for _, a := range conf.Aliases {
		if slices.Contains(want, a.Alias) {
			continue
		}
		if err := c.deleteAlias(ctx, a.ID); err != nil {
			return err
		}
	}
	var conflicts []string
	for _, name := range want {
		if have[name] {
			continue
		}
		owner, err := c.createAlias(ctx, conf.ID, name)
		if errors.Is(err, backend.ErrConflict) {
			conflicts = append(conflicts, fmt.Sprintf("alias %q belongs to pexip conference %d", name, owner))
			continue
		}
		if err != nil {
			return err
		}
	}
	if len(conflicts) > 0 {
		return fmt.Errorf("%w: %s", backend.ErrConflict, strings.Join(conflicts, "; "))
	}
	return nil
}

// createAlias adds alias to conference confID. A duplicate or an ambiguous
// failure is settled by looking the alias up: if it is already ours (an
// earlier answer was lost) that is success; if another conference holds it,
// the error wraps backend.ErrConflict and owner is that conference's id.
func (c *Client) createAlias(ctx context.Context, confID int, alias string) (owner int, err error) {
	cl := call{
		method: http.MethodPost,
		path:   aliasPath,
		body:   aliasCreate{Alias: alias, Conference: conferenceURI(confID)},
	}
	for attempt := 0; ; attempt++ {
		resp, err := c.do(ctx, cl)
		switch {
		case err == nil && isSuccess(resp.status):
			return 0, nil
		case err == nil && resp.status == http.StatusBadRequest && alreadyExists(resp.body, "conference_alias", "alias"):
			err = errAliasTaken
		case err == nil:
			return 0, c.apiError(cl, resp)
		case !errors.Is(err, errOutcomeUnknown):
			return 0, err
		}

		cur, lerr := c.findAlias(ctx, alias)
		if lerr == nil {
			holder, _ := idFromURI(cur.Conference, conferencePath)
			if holder != confID {
				return holder, fmt.Errorf("%w: alias %q belongs to conference %d", backend.ErrConflict, alias, holder)
			}
			return 0, nil
		}
		if !errors.Is(lerr, backend.ErrNotFound) {
			return 0, lerr
		}
		if attempt >= c.maxRetries {
			return 0, err
		}
		if serr := sleep(ctx, c.backoff(attempt)); serr != nil {
			return 0, fmt.Errorf("%w (retry interrupted: %w)", err, serr)
		}
	}
}

func (c *Client) deleteAlias(ctx context.Context, id int) error {
	cl := call{method: http.MethodDelete, path: aliasPath + strconv.Itoa(id) + "/"}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if isSuccess(resp.status) || resp.status == http.StatusNotFound {
		return nil
	}
	return c.apiError(cl, resp)
}

// maxListPages stops a server whose next links never end.
const maxListPages = 1000

// listAll returns every object matching filter, following meta.next. Only the
// offset and limit of the next link are used: the path and the filters stay
// ours, so a link cannot send the credentials elsewhere or drop a filter.
func listAll[T any](ctx context.Context, c *Client, path string, filter url.Values) ([]T, error) {
	query := url.Values{}
	for k, v := range filter {
		query[k] = slices.Clone(v)
	}
	query.Set("limit", strconv.Itoa(listPageSize))
	offset := 0
	var all []T
	for range maxListPages {
		query.Set("offset", strconv.Itoa(offset))
		cl := call{method: http.MethodGet, path: path, query: query}
		resp, err := c.do(ctx, cl)
		if err != nil {
			return nil, err
		}
		if resp.status != http.StatusOK {
			return nil, c.apiError(cl, resp)
		}
		var page listPage[T]
		if err := json.Unmarshal(resp.body, &page); err != nil {
			return nil, fmt.Errorf("pexip: decoding list %s: %w", path, err)
		}
		all = append(all, page.Objects...)
		if page.Meta.Next == nil || *page.Meta.Next == "" || len(page.Objects) == 0 {
			return all, nil
		}
		next, err := url.Parse(*page.Meta.Next)
		if err != nil {
			return nil, fmt.Errorf("pexip: list %s: malformed next link: %w", path, err)
		}
		nq := next.Query()
		nextOffset, err := strconv.Atoi(nq.Get("offset"))
		if err != nil || nextOffset <= offset {
			return nil, fmt.Errorf("pexip: list %s: next link does not advance past offset %d", path, offset)
		}
		offset = nextOffset
		if l := nq.Get("limit"); l != "" {
			query.Set("limit", l)
		}
	}
	return nil, fmt.Errorf("pexip: list %s: more than %d pages", path, maxListPages)
}
