package pexip

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"testing"

	"visio.dev/operator/internal/backend"
)

// keysOf lists the keys a sweep would see, sorted.
func keysOf(t *testing.T, c *Client) []string {
	t.Helper()
	tagged, err := c.ListTagged(t.Context(), "visio-")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, r := range tagged {
		keys = append(keys, r.Key)
	}
	slices.Sort(keys)
	return keys
}

// Installations sharing a node, each with its owner (and one without), never
// list, read, change or remove each other's rooms, even for the same key
// among those with an owner (keys hold VMR UIDs, so only a broken cluster
// restore could give two installations one key); whether the node serves
// tag__startswith or not.
func TestOwnersShareANode(t *testing.T) {
	for _, prefixFilter := range []bool{true, false} {
		t.Run(fmt.Sprintf("tag__startswith=%v", prefixFilter), func(t *testing.T) {
			srv := newServer(t)
			srv.AllowTagPrefixFilter(prefixFilter)
			clients := map[string]*Client{}
			refs := map[string]string{}
			// "visio-x" is the worst owner for an installation without one:
			// its tags start with the bare key prefix.
			for i, owner := range []string{"paris", "lyon", "", "visio-x"} {
				clients[owner] = newClient(t, srv, func(cfg *Config) { cfg.Owner = owner })
				r := sampleRoom(i)
				r.Key = keyOf(owner)
				ref, err := clients[owner].Create(t.Context(), r)
				if err != nil {
					t.Fatalf("owner %q: %v", owner, err)
				}
				refs[owner] = ref
			}
			if n := len(srv.Rooms()); n != 4 {
				t.Fatalf("%d rooms, want one per installation", n)
			}
			for owner, c := range clients {
				if got := keysOf(t, c); !slices.Equal(got, []string{keyOf(owner)}) {
					t.Errorf("owner %q lists %v, want its own room only", owner, got)
				}
				tagged, _ := c.ListTagged(t.Context(), "visio-")
				if len(tagged) != 1 || tagged[0].Ref != refs[owner] {
					t.Errorf("owner %q lists %+v, want ref %s", owner, tagged, refs[owner])
				}
				for other, ref := range refs {
					if other == owner {
						continue
					}
					before := srv.Rooms()
					key := keyOf(owner)
					if _, err := c.Get(t.Context(), ref, key); !errors.Is(err, backend.ErrConflict) {
						t.Errorf("owner %q reads the room of %q: %v", owner, other, err)
					}
					r := sampleRoom(9)
					r.Key = key
					if err := c.Update(t.Context(), ref, r); !errors.Is(err, backend.ErrConflict) {
						t.Errorf("owner %q updates the room of %q: %v", owner, other, err)
					}
					if err := c.Delete(t.Context(), ref, key); !errors.Is(err, backend.ErrConflict) {
						t.Errorf("owner %q deletes the room of %q: %v", owner, other, err)
					}
					if err := c.Release(t.Context(), ref, key); !errors.Is(err, backend.ErrConflict) {
						t.Errorf("owner %q releases the room of %q: %v", owner, other, err)
					}
					if after := srv.Rooms(); !reflect.DeepEqual(before, after) {
						t.Errorf("owner %q changed the room of %q", owner, other)
					}
				}
			}
			if got := srv.Rooms()[0].Tag; got != "paris:visio-same-uid" {
				t.Errorf("tag = %q, want owner:key", got)
			}
		})
	}
}

// keyOf is the key the installation of owner uses in TestOwnersShareANode.
func keyOf(owner string) string {
	if owner == "" {
		return "visio-other-uid"
	}
	return "visio-same-uid"
}

// Rooms made before an owner was set (tagged with the bare key) stay ours:
// read, found, updated and deleted; reading one reports an empty key, and
// the update that follows moves it into the owner's scope, where the sweep
// lists it; no other installation's sweep ever lists it.
func TestOwnerSetLater(t *testing.T) {
	srv := newServer(t)
	before := newClient(t, srv, nil)
	room := sampleRoom(1)
	room.Key = "visio-uid-1"
	ref, err := before.Create(t.Context(), room)
	if err != nil {
		t.Fatal(err)
	}
	orphan := sampleRoom(2)
	orphan.Key = "visio-uid-2"
	orphanRef, err := before.Create(t.Context(), orphan)
	if err != nil {
		t.Fatal(err)
	}

	c := newClient(t, srv, func(cfg *Config) { cfg.Owner = "paris" })
	other := newClient(t, srv, func(cfg *Config) { cfg.Owner = "lyon" })
	if got := keysOf(t, c); len(got) != 0 {
		t.Errorf("rooms tagged before the owner was set are swept: %v", got)
	}
	srv.ResetRequests()
	got, err := c.Get(t.Context(), ref, room.Key)
	if err != nil {
		t.Fatal(err)
	}
	expectRequests(t, srv, map[string]int{"GET conference": 1})
	want := room
	want.Key = ""
	expectRoom(t, got, want)
	if got := keysOf(t, other); len(got) != 0 {
		t.Errorf("another installation sweeps %v", got)
	}
	if err := c.Update(t.Context(), ref, room); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(t.Context(), ref, room.Key); err != nil || got.Key != room.Key {
		t.Fatalf("after the update: %+v, %v", got, err)
	}
	if tag := srv.Rooms()[0].Tag; tag != "paris:visio-uid-1" {
		t.Errorf("tag = %q after the update", tag)
	}
	if got := keysOf(t, c); !slices.Equal(got, []string{"visio-uid-1"}) {
		t.Errorf("swept keys %v", got)
	}

	// Found by key (a room whose reference was never recorded), and its
	// create repeated: the same room, moved into the scope.
	if found, _, err := c.Find(t.Context(), orphan.Key); err != nil || found != orphanRef {
		t.Errorf("Find = %s, %v; want %s", found, err, orphanRef)
	}
	if again, err := c.Create(t.Context(), orphan); err != nil || again != orphanRef {
		t.Errorf("Create again = %s, %v; want %s", again, err, orphanRef)
	}
	if err := c.Delete(t.Context(), orphanRef, orphan.Key); err != nil {
		t.Fatal(err)
	}
	if err := c.Delete(t.Context(), ref, room.Key); err != nil {
		t.Fatal(err)
	}
	if n := len(srv.Rooms()); n != 0 {
		t.Errorf("%d rooms left", n)
	}
}

// The sweep's listing is one paged list: by tag prefix where the node serves
// it; where it refuses it (400), by service type with the tags checked here,
// and the refused filter is not asked for again.
func TestListTagged(t *testing.T) {
	for _, tc := range []struct {
		prefixFilter bool
		first, next  map[string]int
	}{
		{true, map[string]int{"GET conference": 3}, map[string]int{"GET conference": 3}},
		{false, map[string]int{"GET conference": 1 + 3}, map[string]int{"GET conference": 3}},
	} {
		t.Run(fmt.Sprintf("tag__startswith=%v", tc.prefixFilter), func(t *testing.T) {
			srv := newServer(t)
			srv.AllowTagPrefixFilter(tc.prefixFilter)
			srv.SetMaxPageSize(20)
			c := newClient(t, srv, func(cfg *Config) { cfg.Owner = "paris" })
			other := newClient(t, srv, func(cfg *Config) { cfg.Owner = "lyon" })
			for i := range 45 {
				r := sampleRoom(i)
				r.Key = fmt.Sprintf("visio-%04d", i)
				if _, err := c.Create(t.Context(), r); err != nil {
					t.Fatal(err)
				}
			}
			r := sampleRoom(50)
			r.Key = "visio-0001"
			if _, err := other.Create(t.Context(), r); err != nil {
				t.Fatal(err)
			}
			srv.CreateRoomByHand("hand-made", "hand@example.com")
			srv.ResetRequests()
			for _, want := range []map[string]int{tc.first, tc.next} {
				got := keysOf(t, c)
				if len(got) != 45 || got[0] != "visio-0000" || got[44] != "visio-0044" {
					t.Fatalf("ListTagged = %d rooms %v", len(got), got)
				}
				expectRequests(t, srv, want)
			}
		})
	}
}

// The sweep's cost at 1,000 rooms of ours among 1,000 of another
// installation and 100 made by hand: ten requests of 100 by tag prefix; by
// service type where the node refuses the prefix, every room on the node
// listed. No per-room call either way.
func TestSweepCostAt1000Rooms(t *testing.T) {
	for _, tc := range []struct {
		prefixFilter bool
		want         int
	}{{true, 10}, {false, 21}} {
		t.Run(fmt.Sprintf("tag__startswith=%v", tc.prefixFilter), func(t *testing.T) {
			srv := newServer(t)
			srv.AllowTagPrefixFilter(tc.prefixFilter)
			c := newClient(t, srv, func(cfg *Config) { cfg.Owner = "paris" })
			other := newClient(t, srv, func(cfg *Config) { cfg.Owner = "lyon" })
			for i := range 1000 {
				for j, cl := range []*Client{c, other} {
					id := strconv.Itoa(100000 + 1000*j + i)
					r := backend.Room{Key: fmt.Sprintf("visio-%04d", i), Name: "Room " + id, NumericID: id}
					if _, err := cl.Create(t.Context(), r); err != nil {
						t.Fatal(err)
					}
				}
			}
			for i := range 100 {
				srv.CreateRoomByHand(fmt.Sprintf("hand %d", i))
			}
			if _, err := c.ListTagged(t.Context(), "visio-"); err != nil { // learns whether the prefix is served
				t.Fatal(err)
			}
			srv.ResetRequests()
			if got := keysOf(t, c); len(got) != 1000 {
				t.Fatalf("ListTagged = %d rooms", len(got))
			}
			expectRequests(t, srv, map[string]int{"GET conference": tc.want})
		})
	}
}
