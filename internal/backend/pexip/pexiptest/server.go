// Package pexiptest is an in-memory stand-in for the Pexip Infinity management
// configuration API (conferences and conference aliases), with fault
// injection, for tests of the pexip backend.
//
// It is as strict as a real management node where the operator depends on
// it, after Pexip's documentation and public clients of the API (the Pexip
// Terraform provider, pexshell, Caseflow, Mividas): Basic auth; 201 with an
// absolute Location and an empty body on create; PATCH a partial update
// answered 202; PUT a full replace (fields left out go back to their
// defaults); 204 on delete; redirects are the client's business; 400 with
// {"<resource>": {"<field>": [...]}} on validation errors, e.g. a duplicate
// name {"conference":{"name":["Virtual Meeting Room with this Name already
// exists."]}}; list filters name, tag, service_type and aliases__alias
// (conference), alias and conference (conference_alias), any other lookup on
// a field refused with 400 as Tastypie does ("'startswith' is not an allowed
// filter on the 'tag' field."), parameters that name no field ignored; tag
// prefixes (tag__startswith) only when AllowTagPrefixFilter says so, since
// Pexip does not document them; meta/next pagination (limit 20 by default, 0 for no limit); aliases
// accepted inline in a conference create, the whole create refused when one
// of them is taken; names of at most 250 characters; PINs of 4 to 20
// characters, digits with an optional final #; a guest PIN and allow_guests
// need a host PIN; unique conference names and aliases, and aliases deleted
// with their conference.
//
// Beyond faults it can apply a create long after its client gave up
// (FaultLateApply) and restore an earlier state, so that conference ids are
// handed out again to other rooms (Snapshot, Restore).
package pexiptest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"math/big"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	apiPrefix        = "/api/admin/configuration/v1/"
	kindConference   = "conference"
	kindAlias        = "conference_alias"
	defaultPageLimit = 20
	defaultHang      = 2 * time.Second
)

// Conference is a stored conference with its aliases.
type Conference struct {
	ID               int
	Name             string
	Description      string
	ServiceType      string
	PIN              string
	GuestPIN         string
	AllowGuests      bool
	ParticipantLimit *int
	Tag              string
	Aliases          []Alias
}

// Alias is a stored conference alias.
type Alias struct {
	ID           int
	Alias        string
	Description  string
	ConferenceID int
}

// Faults makes a fraction of requests fail. The fractions are drawn
// independently per request, in the order rate limit, error, timeout.
type Faults struct {
	// ErrorRate answers 500, 502 or 503; half of these are sent after the
	// request was applied, as a proxy in front of a working server would.
	ErrorRate float64
	// TimeoutRate holds the request for Hang: half of these apply the
	// request and then hang (a lost answer), half hang and then apply it
	// anyway (a request that lands after the client gave up).
	TimeoutRate float64
	// RateLimitRate answers 429 with Retry-After 0 or 1, without applying.
	RateLimitRate float64
	// LateApplyRate, drawn after the others and for conference creates
	// only, holds the create for the whole Hang and then applies it
	// (FaultLateApply).
	LateApplyRate float64
	// Hang is how long a timed-out request is held, cut short when the
	// client goes away; default 2s. Make it longer than the client's timeout.
	Hang time.Duration
	Seed int64
}

// FaultMode is one way of failing a request, for FailNext.
type FaultMode int

const (
	// FaultError answers 503 without applying the request.
	FaultError FaultMode = iota + 1
	// FaultErrorAfterApply applies the request, then answers 502.
	FaultErrorAfterApply
	// FaultHangBeforeApply holds the request until the client gives up (or
	// Hang passes), then applies it.
	FaultHangBeforeApply
	// FaultHangAfterApply applies the request, then holds the answer until
	// the client gives up (or Hang passes).
	FaultHangAfterApply
	// FaultRateLimit answers 429 with Retry-After 0 or 1, without applying.
	FaultRateLimit
	// FaultLateApply holds the request for the whole Hang, whatever the
	// client does, then applies it: a create that commits on the node
	// after the client timed out, retried, and possibly deleted its room.
	FaultLateApply
	// FaultErrorQuotingRequest answers 500 with an HTML page that quotes the
	// request body, PINs included, without applying the request, as a
	// careless proxy or web application firewall would. Clients must not
	// repeat such a body as it is.
	FaultErrorQuotingRequest
)

// Server is the fake management API. It is safe for concurrent use.
type Server struct {
	// URL is the base URL to configure the client with.
	URL string

	hs       *httptest.Server
	username string
	password string

	mu          sync.Mutex
	conferences map[int]*Conference // Aliases unused here; see aliases
	aliases     map[int]*Alias
	nextConfID  int
	nextAliasID int
	faults      Faults
	rng         *rand.Rand
	scripted    map[string][]FaultMode
	holds       map[string][]*Hold
	requests    map[string]int
	operations  map[string]int
	maxLimit    int
	tagPrefix   bool
	injected    map[string]int
}

// Hold is a request that was applied and whose answer is withheld: it stands
// for a client that dies after the server acted and before it learnt the
// outcome (a crash, a killed pod).
type Hold struct {
	applied chan struct{}
	release chan struct{}
	once    sync.Once
}

// Applied is closed once the held request has been applied.
func (h *Hold) Applied() <-chan struct{} { return h.applied }

// Release sends the answer, if the client still waits for it.
func (h *Hold) Release() { h.once.Do(func() { close(h.release) }) }

// Option changes where and how NewServer serves.
type Option func(*httptest.Server)

// WithListener serves on l (e.g. an address that Pods of a test cluster
// reach) instead of a loopback port.
func WithListener(l net.Listener) Option {
	return func(hs *httptest.Server) {
		_ = hs.Listener.Close()
		hs.Listener = l
	}
}

// WithTLS serves HTTPS with cert; the client trusts its issuer (CAFile).
func WithTLS(cert tls.Certificate) Option {
	return func(hs *httptest.Server) { hs.TLS = &tls.Config{Certificates: []tls.Certificate{cert}} }
}

// NewServer starts a server that accepts only the given credentials.
func NewServer(username, password string, opts ...Option) *Server {
	s := &Server{
		username:    username,
		password:    password,
		conferences: map[int]*Conference{},
		aliases:     map[int]*Alias{},
		nextConfID:  1,
		nextAliasID: 1,
		rng:         rand.New(rand.NewPCG(0, 0)),
		scripted:    map[string][]FaultMode{},
		holds:       map[string][]*Hold{},
		requests:    map[string]int{},
		operations:  map[string]int{},
		injected:    map[string]int{},
	}
	s.hs = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	for _, o := range opts {
		o(s.hs)
	}
	if s.hs.TLS != nil {
		s.hs.StartTLS()
	} else {
		s.hs.Start()
	}
	s.URL = s.hs.URL + "/"
	return s
}

// Close stops the server after the requests in progress have finished, so
// that the state read afterwards includes every late write.
func (s *Server) Close() { s.hs.Close() }

// SetFaults replaces the random fault configuration and reseeds it.
func (s *Server) SetFaults(f Faults) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f.Hang <= 0 {
		f.Hang = defaultHang
	}
	s.faults = f
	s.rng = rand.New(rand.NewPCG(uint64(f.Seed), 0x9e3779b97f4a7c15))
}

// FailNext makes the next requests of a kind ("POST conference",
// "GET conference_alias", ...) fail in the given modes, one each, before
// random faults apply.
func (s *Server) FailNext(request string, modes ...FaultMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripted[request] = append(s.scripted[request], modes...)
}

// HoldNext makes the next request of a kind ("POST conference", ...) be
// applied and its answer held until Release is called or the client goes
// away. Holds come before scripted and random faults.
func (s *Server) HoldNext(request string) *Hold {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := &Hold{applied: make(chan struct{}), release: make(chan struct{})}
	s.holds[request] = append(s.holds[request], h)
	return h
}

// SetCredentials changes the credentials the server accepts, as rotating
// the management account's password does.
func (s *Server) SetCredentials(username, password string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.username, s.password = username, password
}

// SetMaxPageSize caps the list limit (0: no cap), to exercise pagination.
func (s *Server) SetMaxPageSize(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.maxLimit = n
}

// AllowTagPrefixFilter makes conference lists accept tag__startswith, as a
// node that declares that lookup for the tag field would; refused by default.
func (s *Server) AllowTagPrefixFilter(allow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tagPrefix = allow
}

// Requests counts the requests received, by method and resource, e.g.
// "POST conference", "GET conference_alias"; failed ones included.
func (s *Server) Requests() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.requests)
}

// Operations counts the requests received like Requests, but tells a list
// from a read of one object: "list conference", "get conference", "create
// conference", "update conference", "delete conference", and the same for
// conference_alias; failed ones included.
func (s *Server) Operations() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.operations)
}

var faultNames = map[FaultMode]string{
	FaultError: "error", FaultErrorAfterApply: "error after apply", FaultHangBeforeApply: "hang before apply",
	FaultHangAfterApply: "hang after apply", FaultRateLimit: "rate limit", FaultLateApply: "late apply",
	FaultErrorQuotingRequest: "error quoting the request",
}

// Injected counts the faults served since the server started, by kind
// ("error", "late apply", ...); ResetRequests leaves it alone.
func (s *Server) Injected() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.injected)
}

// ResetRequests sets the request and operation counters to zero.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.requests)
	clear(s.operations)
}

// Rooms returns copies of all conferences with their aliases, by id.
func (s *Server) Rooms() []Conference {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Conference, 0, len(s.conferences))
	for _, id := range sortedKeys(s.conferences) {
		out = append(out, s.snapshot(id))
	}
	return out
}

// State is a copy of everything the server stores, for Restore.
type State struct {
	conferences map[int]Conference
	aliases     map[int]Alias
	nextConfID  int
	nextAliasID int
}

// Snapshot copies the stored conferences and aliases, as a backup would.
func (s *Server) Snapshot() State {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := State{conferences: map[int]Conference{}, aliases: map[int]Alias{}, nextConfID: s.nextConfID, nextAliasID: s.nextAliasID}
	for id, c := range s.conferences {
		st.conferences[id] = *c
	}
	for id, a := range s.aliases {
		st.aliases[id] = *a
	}
	return st
}

// Restore puts back a snapshot, as restoring a backup of the management
// node does: what was created since is gone and its ids are handed out
// again, to whatever is created next.
func (s *Server) Restore(st State) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conferences = map[int]*Conference{}
	s.aliases = map[int]*Alias{}
	for id, c := range st.conferences {
		s.conferences[id] = &c
	}
	for id, a := range st.aliases {
		s.aliases[id] = &a
	}
	s.nextConfID, s.nextAliasID = st.nextConfID, st.nextAliasID
}

// EditRoomByHand changes a stored conference, as an administrator would in
// the Pexip web interface, without counting as a request. It reports whether
// the conference exists. edit must not change the ID or the aliases.
func (s *Server) EditRoomByHand(id int, edit func(*Conference)) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.conferences[id]
	if ok {
		edit(c)
		c.ID = id
	}
	return ok
}

// DeleteRoomByHand removes a conference and its aliases, as an administrator
// would, and reports whether it existed.
func (s *Server) DeleteRoomByHand(id int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.conferences[id]; !ok {
		return false
	}
	s.deleteConference(id)
	return true
}

// CreateRoomByHand adds an untagged conference, as an administrator would,
// and returns its id. It panics if the name or an alias is taken.
func (s *Server) CreateRoomByHand(name string, aliases ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nameTaken(name, 0) {
		panic("pexiptest: conference name taken: " + name)
	}
	id := s.nextConfID
	s.nextConfID++
	s.conferences[id] = &Conference{ID: id, Name: name, ServiceType: "conference"}
	for _, a := range aliases {
		if s.aliasTaken(a, 0) {
			panic("pexiptest: alias taken: " + a)
		}
		s.aliases[s.nextAliasID] = &Alias{ID: s.nextAliasID, Alias: a, ConferenceID: id}
		s.nextAliasID++
	}
	return id
}

func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	kind, id, pathOK := parsePath(r.URL.Path)
	reqName := r.Method + " " + kind
	body, readErr := io.ReadAll(io.LimitReader(r.Body, 1<<20))

	s.mu.Lock()
	s.requests[reqName]++
	s.operations[operation(r.Method, id)+" "+kind]++
	hold := s.takeHold(reqName)
	var mode FaultMode
	hang := s.faults.Hang
	if hold == nil {
		mode, hang = s.drawFault(reqName)
	}
	if mode != 0 {
		s.injected[faultNames[mode]]++
	}
	s.mu.Unlock()

	user, pass, ok := r.BasicAuth()
	s.mu.Lock()
	wantUser, wantPass := s.username, s.password
	s.mu.Unlock()
	switch {
	case !pathOK:
		http.NotFound(w, r)
		return
	case !ok || user != wantUser || pass != wantPass:
		w.Header().Set("WWW-Authenticate", `Basic realm="Pexip"`)
		w.WriteHeader(http.StatusUnauthorized)
		return
	case readErr != nil:
		w.WriteHeader(http.StatusBadRequest)
		return
	}

	apply := func(w http.ResponseWriter) { s.handle(w, r, kind, id, body) }
	wait := func() {
		t := time.NewTimer(hang)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
		}
	}
	if hold != nil {
		s.serveHeld(w, r, hold, apply)
		return
	}
	switch mode {
	case 0:
		apply(w)
	case FaultErrorQuotingRequest:
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = fmt.Fprintf(w, "<html><body><h1>500 Internal Server Error</h1><p>while processing %s %s</p><pre>%s</pre></body></html>",
			r.Method, r.URL.Path, body)
	case FaultRateLimit:
		w.Header().Set("Retry-After", strconv.Itoa(s.coin()))
		w.WriteHeader(http.StatusTooManyRequests)
	case FaultError:
		w.WriteHeader([]int{500, 502, 503}[s.pick(3)])
	case FaultErrorAfterApply:
		apply(httptest.NewRecorder())
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "<html><body>502 Bad Gateway</body></html>")
	case FaultHangBeforeApply:
		wait()
		apply(w)
	case FaultLateApply:
		t := time.NewTimer(hang)
		<-t.C
		apply(w)
	case FaultHangAfterApply:
		rec := httptest.NewRecorder()
		apply(rec)
		wait()
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.WriteHeader(rec.Code)
		_, _ = w.Write(rec.Body.Bytes())
	}
}

// serveHeld applies the request, signals it, and withholds the answer until
// the hold is released or the client is gone.
func (s *Server) serveHeld(w http.ResponseWriter, r *http.Request, h *Hold, apply func(http.ResponseWriter)) {
	rec := httptest.NewRecorder()
	apply(rec)
	close(h.applied)
	select {
	case <-h.release:
	case <-r.Context().Done():
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	_, _ = w.Write(rec.Body.Bytes())
}

// takeHold is called with s.mu held.
func (s *Server) takeHold(reqName string) *Hold {
	q := s.holds[reqName]
	if len(q) == 0 {
		return nil
	}
	s.holds[reqName] = q[1:]
	return q[0]
}

// drawFault is called with s.mu held.
func (s *Server) drawFault(reqName string) (FaultMode, time.Duration) {
	hang := s.faults.Hang
	if hang <= 0 {
		hang = defaultHang
	}
	if q := s.scripted[reqName]; len(q) > 0 {
		s.scripted[reqName] = q[1:]
		return q[0], hang
	}
	f := s.faults
	x := s.rng.Float64()
	switch {
	case x < f.RateLimitRate:
		return FaultRateLimit, hang
	case x < f.RateLimitRate+f.ErrorRate:
		if s.rng.IntN(2) == 0 {
			return FaultError, hang
		}
		return FaultErrorAfterApply, hang
	case x < f.RateLimitRate+f.ErrorRate+f.TimeoutRate:
		if s.rng.IntN(2) == 0 {
			return FaultHangBeforeApply, hang
		}
		return FaultHangAfterApply, hang
	case reqName == "POST "+kindConference && x < f.RateLimitRate+f.ErrorRate+f.TimeoutRate+f.LateApplyRate:
		return FaultLateApply, hang
	}
	return 0, hang
}

func (s *Server) pick(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(n)
}

func (s *Server) coin() int { return s.pick(2) }

// operation names what a request does to the API's objects.
func operation(method string, id int) string {
	switch {
	case method == http.MethodGet && id == 0:
		return "list"
	case method == http.MethodGet:
		return "get"
	case method == http.MethodPost:
		return "create"
	case method == http.MethodPatch || method == http.MethodPut:
		return "update"
	case method == http.MethodDelete:
		return "delete"
	}
	return strings.ToLower(method)
}

func parsePath(p string) (kind string, id int, ok bool) {
	rest, found := strings.CutPrefix(p, apiPrefix)
	if !found || !strings.HasSuffix(rest, "/") {
		return "other", 0, false
	}
	parts := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	kind = parts[0]
	if kind != kindConference && kind != kindAlias {
		return "other", 0, false
	}
	switch len(parts) {
	case 1:
		return kind, 0, true
	case 2:
		id, err := strconv.Atoi(parts[1])
		return kind, id, err == nil && id > 0
	}
	return kind, 0, false
}

func (s *Server) handle(w http.ResponseWriter, r *http.Request, kind string, id int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case id == 0 && r.Method == http.MethodGet:
		s.list(w, r, kind)
	case id == 0 && r.Method == http.MethodPost:
		s.create(w, r, kind, body)
	case id != 0 && r.Method == http.MethodGet:
		s.get(w, kind, id)
	case id != 0 && r.Method == http.MethodPatch:
		s.patch(w, kind, id, body, false)
	case id != 0 && r.Method == http.MethodPut:
		s.patch(w, kind, id, body, true)
	case id != 0 && r.Method == http.MethodDelete:
		s.delete(w, kind, id)
	default:
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

// JSON shapes of the API.

type conferenceJSON struct {
	ID               int         `json:"id"`
	Name             string      `json:"name"`
	Description      string      `json:"description"`
	ServiceType      string      `json:"service_type"`
	PIN              string      `json:"pin"`
	GuestPIN         string      `json:"guest_pin"`
	AllowGuests      bool        `json:"allow_guests"`
	ParticipantLimit *int        `json:"participant_limit"`
	Tag              string      `json:"tag"`
	Aliases          []aliasJSON `json:"aliases"`
	ResourceURI      string      `json:"resource_uri"`
}

type aliasJSON struct {
	ID          int    `json:"id"`
	Alias       string `json:"alias"`
	Conference  string `json:"conference"`
	Description string `json:"description"`
	ResourceURI string `json:"resource_uri"`
}

type meta struct {
	Limit      int     `json:"limit"`
	Next       *string `json:"next"`
	Offset     int     `json:"offset"`
	Previous   *string `json:"previous"`
	TotalCount int     `json:"total_count"`
}

func uri(kind string, id int) string { return apiPrefix + kind + "/" + strconv.Itoa(id) + "/" }

func (s *Server) aliasJSON(a *Alias) aliasJSON {
	return aliasJSON{
		ID:          a.ID,
		Alias:       a.Alias,
		Conference:  uri(kindConference, a.ConferenceID),
		Description: a.Description,
		ResourceURI: uri(kindAlias, a.ID),
	}
}

func (s *Server) conferenceJSON(id int) conferenceJSON {
	return s.conferenceJSONOf(s.snapshot(id))
}

// conferenceJSONOf renders a snapshot.
func (s *Server) conferenceJSONOf(c Conference) conferenceJSON {
	out := conferenceJSON{
		ID:               c.ID,
		Name:             c.Name,
		Description:      c.Description,
		ServiceType:      c.ServiceType,
		PIN:              c.PIN,
		GuestPIN:         c.GuestPIN,
		AllowGuests:      c.AllowGuests,
		ParticipantLimit: c.ParticipantLimit,
		Tag:              c.Tag,
		Aliases:          []aliasJSON{},
		ResourceURI:      uri(kindConference, c.ID),
	}
	for _, a := range c.Aliases {
		out.Aliases = append(out.Aliases, s.aliasJSON(&a))
	}
	return out
}

// snapshot is called with s.mu held.
func (s *Server) snapshot(id int) Conference {
	c := *s.conferences[id]
	if c.ParticipantLimit != nil {
		v := *c.ParticipantLimit
		c.ParticipantLimit = &v
	}
	c.Aliases = nil
	for _, aid := range sortedKeys(s.aliases) {
		if a := s.aliases[aid]; a.ConferenceID == id {
			c.Aliases = append(c.Aliases, *a)
		}
	}
	return c
}

func (s *Server) list(w http.ResponseWriter, r *http.Request, kind string) {
	q := r.URL.Query()
	// Tastypie: a parameter naming no field is ignored; a lookup the
	// resource does not declare for its field is refused.
	fields := conferenceFields
	filters := map[string]bool{"name": true, "tag": true, "service_type": true, "aliases__alias": true}
	if s.tagPrefix {
		filters["tag__startswith"] = true
	}
	if kind == kindAlias {
		fields = aliasFields
		filters = map[string]bool{"alias": true, "conference": true}
	}
	for k := range q {
		field, lookup, _ := strings.Cut(k, "__")
		if k == "limit" || k == "offset" || k == "format" || !fields[field] || filters[k] {
			continue
		}
		msg := fmt.Sprintf("The '%s' field does not allow filtering.", field)
		if filters[field] && lookup != "" {
			msg = fmt.Sprintf("'%s' is not an allowed filter on the '%s' field.", lookup, field)
		}
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg})
		return
	}
	limit, offset := defaultPageLimit, 0
	var err error
	if v := q.Get("limit"); v != "" {
		if limit, err = strconv.Atoi(v); err != nil || limit < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid limit provided."})
			return
		}
	}
	if v := q.Get("offset"); v != "" {
		if offset, err = strconv.Atoi(v); err != nil || offset < 0 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Invalid offset provided."})
			return
		}
	}
	if s.maxLimit > 0 && (limit == 0 || limit > s.maxLimit) {
		limit = s.maxLimit
	}

	var objects []any
	if kind == kindConference {
		// The aliases of every conference, gathered once per request.
		byConf := map[int][]Alias{}
		for _, aid := range sortedKeys(s.aliases) {
			a := s.aliases[aid]
			byConf[a.ConferenceID] = append(byConf[a.ConferenceID], *a)
		}
		for _, id := range sortedKeys(s.conferences) {
			c := *s.conferences[id]
			c.Aliases = byConf[id]
			if match(q, "name", c.Name) && match(q, "tag", c.Tag) && match(q, "service_type", c.ServiceType) &&
				(!q.Has("tag__startswith") || strings.HasPrefix(c.Tag, q.Get("tag__startswith"))) &&
				(!q.Has("aliases__alias") || slices.ContainsFunc(c.Aliases, func(a Alias) bool { return a.Alias == q.Get("aliases__alias") })) {
				objects = append(objects, s.conferenceJSONOf(c))
			}
		}
	} else {
		for _, id := range sortedKeys(s.aliases) {
			a := s.aliases[id]
			if match(q, "alias", a.Alias) && (!q.Has("conference") || q.Get("conference") == strconv.Itoa(a.ConferenceID)) {
				objects = append(objects, s.aliasJSON(a))
			}
		}
	}

	total := len(objects)
	page := objects[min(offset, total):]
	if limit > 0 && len(page) > limit {
		page = page[:limit]
	}
	m := meta{Limit: limit, Offset: offset, TotalCount: total}
	link := func(off int) *string {
		lq := url.Values{}
		for k, v := range q {
			lq[k] = v
		}
		lq.Set("limit", strconv.Itoa(limit))
		lq.Set("offset", strconv.Itoa(off))
		l := apiPrefix + kind + "/?" + lq.Encode()
		return &l
	}
	if limit > 0 && offset+limit < total {
		m.Next = link(offset + limit)
	}
	if limit > 0 && offset > 0 {
		m.Previous = link(max(offset-limit, 0))
	}
	if page == nil {
		page = []any{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"meta": m, "objects": page})
}

// The fields of the resources, as far as filters go.
var (
	conferenceFields = map[string]bool{"id": true, "name": true, "description": true, "service_type": true, "pin": true,
		"guest_pin": true, "allow_guests": true, "participant_limit": true, "tag": true, "aliases": true, "resource_uri": true}
	aliasFields = map[string]bool{"id": true, "alias": true, "conference": true, "description": true, "resource_uri": true}
)

func match(q url.Values, key, value string) bool {
	return !q.Has(key) || q.Get(key) == value
}

func (s *Server) get(w http.ResponseWriter, kind string, id int) {
	if kind == kindConference {
		if _, ok := s.conferences[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		writeJSON(w, http.StatusOK, s.conferenceJSON(id))
		return
	}
	a, ok := s.aliases[id]
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	writeJSON(w, http.StatusOK, s.aliasJSON(a))
}

func (s *Server) create(w http.ResponseWriter, r *http.Request, kind string, body []byte) {
	var id int
	if kind == kindConference {
		c := &Conference{ServiceType: "conference"}
		if !s.applyConference(w, c, body) {
			return
		}
		inline, ok := s.inlineAliases(w, body)
		if !ok {
			return
		}
		id = s.nextConfID
		s.nextConfID++
		c.ID = id
		s.conferences[id] = c
		for _, a := range inline {
			a.ID = s.nextAliasID
			a.ConferenceID = id
			s.nextAliasID++
			s.aliases[a.ID] = a
		}
	} else {
		a := &Alias{}
		if !s.applyAlias(w, a, body, true) {
			return
		}
		id = s.nextAliasID
		s.nextAliasID++
		a.ID = id
		s.aliases[id] = a
	}
	w.Header().Set("Location", "http://"+r.Host+uri(kind, id))
	w.WriteHeader(http.StatusCreated)
}

// patch applies a PATCH, or with replace a PUT: the fields the body leaves
// out go back to their defaults, as a full replace does.
func (s *Server) patch(w http.ResponseWriter, kind string, id int, body []byte, replace bool) {
	var ok bool
	if kind == kindConference {
		var c *Conference
		if c, ok = s.conferences[id]; ok {
			target := c
			if replace {
				target = &Conference{ID: id, ServiceType: "conference"}
			}
			if !s.applyConference(w, target, body) {
				return
			}
			*c = *target
		}
	} else {
		var a *Alias
		if a, ok = s.aliases[id]; ok {
			target := a
			if replace {
				target = &Alias{ID: id}
			}
			if !s.applyAlias(w, target, body, replace) {
				return
			}
			*a = *target
		}
	}
	if !ok {
		w.WriteHeader(http.StatusNotFound)
		return
	}
	w.WriteHeader(http.StatusAccepted)
}

func (s *Server) delete(w http.ResponseWriter, kind string, id int) {
	if kind == kindConference {
		if _, ok := s.conferences[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		s.deleteConference(id)
	} else {
		if _, ok := s.aliases[id]; !ok {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		delete(s.aliases, id)
	}
	w.WriteHeader(http.StatusNoContent)
}

// deleteConference is called with s.mu held.
func (s *Server) deleteConference(id int) {
	delete(s.conferences, id)
	for aid, a := range s.aliases {
		if a.ConferenceID == id {
			delete(s.aliases, aid)
		}
	}
}

// pinFormat: 4 to 20 characters, the final # included.
var pinFormat = regexp.MustCompile(`^(?:[0-9]{4,20}|[0-9]{3,19}#)$`)

var serviceTypes = map[string]bool{"conference": true, "lecture": true, "two_stage_dialing": true, "test_call": true}

// applyConference validates body and applies it to c only if valid, writing a 400 and returning false when it is invalid. Validation messages
// quote the rejected PIN, as a careless server might, so that clients are
// tested for not repeating it.
func (s *Server) applyConference(w http.ResponseWriter, c *Conference, body []byte) bool {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Malformed JSON."})
		return false
	}
	errs := map[string][]string{}
	str := func(field string, dst *string) {
		raw, ok := in[field]
		if !ok {
			return
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			errs[field] = append(errs[field], "Expected a string.")
		}
	}
	next := *c
	str("name", &next.Name)
	str("description", &next.Description)
	str("service_type", &next.ServiceType)
	str("pin", &next.PIN)
	str("guest_pin", &next.GuestPIN)
	str("tag", &next.Tag)
	if raw, ok := in["allow_guests"]; ok {
		if err := json.Unmarshal(raw, &next.AllowGuests); err != nil {
			errs["allow_guests"] = append(errs["allow_guests"], "Expected a boolean.")
		}
	}
	if raw, ok := in["participant_limit"]; ok {
		var v *int
		if err := json.Unmarshal(raw, &v); err != nil || (v != nil && (*v < 0 || *v > 1000000)) {
			errs["participant_limit"] = append(errs["participant_limit"], "Expected null or an integer between 0 and 1000000.")
		} else {
			next.ParticipantLimit = v
		}
	}
	switch {
	case next.Name == "":
		errs["name"] = append(errs["name"], "This field is required.")
	case utf8.RuneCountInString(next.Name) > 250:
		errs["name"] = append(errs["name"], "Ensure this value has at most 250 characters.")
	case s.nameTaken(next.Name, c.ID):
		errs["name"] = append(errs["name"], "Virtual Meeting Room with this Name already exists.")
	}
	if !serviceTypes[next.ServiceType] {
		errs["service_type"] = append(errs["service_type"], fmt.Sprintf("Select a valid choice. %s is not one of the available choices.", next.ServiceType))
	}
	for field, v := range map[string]string{"pin": next.PIN, "guest_pin": next.GuestPIN} {
		if v != "" && !pinFormat.MatchString(v) {
			errs[field] = append(errs[field], fmt.Sprintf("Invalid PIN '%s': a PIN is 4 to 20 characters, digits with an optional final #.", v))
		}
	}
	if next.AllowGuests && next.PIN == "" {
		errs["allow_guests"] = append(errs["allow_guests"], "Guests can only be allowed when a Host PIN is set.")
	}
	if next.GuestPIN != "" && next.PIN == "" {
		errs["guest_pin"] = append(errs["guest_pin"], "A Guest PIN requires a Host PIN.")
	}
	if next.GuestPIN != "" && next.GuestPIN == next.PIN {
		errs["guest_pin"] = append(errs["guest_pin"], fmt.Sprintf("Guest PIN %s must differ from the Host PIN %s.", next.GuestPIN, next.PIN))
	}
	if len(next.Tag) > 250 {
		errs["tag"] = append(errs["tag"], "Ensure this value has at most 250 characters.")
	}
	if len(errs) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{kindConference: errs})
		return false
	}
	*c = next
	return true
}

// inlineAliases checks the aliases of a conference create, all of them
// before any is stored, so that a create with a taken alias changes nothing.
func (s *Server) inlineAliases(w http.ResponseWriter, body []byte) ([]*Alias, bool) {
	var in struct {
		Aliases []struct {
			Alias       string `json:"alias"`
			Description string `json:"description"`
		} `json:"aliases"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{kindConference: map[string][]string{"aliases": {"Expected a list of aliases."}}})
		return nil, false
	}
	seen := map[string]bool{}
	var out []*Alias
	for _, a := range in.Aliases {
		switch {
		case a.Alias == "":
			writeJSON(w, http.StatusBadRequest, map[string]any{kindAlias: map[string][]string{"alias": {"This field is required."}}})
			return nil, false
		case seen[a.Alias] || s.aliasTaken(a.Alias, 0):
			writeJSON(w, http.StatusBadRequest, map[string]any{kindAlias: map[string][]string{"alias": {"Conference alias with this Alias already exists."}}})
			return nil, false
		}
		seen[a.Alias] = true
		out = append(out, &Alias{Alias: a.Alias, Description: a.Description})
	}
	return out, true
}

func (s *Server) applyAlias(w http.ResponseWriter, a *Alias, body []byte, creating bool) bool {
	var in struct {
		Alias       *string `json:"alias"`
		Conference  *string `json:"conference"`
		Description *string `json:"description"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "Malformed JSON."})
		return false
	}
	errs := map[string][]string{}
	next := *a
	if in.Alias != nil {
		next.Alias = *in.Alias
	}
	if in.Description != nil {
		next.Description = *in.Description
	}
	if in.Conference != nil {
		id, ok := conferenceID(*in.Conference)
		if _, exists := s.conferences[id]; !ok || !exists {
			errs["conference"] = append(errs["conference"], fmt.Sprintf("Could not find the conference %q.", *in.Conference))
		}
		next.ConferenceID = id
	} else if creating {
		errs["conference"] = append(errs["conference"], "This field is required.")
	}
	switch {
	case next.Alias == "":
		errs["alias"] = append(errs["alias"], "This field is required.")
	case s.aliasTaken(next.Alias, a.ID):
		errs["alias"] = append(errs["alias"], "Conference alias with this Alias already exists.")
	}
	if len(errs) > 0 {
		writeJSON(w, http.StatusBadRequest, map[string]any{kindAlias: errs})
		return false
	}
	*a = next
	return true
}

func conferenceID(ref string) (int, bool) {
	u, err := url.Parse(ref)
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(u.Path, apiPrefix+kindConference+"/")
	if !ok {
		return 0, false
	}
	id, err := strconv.Atoi(strings.TrimSuffix(rest, "/"))
	return id, err == nil && id > 0
}

func (s *Server) nameTaken(name string, except int) bool {
	for id, c := range s.conferences {
		if id != except && c.Name == name {
			return true
		}
	}
	return false
}

func (s *Server) aliasTaken(alias string, except int) bool {
	for id, a := range s.aliases {
		if id != except && a.Alias == alias {
			return true
		}
	}
	return false
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func sortedKeys[V any](m map[int]V) []int {
	keys := make([]int, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// SelfSignedCertificate makes a certificate for the given IP addresses and
// host names, its own CA, valid for a day: serve it WithTLS and give its
// PEM to the client as the CA bundle.
func SelfSignedCertificate(hosts ...string) (tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), crand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "pexiptest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(crand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, err
	}
	pair, err := tls.X509KeyPair(certPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	return pair, certPEM, err
}
