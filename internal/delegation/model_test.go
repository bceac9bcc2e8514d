package delegation

import (
	"fmt"
	"testing"
)

// model runs a parent pool and one child pool through any interleaving of
// their passes, with each side reading the other from a cache that lags
// behind (but never goes back), and checks guarantee 10 after every step:
// the licenses held in the parent and the child never exceed the parent's
// base (the child has none of its own). When the base shrinks (a grant
// expires), the holders counted against the larger base lose their licenses
// at their next pass, as in a single pool: the bound is then the largest base
// one of the holders still counts with, and once settled the new base.
//
// A pass writes its users first and its status after, as the controller
// does, so each pass is two steps here; other steps may run in between. The
// parent's status write is refused when its spec changed since it read it
// (the write carries the resourceVersion it read).
type model struct {
	base int32
	key  Key

	parent []parentVersion // every version of the parent pool
	acks   []*Ack          // every version of the child's delegatedIn entry

	parentHeld, childHeld int32
	// The base each holder counted with.
	parentBase, childBase int32

	// What each side's cache shows of the other (indexes into the histories).
	childSees, parentSeesAck int

	// The second half of a pass in flight.
	pendingPublish *pendingPublish
	pendingAck     *Ack
}

type parentVersion struct {
	inSpec    bool
	spec      int32
	published Entry
	base      int32 // the base the published offer was made from
}

type pendingPublish struct {
	read      int // the parent version the pass read
	published Entry
}

func newModel(base int32) *model {
	return &model{base: base, key: Key{Entity: "child", Pool: "default"}, parent: []parentVersion{{base: base}}, acks: []*Ack{nil}}
}

func (m *model) latest() parentVersion { return m.parent[len(m.parent)-1] }

// edit changes the parent's spec: licenses 0 removes the delegation.
func (m *model) edit(licenses int32) {
	v := m.latest()
	v.inSpec, v.spec = licenses > 0, licenses
	m.parent = append(m.parent, v)
}

// shrink or grow the parent's own licenses (a grant expiring or added).
func (m *model) setBase(base int32) { m.base = base }

// parentUsers is the first half of a parent pass: it reads its own pool fresh
// and the child's acknowledgement from a cache lagging by lag, and licenses
// its users.
func (m *model) parentUsers(lag int) {
	m.parentSeesAck = max(m.parentSeesAck, len(m.acks)-1-lag)
	read := len(m.parent) - 1
	v := m.parent[read]
	plan := PlanOut(m.base, []Out{{Key: m.key, InSpec: v.inSpec, Spec: v.spec, Valid: true,
		Published: v.published, Ack: m.acks[m.parentSeesAck]}})
	m.parentHeld, m.parentBase = Apply(m.base, -plan.Deducted), m.base
	var published Entry
	for _, e := range plan.Delegated {
		published = e
	}
	m.pendingPublish = &pendingPublish{read: read, published: published}
}

// parentStatus is the second half: the status write, refused if the pool
// changed since it was read.
func (m *model) parentStatus() {
	p := m.pendingPublish
	m.pendingPublish = nil
	if p == nil || p.read != len(m.parent)-1 {
		return
	}
	v := m.latest()
	if v.published == p.published {
		return
	}
	v.published, v.base = p.published, m.parentBase
	m.parent = append(m.parent, v)
}

// childUsers is the first half of a child pass: it reads the parent from a
// cache lagging by lag and licenses its users.
func (m *model) childUsers(lag int) {
	m.childSees = max(m.childSees, len(m.parent)-1-lag)
	v := m.parent[m.childSees]
	c := CountIn([]In{{ParentPool: "default", InSpec: v.inSpec, Spec: v.spec, Published: v.published}})
	m.childHeld, m.childBase = int32(c.Licenses), v.base
	ack := (*Ack)(nil)
	if len(c.Acks) > 0 {
		ack = &c.Acks[0].Ack
	}
	m.pendingAck = ack
	if ack == nil {
		m.pendingAck = &Ack{} // "no entry": written as a change too
	}
}

// childStatus is the second half: the acknowledgement.
func (m *model) childStatus() {
	if m.pendingAck == nil {
		return
	}
	ack := m.pendingAck
	m.pendingAck = nil
	if *ack == (Ack{}) {
		ack = nil
	}
	m.acks = append(m.acks, ack)
}

func (m *model) check() error {
	bound := m.base
	if m.parentHeld > 0 {
		bound = max(bound, m.parentBase)
	}
	if m.childHeld > 0 {
		bound = max(bound, m.childBase)
	}
	if m.parentHeld+m.childHeld > bound {
		return fmt.Errorf("parent holds %d and child %d: %d licensed, the platform gave %d",
			m.parentHeld, m.childHeld, m.parentHeld+m.childHeld, bound)
	}
	return nil
}

// run drives the model with ops, one byte per step, and returns the first
// violation.
func (m *model) run(ops []byte) error {
	for i := 0; i+1 < len(ops); i += 2 {
		op, arg := ops[i]%7, int(ops[i+1])
		switch op {
		case 0:
			m.edit(int32(arg) % (m.base + 3))
		case 1:
			m.parentUsers(arg % 4)
		case 2:
			m.parentStatus()
		case 3:
			m.childUsers(arg % 4)
		case 4:
			m.childStatus()
		case 5:
			// A restart: the halves in flight are lost, the caches start
			// from what is stored.
			m.pendingPublish, m.pendingAck = nil, nil
			m.childSees, m.parentSeesAck = len(m.parent)-1, len(m.acks)-1
		case 6:
			m.setBase(int32(arg % 32))
		}
		if err := m.check(); err != nil {
			return fmt.Errorf("step %d (op %d, arg %d): %w", i/2, op, arg, err)
		}
	}
	return nil
}

// settle runs whole passes with fresh caches until nothing changes.
func (m *model) settle() {
	for range 10 {
		m.parentUsers(0)
		m.parentStatus()
		m.childUsers(0)
		m.childStatus()
	}
}

func TestModelSettles(t *testing.T) {
	for _, want := range []int32{0, 3, 10, 7, 1, 0, 12} {
		m := newModel(10)
		m.edit(5)
		m.settle()
		m.edit(want)
		m.settle()
		if err := m.check(); err != nil {
			t.Fatal(err)
		}
		given := min(want, 10)
		if m.childHeld != given || m.parentHeld != 10-given {
			t.Errorf("delegating %d of 10: child holds %d, parent %d; want %d and %d", want, m.childHeld, m.parentHeld, given, 10-given)
		}
	}
}

// TestModelStaleCut: 5 applied, raised to 8 and cut to 3 before the child
// saw the 8, with the child's cache lagging.
func TestModelStaleCut(t *testing.T) {
	m := newModel(10)
	m.edit(5)
	m.settle()
	m.edit(8)
	m.parentUsers(0)
	m.parentStatus() // 8 published
	m.edit(3)
	m.childUsers(1) // the child's cache shows the 8, not the cut yet
	m.parentUsers(0)
	m.parentStatus()
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	m.childStatus()
	m.parentUsers(0)
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	m.settle()
	if m.childHeld != 3 || m.parentHeld != 7 {
		t.Errorf("child %d parent %d, want 3 and 7", m.childHeld, m.parentHeld)
	}
}

func FuzzHandoff(f *testing.F) {
	f.Add(byte(10), []byte{0, 5, 1, 0, 2, 0, 3, 0, 4, 0, 0, 8, 1, 0, 2, 0, 0, 3, 3, 1, 1, 0, 2, 0, 4, 0, 1, 0})
	f.Add(byte(4), []byte{0, 4, 1, 0, 3, 0, 2, 0, 3, 0, 4, 0, 0, 0, 1, 0, 3, 2, 2, 0, 1, 0, 5, 0, 3, 0})
	f.Fuzz(func(t *testing.T, base byte, ops []byte) {
		m := newModel(int32(base % 32))
		if err := m.run(ops); err != nil {
			t.Fatal(err)
		}
		m.settle()
		if err := m.check(); err != nil {
			t.Fatal(err)
		}
		if m.parentHeld+m.childHeld > m.base {
			t.Fatalf("settled: %d licensed, the platform gives %d", m.parentHeld+m.childHeld, m.base)
		}
		want := min(m.latest().spec, m.base)
		if m.childHeld != want {
			t.Fatalf("settled: child holds %d, want %d (spec %d of %d)", m.childHeld, want, m.latest().spec, m.base)
		}
	})
}

// TestModelShrink: the parent's own licenses shrink below what it delegates
// (a grant expired); the child is cut to what is left, and the subtree ends
// within the new base.
func TestModelShrink(t *testing.T) {
	m := newModel(20)
	m.edit(15)
	m.settle()
	m.setBase(10)
	m.settle()
	if err := m.check(); err != nil {
		t.Fatal(err)
	}
	if m.childHeld != 10 || m.parentHeld != 0 {
		t.Errorf("child %d parent %d, want 10 and 0", m.childHeld, m.parentHeld)
	}
	m.setBase(30)
	m.settle()
	if m.childHeld != 15 || m.parentHeld != 15 {
		t.Errorf("child %d parent %d, want 15 and 15", m.childHeld, m.parentHeld)
	}
}

// TestModelOldAcknowledgement: the child acknowledged 3 of an older offer
// and is counting a later offer of 8 when the parent cuts to 3 again; an
// acknowledgement of the same value for another revision must not let the
// parent take the 8 back.
func TestModelOldAcknowledgement(t *testing.T) {
	m := newModel(10)
	m.edit(3)
	m.settle() // 3 offered and acknowledged
	m.edit(8)
	m.parentUsers(0)
	m.parentStatus() // 8 offered
	m.childUsers(0)  // the child counts 8, not acknowledged yet
	m.edit(3)
	for range 3 {
		m.parentUsers(0)
		m.parentStatus()
		if err := m.check(); err != nil {
			t.Fatal(err)
		}
	}
	m.childStatus()
	m.settle()
	if m.childHeld != 3 || m.parentHeld != 7 {
		t.Errorf("child %d parent %d, want 3 and 7", m.childHeld, m.parentHeld)
	}
}
