// Package pexip keeps permanent virtual meeting rooms in Pexip Infinity
// through its management configuration API.
//
// How a backend.Room maps onto Pexip:
//
//   - Room.Key is the conference's tag; Find lists conferences by tag.
//   - Room.Name is the conference name, unique in Pexip.
//   - Room.NumericID and every Room.Aliases entry is a conference_alias of the
//     conference. The numeric id's alias has the description "numeric-id"
//     (Pexip has no field for it); the other aliases have any other
//     description, normally empty.
//   - The reference returned by Create is the conference id in decimal.
//
// Rooms are protected against duplication by Pexip's uniqueness of conference
// names and aliases: a create whose answer was lost is detected by looking the
// room up again (by tag, then by name) before posting anew.
package pexip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/metrics"
)

// Config configures a Client.
type Config struct {
	// URL is the management node's base URL, e.g. https://pexip.example/.
	URL      string
	Username string
	Password string
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
	// HTTPClient carries TLS settings (private CA) and proxies; its Timeout
	// should be zero or longer than RequestTimeout. Default: a client with
	// the default transport.
	HTTPClient *http.Client
}

// Client is a backend.Backend for Pexip Infinity. It is safe for concurrent
// use; concurrent calls for the same room key are not coordinated (the
// controller reconciles one room at a time).
type Client struct {
	base       *url.URL
	basePath   string
	username   string
	password   string
	hc         *http.Client
	timeout    time.Duration
	maxRetries int
	baseDelay  time.Duration
	maxDelay   time.Duration
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
	if cfg.Username == "" || cfg.Password == "" {
		return nil, errors.New("pexip: username and password are required")
	}
	c := &Client{
		base:       &url.URL{Scheme: u.Scheme, Host: u.Host},
		basePath:   strings.TrimSuffix(u.Path, "/"),
		username:   cfg.Username,
		password:   cfg.Password,
		hc:         cfg.HTTPClient,
		timeout:    cfg.RequestTimeout,
		maxRetries: cfg.MaxRetries,
		baseDelay:  cfg.RetryBaseDelay,
		maxDelay:   cfg.RetryMaxDelay,
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
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
	conf, err := c.findByTag(ctx, key)
	if err != nil {
		return "", nil, err
	}
	return strconv.Itoa(conf.ID), roomFromConference(conf), nil
}

// Get implements backend.Backend.
func (c *Client) Get(ctx context.Context, ref string) (*backend.Room, error) {
	ctx = metrics.WithOperation(ctx, metrics.OpGet)
	id, err := parseRef(ref)
	if err != nil {
		return nil, err
	}
	conf, err := c.getConference(ctx, id)
	if err != nil {
		return nil, err
	}
	return roomFromConference(conf), nil
}

// Create implements backend.Backend.
//
// The room is looked up by key first: one found (an earlier call's answer was
// lost, or the caller crashed before recording it) is made to match room as
// Update would, so that a caller needs no lookup of its own before creating.
// Otherwise the conference is created, then its aliases one by one. When an
// alias or the numeric id is taken by another conference, the conference
// stays in place with the aliases that could be created, and Create returns
// its reference together with an error wrapping backend.ErrConflict: calling
// Create again finds it by key and tries the missing aliases again.
func (c *Client) Create(ctx context.Context, room backend.Room) (string, error) {
	ctx = metrics.WithOperation(ctx, metrics.OpCreate)
	if err := validateRoom(room); err != nil {
		return "", err
	}
	for attempt := 0; ; attempt++ {
		conf, err := c.findByTag(ctx, room.Key)
		if err == nil {
			return strconv.Itoa(conf.ID), c.update(ctx, conf, room)
		}
		if !errors.Is(err, backend.ErrNotFound) {
			return "", err
		}

		id, err := c.postConference(ctx, room)
		switch {
		case err == nil && id != 0:
			return c.ensureAliases(ctx, conference{ID: id}, room, false)
		case err == nil:
			// Created, but without a usable Location: find it by key.
			err = errNoLocation
		case errors.Is(err, errNameTaken):
			owner, lerr := c.findByName(ctx, room.Name)
			if lerr == nil {
				if owner.Tag == room.Key {
					return strconv.Itoa(owner.ID), c.update(ctx, owner, room)
				}
				return "", fmt.Errorf("%w: pexip conference %d is already named %q", backend.ErrConflict, owner.ID, room.Name)
			}
			if !errors.Is(lerr, backend.ErrNotFound) {
				return "", lerr
			}
			// Deleted since: post again.
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
	conf, err := c.getConference(ctx, id)
	if err != nil {
		return err
	}
	return c.update(ctx, conf, room)
}

// update makes conf, as just read, match room.
func (c *Client) update(ctx context.Context, conf conference, room backend.Room) error {
	if patch := conferencePatch(conf, room); len(patch) > 0 {
		cl := call{
			method:  http.MethodPatch,
			path:    conferenceURI(conf.ID),
			body:    patch,
			secrets: pins(room, conf),
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
	_, err := c.ensureAliases(ctx, conf, room, true)
	return err
}

// Delete implements backend.Backend. Pexip deletes the aliases with the
// conference. A reference made by another backend (the operator used to run
// with the embedded one) names no room here, so deleting it succeeds.
func (c *Client) Delete(ctx context.Context, ref string) error {
	ctx = metrics.WithOperation(ctx, metrics.OpDelete)
	id, err := parseRef(ref)
	if errors.Is(err, backend.ErrNotFound) {
		return nil // made by another backend: there is no such room here
	}
	if err != nil {
		return err
	}
	cl := call{method: http.MethodDelete, path: conferenceURI(id)}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if isSuccess(resp.status) || resp.status == http.StatusNotFound {
		return nil
	}
	return c.apiError(cl, resp)
}

var (
	errNameTaken  = errors.New("conference name already exists")
	errAliasTaken = errors.New("conference alias already exists")
	errNoLocation = errors.New("pexip: conference created but the answer has no Location header")
)

func isSuccess(status int) bool { return status >= 200 && status < 300 }

func pins(room backend.Room, conf conference) []string {
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
		body:    createBody(room),
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
	default:
		return 0, c.apiError(cl, resp)
	}
}

// ensureAliases creates room's missing aliases on conf and corrects their
// numeric-id marking; with prune it also deletes the aliases room does not
// have. Aliases held by other conferences are skipped and reported together
// in one error wrapping backend.ErrConflict, after the others are done.
func (c *Client) ensureAliases(ctx context.Context, conf conference, room backend.Room, prune bool) (string, error) {
	ref := strconv.Itoa(conf.ID)
	want := desiredAliases(room)
	have := make(map[string]conferenceAlias, len(conf.Aliases))
	for _, a := range conf.Aliases {
		have[a.Alias] = a
	}
	if prune {
		for _, a := range conf.Aliases {
			if _, ok := want[a.Alias]; ok {
				continue
			}
			if err := c.deleteAlias(ctx, a.ID); err != nil {
				return ref, err
			}
		}
	}
	// Numeric id first, then the rest in order, so partial progress is
	// predictable.
	names := make([]string, 0, len(want))
	for a := range want {
		names = append(names, a)
	}
	slices.SortFunc(names, func(a, b string) int {
		if want[a] != want[b] {
			if want[a] {
				return -1
			}
			return 1
		}
		return strings.Compare(a, b)
	})
	var conflicts []string
	for _, name := range names {
		numeric := want[name]
		if cur, ok := have[name]; ok {
			if (cur.Description == numericIDDescription) != numeric {
				if err := c.patchAliasDescription(ctx, cur.ID, numeric); err != nil {
					return ref, err
				}
			}
			continue
		}
		owner, err := c.createAlias(ctx, conf.ID, name, numeric)
		if errors.Is(err, backend.ErrConflict) {
			what := "alias"
			if numeric {
				what = "numeric id"
			}
			conflicts = append(conflicts, fmt.Sprintf("%s %q belongs to pexip conference %d", what, name, owner))
			continue
		}
		if err != nil {
			return ref, err
		}
	}
	if len(conflicts) > 0 {
		return ref, fmt.Errorf("%w: %s", backend.ErrConflict, strings.Join(conflicts, "; "))
	}
	return ref, nil
}

// createAlias adds alias to conference confID. A duplicate or an ambiguous
// failure is settled by looking the alias up: if it is already ours (an
// earlier answer was lost) that is success; if another conference holds it,
// the error wraps backend.ErrConflict and owner is that conference's id.
func (c *Client) createAlias(ctx context.Context, confID int, alias string, numeric bool) (owner int, err error) {
	cl := call{
		method: http.MethodPost,
		path:   aliasPath,
		body: aliasCreate{
			Alias:       alias,
			Conference:  conferenceURI(confID),
			Description: aliasDescription(numeric),
		},
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
			if (cur.Description == numericIDDescription) != numeric {
				return 0, c.patchAliasDescription(ctx, cur.ID, numeric)
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

func (c *Client) patchAliasDescription(ctx context.Context, id int, numeric bool) error {
	cl := call{
		method: http.MethodPatch,
		path:   aliasPath + strconv.Itoa(id) + "/",
		body:   map[string]any{"description": aliasDescription(numeric)},
	}
	resp, err := c.do(ctx, cl)
	if err != nil {
		return err
	}
	if !isSuccess(resp.status) {
		return c.apiError(cl, resp)
	}
	return nil
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
