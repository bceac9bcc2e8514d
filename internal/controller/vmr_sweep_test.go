package controller

import (
	"context"
	"slices"
	"strconv"
	"testing"
	"time"

	"visio.dev/operator/internal/backend"
	"visio.dev/operator/internal/backend/pexip"
	"visio.dev/operator/internal/backend/pexip/pexiptest"
)

// Two installations (two clusters) with their own owners share one Pexip
// node, and each has an orphan (a create that landed after its VMR was
// deleted). Each sweep removes its own orphan and nothing else: not the
// other installation's rooms, whose VMRs it cannot see, not a room made by
// hand, not a room tagged before an owner was set.
func TestSweepKeepsToItsOwner(t *testing.T) {
	srv := pexiptest.NewServer("admin", "secret")
	t.Cleanup(srv.Close)
	type installation struct {
		owner string
		live  string
		be    *pexip.Client
		refs  map[string]string
	}
	var installs []*installation
	for k, owner := range []string{"paris", "lyon"} {
		be, err := pexip.New(pexip.Config{URL: srv.URL, Username: "admin", Password: "secret", Owner: owner})
		if err != nil {
			t.Fatal(err)
		}
		in := &installation{owner: owner, live: "uid-" + owner + "-live", be: be, refs: map[string]string{}}
		for i, uid := range []string{in.live, "uid-" + owner + "-gone"} {
			ref, err := be.Create(t.Context(), backend.Room{Key: "visio-" + uid, Name: uid, NumericID: strconv.Itoa(1000 + 10*k + i)})
			if err != nil {
				t.Fatal(err)
			}
			in.refs[uid] = ref
		}
		installs = append(installs, in)
	}
	unscoped, err := pexip.New(pexip.Config{URL: srv.URL, Username: "admin", Password: "secret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := unscoped.Create(t.Context(), backend.Room{Key: "visio-uid-paris-before", Name: "before", NumericID: "90001"}); err != nil {
		t.Fatal(err)
	}
	srv.CreateRoomByHand("hand-made", "hand@example.com") // tagged ""

	for _, in := range installs {
		r := newTestReconciler(newFakeClient(t, testVMR("room", "ns1", in.live, nil)), in.be)
		if err := r.setup(); err != nil {
			t.Fatal(err)
		}
		srv.ResetRequests()
		s := &roomSweeper{r: r, interval: time.Minute}
		if removed, err := s.sweep(context.Background()); err != nil || removed != 1 {
			t.Fatalf("%s: sweep = %d, %v; want its orphan removed", in.owner, removed, err)
		}
		for req := range srv.Requests() {
			if req != "GET conference" && req != "DELETE conference" {
				t.Errorf("%s: the sweep sent %q", in.owner, req)
			}
		}
	}
	var left []string
	for _, c := range srv.Rooms() {
		left = append(left, c.Tag)
	}
	slices.Sort(left)
	want := []string{"", "lyon:visio-uid-lyon-live", "paris:visio-uid-paris-live", "visio-uid-paris-before"}
	if !slices.Equal(left, want) {
		t.Errorf("rooms left, by tag: %q; want %q", left, want)
	}
}
