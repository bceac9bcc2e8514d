package pexip

import (
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/pexip/pexiptest"
)

const (
	testUser     = "admin"
	testPassword = "correct horse"
)

func newServer(t *testing.T) *pexiptest.Server {
	t.Helper()
	srv := pexiptest.NewServer(testUser, testPassword)
	t.Cleanup(srv.Close)
	return srv
}

func newClient(t *testing.T, srv *pexiptest.Server, tweak func(*Config)) *Client {
	t.Helper()
	cfg := Config{
		URL:            srv.URL,
		Username:       testUser,
		Password:       testPassword,
		RequestTimeout: 2 * time.Second,
		RetryBaseDelay: time.Millisecond,
		RetryMaxDelay:  20 * time.Millisecond,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// sampleRoom's PINs start with 90 and 80, which no other value of the room
// contains, so that finding them in an error text means a leak.
func sampleRoom(i int) backend.Room {
	limit := int32(10 + i)
	return backend.Room{
		Key:              fmt.Sprintf("uid-%04d", i),
		Name:             fmt.Sprintf("team/room-%d", i),
		Description:      "weekly sync",
		NumericID:        fmt.Sprintf("7100%03d", i),
		Aliases:          []string{fmt.Sprintf("room-%d@example.com", i), fmt.Sprintf("sip:room-%d@example.com", i)},
		HostPIN:          fmt.Sprintf("9090%03d", i),
		GuestPIN:         fmt.Sprintf("8080%03d", i),
		AllowGuests:      true,
		ParticipantLimit: &limit,
	}
}

func expectRequests(t *testing.T, srv *pexiptest.Server, want map[string]int) {
	t.Helper()
	if got := srv.Requests(); !maps.Equal(got, want) {
		t.Errorf("requests = %v, want %v", got, want)
	}
	srv.ResetRequests()
}

// expectRoom compares a room read back with the one written: a read room
// has every dial string in Aliases, the numeric id among them.
func expectRoom(t *testing.T, got *backend.Room, want backend.Room) {
	t.Helper()
	want.Aliases, want.NumericID = want.DialStrings(), ""
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("room = %+v\nwant   %+v", *got, want)
	}
}

func TestCreateGetUpdateDelete(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	ctx := t.Context()
	room := sampleRoom(1)

	ref, err := c.Create(ctx, room)
	if err != nil {
		t.Fatal(err)
	}
	// One lookup by key, one create with every alias inline.
	expectRequests(t, srv, map[string]int{"GET conference": 1, "POST conference": 1})
	got, err := c.Get(ctx, ref, room.Key)
	if err != nil {
		t.Fatal(err)
	}
	expectRoom(t, got, room)
	fref, found, err := c.Find(ctx, room.Key)
	if err != nil || fref != ref {
		t.Fatalf("Find = %q, %v; want %q", fref, err, ref)
	}
	expectRoom(t, found, room)
	srv.ResetRequests()

	if err := c.Update(ctx, ref, room); err != nil {
		t.Fatal(err)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 1})

	changed := room
	changed.Description = "daily sync"
	changed.HostPIN = "1234567"
	changed.GuestPIN = ""
	changed.ParticipantLimit = nil
	changed.NumericID = "7100999"
	changed.Aliases = []string{"room-1@example.com", "new@example.com"}
	if err := c.Update(ctx, ref, changed); err != nil {
		t.Fatal(err)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 1, "PATCH conference": 1, "DELETE conference_alias": 2, "POST conference_alias": 2})
	got, err = c.Get(ctx, ref, room.Key)
	if err != nil {
		t.Fatal(err)
	}
	expectRoom(t, got, changed)

	// The former numeric id becomes an ordinary alias: kept as it is.
	again := changed
	again.NumericID = "7100888"
	again.Aliases = []string{"7100999", "room-1@example.com"}
	srv.ResetRequests()
	if err := c.Update(ctx, ref, again); err != nil {
		t.Fatal(err)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 1, "DELETE conference_alias": 1, "POST conference_alias": 1})
	for _, r := range srv.Rooms() {
		for _, a := range r.Aliases {
			if a.Description != "" {
				t.Errorf("alias %q has description %q: users see it in directory search", a.Alias, a.Description)
			}
		}
	}
	got, err = c.Get(ctx, ref, room.Key)
	if err != nil {
		t.Fatal(err)
	}
	expectRoom(t, got, again)

	if err := c.Delete(ctx, ref, room.Key); err != nil {
		t.Fatal(err)
	}
	if rooms := srv.Rooms(); len(rooms) != 0 {
		t.Fatalf("rooms left after delete: %+v", rooms)
	}
	if _, err := c.Get(ctx, ref, room.Key); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Get after delete: %v, want ErrNotFound", err)
	}
	if _, _, err := c.Find(ctx, room.Key); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Find after delete: %v, want ErrNotFound", err)
	}
	if err := c.Update(ctx, ref, room); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Update after delete: %v, want ErrNotFound", err)
	}
	if err := c.Delete(ctx, ref, room.Key); err != nil {
		t.Errorf("second Delete: %v", err)
	}
	// The aliases went with the conference, so they can be used again.
	if _, err := c.Create(ctx, again); err != nil {
		t.Errorf("re-creating with the deleted room's aliases: %v", err)
	}
}

func TestCreateIsIdempotent(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	room := sampleRoom(1)
	ref1, err := c.Create(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetRequests()
	ref2, err := c.Create(t.Context(), room)
	if err != nil || ref2 != ref1 {
		t.Fatalf("second Create = %q, %v; want %q", ref2, err, ref1)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 1})
	if n := len(srv.Rooms()); n != 1 {
		t.Fatalf("%d rooms, want 1", n)
	}
}

// A room found by key, left behind by a Create whose caller never learnt its
// reference, may no longer be what is asked for (the spec or the PINs changed
// meanwhile): Create makes it match, with one lookup and no second room.
func TestCreateRepairsRoomFoundByKey(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	old := sampleRoom(1)
	ref, err := c.Create(t.Context(), old)
	if err != nil {
		t.Fatal(err)
	}
	srv.ResetRequests()

	want := old
	want.HostPIN, want.GuestPIN = "5820417", ""
	want.AllowGuests = false
	want.Aliases = []string{old.Aliases[0], "new@example.com"}
	ref2, err := c.Create(t.Context(), want)
	if err != nil || ref2 != ref {
		t.Fatalf("Create = %q, %v; want %q", ref2, err, ref)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 1, "PATCH conference": 1,
		"DELETE conference_alias": 1, "POST conference_alias": 1})
	got, err := c.Get(t.Context(), ref, want.Key)
	if err != nil {
		t.Fatal(err)
	}
	expectRoom(t, got, want)
	if n := len(srv.Rooms()); n != 1 {
		t.Fatalf("%d rooms, want 1", n)
	}
}

func TestCreateNameTakenByHandMadeRoom(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	room := sampleRoom(1)
	hand := srv.CreateRoomByHand(room.Name, "boardroom@example.com")
	before := srv.Rooms()

	ref, err := c.Create(t.Context(), room)
	if !errors.Is(err, backend.ErrConflict) || ref != "" {
		t.Fatalf("Create = %q, %v; want ErrConflict", ref, err)
	}
	for _, want := range []string{room.Name, fmt.Sprint(hand)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if after := srv.Rooms(); !reflect.DeepEqual(after, before) {
		t.Errorf("rooms changed:\n%+v\nwant\n%+v", after, before)
	}
}

// A room one of whose dial strings a hand-made room holds is refused whole:
// nothing of it is left on the node to dial while it waits.
func TestCreateAliasTakenByAnotherRoom(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	room := sampleRoom(2)
	hand := srv.CreateRoomByHand("lobby", room.Aliases[0], room.NumericID)
	before := srv.Rooms()

	for range 2 { // retrying changes nothing either
		ref, err := c.Create(t.Context(), room)
		if !errors.Is(err, backend.ErrConflict) || ref != "" {
			t.Fatalf("Create = %q, %v; want no reference and ErrConflict", ref, err)
		}
		for _, want := range []string{room.Aliases[0], room.NumericID, fmt.Sprint(hand)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not mention %q", err, want)
			}
		}
		if after := srv.Rooms(); !reflect.DeepEqual(after, before) {
			t.Errorf("rooms = %+v; want only the hand-made room, untouched", after)
		}
	}

	// Renaming onto the hand-made room's name is a conflict too.
	free := sampleRoom(3)
	ref, err := c.Create(t.Context(), free)
	if err != nil {
		t.Fatal(err)
	}
	renamed := free
	renamed.Name = "lobby"
	if err := c.Update(t.Context(), ref, renamed); !errors.Is(err, backend.ErrConflict) {
		t.Errorf("Update to a taken name: %v, want ErrConflict", err)
	}
	// So is adding an alias the hand-made room holds; the room keeps the rest.
	grown := free
	grown.Aliases = append(slices.Clone(free.Aliases), room.Aliases[0])
	if err := c.Update(t.Context(), ref, grown); !errors.Is(err, backend.ErrConflict) {
		t.Errorf("Update to a taken alias: %v, want ErrConflict", err)
	}
}

// Every call on a recorded id checks the tag there first: after a restore of
// the node the id can be somebody else's room, which is never read as ours,
// changed or deleted.
func TestIDReusedAfterRestore(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	backup := srv.Snapshot()
	room := sampleRoom(1)
	ref, err := c.Create(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	srv.Restore(backup)
	foreign := srv.CreateRoomByHand("somebody's room", "foreign@example.com")
	if fmt.Sprint(foreign) != ref {
		t.Fatalf("the restored node gave id %d, want %s again", foreign, ref)
	}
	before := srv.Rooms()
	srv.ResetRequests()
	if _, err := c.Get(t.Context(), ref, room.Key); !errors.Is(err, backend.ErrConflict) {
		t.Errorf("Get: %v, want ErrConflict", err)
	}
	if err := c.Update(t.Context(), ref, room); !errors.Is(err, backend.ErrConflict) {
		t.Errorf("Update: %v, want ErrConflict", err)
	}
	if err := c.Delete(t.Context(), ref, room.Key); !errors.Is(err, backend.ErrConflict) {
		t.Errorf("Delete: %v, want ErrConflict", err)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 3})
	if after := srv.Rooms(); !reflect.DeepEqual(after, before) {
		t.Errorf("the foreign room changed: %+v, want %+v", after, before)
	}
}

// A retained room is handed over: it leaves the listing of our rooms.
func TestRelease(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	room := sampleRoom(1)
	room.Key = "visio-1"
	ref, err := c.Create(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Release(t.Context(), ref, room.Key); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ListTagged(t.Context(), "visio-"); err != nil || len(got) != 0 {
		t.Fatalf("ListTagged after Release = %v, %v", got, err)
	}
	if rooms := srv.Rooms(); len(rooms) != 1 || rooms[0].Tag != "retained-visio-1" || len(rooms[0].Aliases) != 3 {
		t.Fatalf("rooms = %+v", rooms)
	}
	if err := c.Release(t.Context(), ref, room.Key); !errors.Is(err, backend.ErrConflict) {
		t.Fatalf("second Release = %v, want ErrConflict", err)
	}
}

// A redirect is never followed: a POST must not turn into a GET.
func TestRedirectsAreNotFollowed(t *testing.T) {
	var gets, posts int
	var mu sync.Mutex
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if r.Method == http.MethodPost {
			posts++
		} else {
			gets++
		}
		if strings.HasPrefix(r.URL.Path, "/elsewhere") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"meta":{"limit":20,"next":null,"offset":0,"total_count":0},"objects":[]}`))
			return
		}
		http.Redirect(w, r, "/elsewhere"+r.URL.Path, http.StatusFound)
	}))
	defer hs.Close()
	c, err := New(Config{URL: hs.URL, Username: "u", Password: "p", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.postConference(t.Context(), sampleRoom(1))
	if err == nil || !strings.Contains(err.Error(), "redirect") {
		t.Fatalf("POST answered 302: %v, want a redirect error", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if posts != 1 || gets != 0 {
		t.Errorf("%d POSTs and %d GETs sent, want the one POST", posts, gets)
	}
}

// Credentials in a mounted Secret are read again when its files change.
func TestCredentialsFollowTheMountedSecret(t *testing.T) {
	srv := pexiptest.NewServer("api-user", "first password")
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	write := func(user, pass string) {
		for name, v := range map[string]string{"username": user, "password": pass} {
			tmp := filepath.Join(dir, name+".tmp")
			if err := os.WriteFile(tmp, []byte(v+"\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("api-user", "first password")
	c, err := New(Config{URL: srv.URL, CredentialsDir: dir, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Find(t.Context(), "k"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Find: %v", err)
	}
	srv.SetCredentials("api-user", "second password")
	write("api-user", "second password, longer")
	write("api-user", "second password")
	if _, _, err := c.Find(t.Context(), "k"); !errors.Is(err, backend.ErrNotFound) {
		t.Fatalf("Find after the Secret changed: %v", err)
	}
}

// A private CA for the management node.
func TestPrivateCA(t *testing.T) {
	hs := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"meta":{"limit":20,"next":null,"offset":0,"total_count":0},"objects":[]}`))
	}))
	defer hs.Close()
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	der := hs.Certificate().Raw
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	without, err := New(Config{URL: hs.URL, Username: "u", Password: "p", MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := without.Find(t.Context(), "k"); err == nil || errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Find without the CA: %v, want a certificate error", err)
	}
	with, err := New(Config{URL: hs.URL, Username: "u", Password: "p", CAFile: caFile, MaxRetries: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := with.Find(t.Context(), "k"); !errors.Is(err, backend.ErrNotFound) {
		t.Errorf("Find with the CA: %v, want ErrNotFound", err)
	}
}

func TestBadCredentials(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, func(cfg *Config) { cfg.Password = "wrong password" })
	_, _, err := c.Find(t.Context(), "uid-1")
	if !errors.Is(err, ErrUnauthorized) {
		t.Fatalf("Find: %v, want ErrUnauthorized", err)
	}
	if msg := err.Error(); !strings.Contains(msg, "401") || !strings.Contains(msg, "password") || strings.Contains(msg, "wrong password") {
		t.Errorf("unclear or leaky error: %q", msg)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 1})
}

func TestErrorsNeverContainPINs(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	ctx := t.Context()

	// The server quotes invalid PINs in its validation messages.
	bad := sampleRoom(3)
	bad.HostPIN = "90ab3"
	bad.GuestPIN = "80cd3"
	_, err := c.Create(ctx, bad)
	checkNoPIN(t, err, bad)
	if err == nil || !strings.Contains(err.Error(), `"pin"`) {
		t.Errorf("error should still name the rejected field: %v", err)
	}

	good := sampleRoom(4)
	ref, err := c.Create(ctx, good)
	if err != nil {
		t.Fatal(err)
	}
	same := good
	same.GuestPIN = good.HostPIN
	err = c.Update(ctx, ref, same)
	if err == nil {
		t.Fatal("Update with equal host and guest PINs succeeded")
	}
	checkNoPIN(t, err, good)

	srv.CreateRoomByHand("taken", "taken@example.com")
	clash := sampleRoom(5)
	clash.Name = "taken"
	_, err = c.Create(ctx, clash)
	checkNoPIN(t, err, clash)

	// Bodies that are not JSON are scrubbed too.
	s := redactBody([]byte(`<pre>{"pin": 9090111, "guest_pin": "8080111", "name": "x"</pre> 9090111`), []string{"9090111"})
	if strings.Contains(s, "9090111") || strings.Contains(s, "8080111") {
		t.Errorf("redactBody left a PIN: %s", s)
	}
}

func checkNoPIN(t *testing.T, err error, room backend.Room) {
	t.Helper()
	if err == nil {
		t.Fatal("expected an error")
	}
	for _, pin := range []string{room.HostPIN, room.GuestPIN} {
		if pin != "" && strings.Contains(err.Error(), pin) {
			t.Errorf("error contains PIN %q: %s", pin, err)
		}
	}
}

// A conference created whose answer never arrives must not be created twice.
func TestLostCreateAnswers(t *testing.T) {
	type counts = map[string]int
	cases := []struct {
		name  string
		fault string
		modes []pexiptest.FaultMode
		// want is nil where a late write races the lookup.
		want counts
	}{
		{"conference applied, answer lost", "POST conference", []pexiptest.FaultMode{pexiptest.FaultHangAfterApply},
			counts{"GET conference": 2, "POST conference": 1}},
		{"conference applied after timeout", "POST conference", []pexiptest.FaultMode{pexiptest.FaultHangBeforeApply}, nil},
		{"conference applied, 502", "POST conference", []pexiptest.FaultMode{pexiptest.FaultErrorAfterApply},
			counts{"GET conference": 2, "POST conference": 1}},
		{"conference not applied, 503", "POST conference", []pexiptest.FaultMode{pexiptest.FaultError},
			counts{"GET conference": 2, "POST conference": 2}},
		{"rate limited", "POST conference", []pexiptest.FaultMode{pexiptest.FaultRateLimit, pexiptest.FaultRateLimit},
			counts{"GET conference": 1, "POST conference": 3}},
		{"list errors", "GET conference", []pexiptest.FaultMode{pexiptest.FaultError, pexiptest.FaultHangAfterApply},
			counts{"GET conference": 3, "POST conference": 1}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newServer(t)
			c := newClient(t, srv, func(cfg *Config) { cfg.RequestTimeout = 100 * time.Millisecond })
			srv.FailNext(tc.fault, tc.modes...)
			room := sampleRoom(1)
			ref, err := c.Create(t.Context(), room)
			if err != nil {
				t.Fatal(err)
			}
			srv.Close() // waits for late writes
			if tc.want != nil {
				expectRequests(t, srv, tc.want)
			}
			rooms := srv.Rooms()
			if len(rooms) != 1 || fmt.Sprint(rooms[0].ID) != ref || len(rooms[0].Aliases) != 3 {
				t.Fatalf("ref %s, rooms %+v; want one room with 3 aliases", ref, rooms)
			}
		})
	}
}

func TestRetriesGiveUp(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, func(cfg *Config) { cfg.MaxRetries = 2 })
	srv.SetFaults(pexiptest.Faults{RateLimitRate: 1})
	_, _, err := c.Find(t.Context(), "uid-1")
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "3 attempts") {
		t.Fatalf("Find: %v; want a rate-limit error after 3 attempts", err)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 3})

	// A POST that fails ambiguously each time is settled by lookups, never re-sent blindly.
	srv.SetFaults(pexiptest.Faults{})
	srv.FailNext("POST conference", pexiptest.FaultError, pexiptest.FaultError, pexiptest.FaultError)
	if _, err := c.Create(t.Context(), sampleRoom(1)); err == nil {
		t.Fatal("Create succeeded through three server errors with two retries")
	}
	expectRequests(t, srv, map[string]int{"GET conference": 3, "POST conference": 3})

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, _, err := c.Find(ctx, "uid-1"); !errors.Is(err, context.Canceled) {
		t.Errorf("Find with a cancelled context: %v", err)
	}
}

// Like a controller: many rooms at once, each Create repeated until it
// succeeds, against a server that fails a third of the requests.
func TestConcurrentCreateWithFaults(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, func(cfg *Config) {
		cfg.RequestTimeout = 200 * time.Millisecond
		// Few retries, so that the caller's loop is exercised as well.
		cfg.MaxRetries = 1
		cfg.RetryBaseDelay = 5 * time.Millisecond
		cfg.RetryMaxDelay = 50 * time.Millisecond
	})
	srv.SetFaults(pexiptest.Faults{ErrorRate: 0.15, TimeoutRate: 0.15, RateLimitRate: 0.05, Hang: 5 * time.Second, Seed: 7})
	ctx, cancel := context.WithTimeout(t.Context(), 25*time.Second)
	defer cancel()

	const n = 50
	refs := make([]string, n)
	var mu sync.Mutex
	var errs []error
	record := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	}
	untilDone := func(op func() error) {
		for ctx.Err() == nil {
			err := op()
			if err == nil {
				return
			}
			record(err)
			time.Sleep(10 * time.Millisecond)
		}
	}
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			untilDone(func() (err error) {
				refs[i], err = c.Create(ctx, sampleRoom(i))
				return err
			})
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		t.Fatal("rooms were not all created in time")
	}
	createErrs := len(errs)

	// Rename every other room under the same faults.
	for i := 0; i < n; i += 2 {
		wg.Go(func() {
			room := sampleRoom(i)
			room.Name += "-renamed"
			untilDone(func() error { return c.Update(ctx, refs[i], room) })
		})
	}
	wg.Wait()
	srv.SetFaults(pexiptest.Faults{})
	reqs := srv.Requests()
	srv.Close() // waits for late writes

	byTag := map[string][]pexiptest.Conference{}
	for _, r := range srv.Rooms() {
		byTag[r.Tag] = append(byTag[r.Tag], r)
	}
	if len(byTag) != n {
		t.Errorf("%d distinct tags, want %d", len(byTag), n)
	}
	for i := range n {
		room := sampleRoom(i)
		if i%2 == 0 {
			room.Name += "-renamed"
		}
		got := byTag[room.Key]
		if len(got) != 1 {
			t.Errorf("key %s: %d rooms, want 1", room.Key, len(got))
			continue
		}
		var aliases []string
		for _, a := range got[0].Aliases {
			aliases = append(aliases, a.Alias)
		}
		slices.Sort(aliases)
		want := slices.Sorted(slices.Values(append([]string{room.NumericID}, room.Aliases...)))
		if fmt.Sprint(got[0].ID) != refs[i] || got[0].Name != room.Name || !slices.Equal(aliases, want) {
			t.Errorf("key %s: got %+v, want ref %s named %q with aliases %v", room.Key, got[0], refs[i], room.Name, want)
		}
	}
	for _, err := range errs {
		if errors.Is(err, backend.ErrConflict) {
			t.Errorf("false conflict: %v", err)
		}
		for i := range n {
			checkNoPIN(t, err, sampleRoom(i))
		}
	}
	t.Logf("%d failed Create calls, %d failed Update calls; requests: %v", createErrs, len(errs)-createErrs, reqs)
}

func TestListFollowsNext(t *testing.T) {
	srv := newServer(t)
	c := newClient(t, srv, nil)
	srv.SetMaxPageSize(2)
	for i := range 5 {
		srv.CreateRoomByHand(fmt.Sprintf("room-%d", i))
	}
	srv.ResetRequests()
	all, err := listAll[conference](t.Context(), c, conferencePath, nil)
	if err != nil || len(all) != 5 {
		t.Fatalf("listAll = %d objects, %v; want 5", len(all), err)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 3})
}

func TestLoadCredentials(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "username"), []byte("api-user\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "password"), []byte(" pass word \r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	u, p, err := LoadCredentials(dir)
	if err != nil || u != "api-user" || p != " pass word " {
		t.Fatalf("LoadCredentials = %q, %q, %v", u, p, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "password"), []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadCredentials(dir); err == nil {
		t.Error("empty password accepted")
	}
	if _, _, err := LoadCredentials(t.TempDir()); err == nil {
		t.Error("missing files accepted")
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, cfg := range []Config{
		{URL: "pexip.example", Username: "u", Password: "p"},
		{URL: "ftp://pexip.example/", Username: "u", Password: "p"},
		{URL: "https://u:p@pexip.example/", Username: "u", Password: "p"},
		{URL: "https://pexip.example/"},
		{URL: "https://pexip.example/", Username: "u", Password: "p", Owner: "Paris"},
		{URL: "https://pexip.example/", Username: "u", Password: "p", Owner: "a:b"},
		{URL: "https://pexip.example/", Username: "u", Password: "p", Owner: "-a"},
		{URL: "https://pexip.example/", Username: "u", Password: "p", Owner: strings.Repeat("a", 64)},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	c, err := New(Config{URL: "https://pexip.example/admin/", Username: "u", Password: "p"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.endpoint(conferencePath, nil); got != "https://pexip.example/admin/api/admin/configuration/v1/conference/" {
		t.Errorf("endpoint = %s", got)
	}
	if c.Name() != "pexip" || c.timeout != 10*time.Second || c.maxRetries != 5 {
		t.Errorf("defaults not applied: %+v", c)
	}
}

func TestIDFromURI(t *testing.T) {
	for uri, want := range map[string]int{
		"https://pexip.example/api/admin/configuration/v1/conference/42/":      42,
		"/api/admin/configuration/v1/conference/7/":                            7,
		"https://pexip.example/admin/api/admin/configuration/v1/conference/9/": 9,
		"/api/admin/configuration/v1/conference_alias/7/":                      0,
		"/api/admin/configuration/v1/conference/x/":                            0,
		"": 0,
	} {
		if got, _ := idFromURI(uri, conferencePath); got != want {
			t.Errorf("idFromURI(%q) = %d, want %d", uri, got, want)
		}
	}
}
