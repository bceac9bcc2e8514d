package integration

import (
	"strconv"
	"strings"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/backend/pexip"
	"visio.dev/operator/internal/backend/pexip/pexiptest"
	"visio.dev/operator/internal/operator"
	"visio.dev/operator/internal/pins"
)

// Credentials of the Pexip test servers.
const (
	pexipUser     = "visio-operator"
	pexipPassword = "correct horse battery staple"
)

// Patience for a VMR to get where a test wants it: the machine is shared and
// a faulty backend makes the controller back off.
const (
	vmrTimeout = 120 * time.Second
	vmrPolling = 250 * time.Millisecond
)

// pexipBed is a Pexip test server and the manager provisioning rooms in it,
// which replaces the shared manager until the test ends.
type pexipBed struct {
	srv  *pexiptest.Server
	opts operator.Options
	// owner is the client's: the scope of the rooms' tags.
	owner string
	// counter counts the manager's requests to the API server.
	counter *writeCounter
}

// startPexip starts a Pexip test server and a manager using it. tweak adjusts
// the client's configuration, change the manager's options; both may be nil.
func startPexip(t *testing.T, g Gomega, tweak func(*pexip.Config), change func(*operator.Options)) *pexipBed {
	t.Helper()
	startPINRecorder(t)
	waitNoVMRs(g)
	srv := pexiptest.NewServer(pexipUser, pexipPassword)
	t.Cleanup(srv.Close) // runs after the manager has stopped: cleanups run last-in first-out
	cfg := pexip.Config{
		URL: srv.URL, Username: pexipUser, Password: pexipPassword,
		RequestTimeout: 2 * time.Second, RetryBaseDelay: 20 * time.Millisecond, RetryMaxDelay: 500 * time.Millisecond,
		Owner: testPexipOwner,
	}
	if tweak != nil {
		tweak(&cfg)
	}
	be, err := pexip.New(cfg)
	g.Expect(err).NotTo(HaveOccurred())
	bed := &pexipBed{srv: srv, counter: &writeCounter{}, owner: cfg.Owner}
	set := func(o *operator.Options) {
		o.Backend = be
		o.DriftCheckInterval = time.Hour
		o.BackendTimeout = 30 * time.Second
		if change != nil {
			change(o)
		}
	}
	bed.opts = testOptions()
	set(&bed.opts)
	withManager(t, bed.counter, set)
	return bed
}

// waitNoVMRs waits until no VMR is left in the cluster. Rooms of earlier
// tests, still there while their namespace goes, would be handled by the
// manager about to start, in its own server (a reference of the embedded
// backend names no room in Pexip), and would skew its request counts.
func waitNoVMRs(g Gomega) {
	g.Eventually(func(g Gomega) {
		list := &v1.VMRList{}
		g.Expect(k8s.List(ctx(), list)).To(Succeed())
		var left []string
		for i := range list.Items {
			left = append(left, list.Items[i].Namespace+"/"+list.Items[i].Name)
		}
		g.Expect(left).To(BeEmpty(), "VMRs of earlier tests are still there")
	}).WithTimeout(vmrTimeout).WithPolling(vmrPolling).Should(Succeed())
}

// crash stops the manager, runs between (the world as a dead operator left
// it), and starts a new one, as a killed pod and its replacement would.
func (b *pexipBed) crash(between func()) {
	stopSharedManager()
	between()
	stopShared = startManager(b.counter, b.opts)
}

// testPexipOwner scopes the rooms of the tests, as --pexip-owner does.
const testPexipOwner = "it"

// tag is the tag of the room of the VMR with uid.
func (b *pexipBed) tag(uid types.UID) string {
	if b.owner == "" {
		return "visio-" + string(uid)
	}
	return b.owner + ":visio-" + string(uid)
}

// roomsOf returns the rooms of the test server carrying vmr's key.
func (b *pexipBed) roomsOf(vmr *v1.VMR) []pexiptest.Conference {
	var out []pexiptest.Conference
	for _, c := range b.srv.Rooms() {
		if c.Tag == b.tag(vmr.UID) {
			out = append(out, c)
		}
	}
	return out
}

// ourRooms returns the rooms of the test server (each test has its own)
// that carry the operator's key: counted by tag, as the sweep does.
func (b *pexipBed) ourRooms() []pexiptest.Conference {
	var out []pexiptest.Conference
	for _, c := range b.srv.Rooms() {
		if strings.HasPrefix(c.Tag, b.tag("")) {
			out = append(out, c)
		}
	}
	return out
}

// expectRoom checks that the server holds exactly one room for vmr, recorded
// in its status, and that the room is what the VMR and its PIN Secret say.
func (b *pexipBed) expectRoom(g Gomega, vmr *v1.VMR) pexiptest.Conference {
	rooms := b.roomsOf(vmr)
	g.Expect(rooms).To(HaveLen(1), "rooms of VMR %s/%s", vmr.Namespace, vmr.Name)
	room := rooms[0]
	g.Expect(vmr.Status.BackendRef).To(Equal(strconv.Itoa(room.ID)), "status.backendRef")
	// Participants see the display name, made unique by the number.
	g.Expect(room.Name).To(Equal(vmr.Spec.DisplayName + " (" + vmr.Status.NumericID + ")"))
	g.Expect(room.Description).To(Equal(vmr.Spec.Description))
	g.Expect(room.ServiceType).To(Equal("conference"))
	g.Expect(room.AllowGuests).To(Equal(vmr.Spec.AllowGuests))
	if vmr.Spec.ParticipantLimit == nil {
		g.Expect(room.ParticipantLimit).To(BeNil())
	} else {
		g.Expect(room.ParticipantLimit).To(HaveValue(Equal(int(*vmr.Spec.ParticipantLimit))))
	}
	host, guest := pinsOf(g, vmr)
	g.Expect(room.PIN == host).To(BeTrue(), "the room's host PIN is not the Secret's")
	if vmr.Spec.AllowGuests {
		g.Expect(room.GuestPIN == guest).To(BeTrue(), "the room's guest PIN is not the Secret's")
	} else {
		g.Expect(room.GuestPIN).To(BeEmpty(), "a room without guests has a guest PIN")
	}
	// Every dial string the status advertises dials the room, exactly as
	// dialled (Pexip matches aliases as received, domain included), and the
	// aliases carry nothing users would see in directory search.
	g.Expect(vmr.Status.SIPURI).To(Equal("sip:" + vmr.Status.NumericID + "@visio.example"))
	g.Expect(vmr.Status.JoinURL).To(HaveSuffix("/" + vmr.Status.NumericID))
	want := []string{vmr.Status.NumericID + " ()", strings.TrimPrefix(vmr.Status.SIPURI, "sip:") + " ()"}
	for _, a := range vmr.Status.Aliases {
		want = append(want, a+" ()")
	}
	g.Expect(vmr.Status.Aliases).To(ConsistOf(vmr.Spec.Aliases))
	var have []string
	for _, a := range room.Aliases {
		have = append(have, a.Alias+" ("+a.Description+")")
	}
	g.Expect(have).To(ConsistOf(want), "aliases of room %d", room.ID)
	return room
}

// pinsOf reads the PINs of vmr from the Secret its status names.
func pinsOf(g Gomega, vmr *v1.VMR) (host, guest string) {
	g.Expect(vmr.Status.PINSecretName).NotTo(BeEmpty())
	s := &corev1.Secret{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: vmr.Namespace, Name: vmr.Status.PINSecretName}, s)).To(Succeed())
	return string(s.Data[pins.HostPINKey]), string(s.Data[pins.GuestPINKey])
}

func newVMR(ns, name string, mutate func(*v1.VMR)) *v1.VMR {
	v := &v1.VMR{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: v1.VMRSpec{DisplayName: "Room " + name}}
	if mutate != nil {
		mutate(v)
	}
	return v
}

// waitVMR waits until the VMR satisfies check and returns it.
func waitVMR(g Gomega, key client.ObjectKey, check func(g Gomega, v *v1.VMR)) *v1.VMR {
	v := &v1.VMR{}
	g.Eventually(func(g Gomega) {
		g.Expect(k8s.Get(ctx(), key, v)).To(Succeed())
		check(g, v)
	}).WithTimeout(vmrTimeout).WithPolling(vmrPolling).Should(Succeed())
	return v
}

// beReady checks that the VMR is Ready for its current generation.
func beReady(g Gomega, v *v1.VMR) {
	ready := meta.FindStatusCondition(v.Status.Conditions, v1.ReadyCondition)
	g.Expect(ready).NotTo(BeNil(), "no Ready condition on %s", v.Name)
	g.Expect(ready.Status).To(Equal(metav1.ConditionTrue), "%s: %s: %s", v.Name, ready.Reason, ready.Message)
	g.Expect(ready.ObservedGeneration).To(Equal(v.Generation))
	g.Expect(meta.IsStatusConditionTrue(v.Status.Conditions, v1.ProvisionedCondition)).To(BeTrue())
}

func waitReady(g Gomega, key client.ObjectKey) *v1.VMR { return waitVMR(g, key, beReady) }

// waitBlocked waits until the VMR is Stalled (Ready=False) for reason.
func waitBlocked(g Gomega, key client.ObjectKey, reason string) *v1.VMR {
	return waitVMR(g, key, func(g Gomega, v *v1.VMR) {
		ready := meta.FindStatusCondition(v.Status.Conditions, v1.ReadyCondition)
		g.Expect(ready).NotTo(BeNil())
		g.Expect(ready.Status).To(Equal(metav1.ConditionFalse))
		g.Expect(ready.Reason).To(Equal(reason), ready.Message)
		g.Expect(ready.ObservedGeneration).To(Equal(v.Generation))
		stalled := meta.FindStatusCondition(v.Status.Conditions, v1.StalledCondition)
		g.Expect(stalled).NotTo(BeNil())
		g.Expect(stalled.Status).To(Equal(metav1.ConditionTrue))
		g.Expect(stalled.Reason).To(Equal(reason))
	})
}

// deleteAndWait deletes the VMR and waits until it is gone.
func deleteAndWait(g Gomega, v *v1.VMR) {
	g.Expect(client.IgnoreNotFound(k8s.Delete(ctx(), v))).To(Succeed())
	g.Eventually(func() error {
		return k8s.Get(ctx(), client.ObjectKeyFromObject(v), &v1.VMR{})
	}).WithTimeout(vmrTimeout).WithPolling(vmrPolling).Should(Satisfy(apierrors.IsNotFound), "VMR %s still there", v.Name)
}

// update applies change to the current VMR, retrying on conflicts.
func updateVMR(g Gomega, key client.ObjectKey, change func(*v1.VMR)) {
	g.Eventually(func() error {
		v := &v1.VMR{}
		if err := k8s.Get(ctx(), key, v); err != nil {
			return err
		}
		change(v)
		return k8s.Update(ctx(), v)
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// tryUpdateVMR applies change to the current VMR and returns the answer,
// trying again while the VMR changes under it.
func tryUpdateVMR(g Gomega, key client.ObjectKey, change func(*v1.VMR)) error {
	var err error
	g.Eventually(func() bool {
		v := &v1.VMR{}
		g.Expect(k8s.Get(ctx(), key, v)).To(Succeed())
		change(v)
		err = k8s.Update(ctx(), v)
		return apierrors.IsConflict(err)
	}).WithTimeout(30 * time.Second).Should(BeFalse())
	return err
}

// eventReasons lists the reasons of the events about the VMR, in order.
func eventReasons(g Gomega, v *v1.VMR) []string {
	list := &eventsv1.EventList{}
	g.Expect(k8s.List(ctx(), list, client.InNamespace(v.Namespace))).To(Succeed())
	var out []string
	for _, e := range list.Items {
		if e.Regarding.Kind == "VMR" && e.Regarding.Name == v.Name && e.Regarding.UID == v.UID {
			out = append(out, e.Reason)
		}
	}
	return out
}

// TestVMREmbeddedLifecycle provisions, changes and deletes rooms with the
// embedded backend (the shared manager), with both deletion policies.
func TestVMREmbeddedLifecycle(t *testing.T) {
	g := NewWithT(t)
	startPINRecorder(t)
	_, ns := newEntity(t, g)
	t.Cleanup(func() { expectNoPINLeak(t) })

	del := newVMR(ns, "conseil", func(v *v1.VMR) {
		v.Spec.Description = "Conseil municipal"
		v.Spec.Aliases = []string{"conseil@" + ns + ".example"}
		v.Spec.AllowGuests = true
		v.Spec.ParticipantLimit = ptr.To[int32](60)
	})
	keep := newVMR(ns, "archives", func(v *v1.VMR) { v.Spec.DeletionPolicy = v1.DeletionPolicyRetain })
	g.Expect(k8s.Create(ctx(), del)).To(Succeed())
	g.Expect(k8s.Create(ctx(), keep)).To(Succeed())

	got := waitReady(g, client.ObjectKeyFromObject(del))
	st := got.Status
	n, err := strconv.ParseUint(st.NumericID, 10, 64)
	g.Expect(err).NotTo(HaveOccurred())
	g.Expect(n).To(BeNumerically(">=", testOptions().NumericIDs.Min))
	g.Expect(n).To(BeNumerically("<=", testOptions().NumericIDs.Max))
	g.Expect(st.Aliases).To(Equal(del.Spec.Aliases))
	g.Expect(st.JoinURL).To(Equal("https://visio.example/join/" + st.NumericID))
	g.Expect(st.SIPURI).To(Equal("sip:" + st.NumericID + "@visio.example"))
	g.Expect(st.BackendRef).To(Equal("embedded:visio-" + string(got.UID)))
	g.Expect(st.PINSecretName).To(Equal("conseil-pins"))
	g.Expect(got.Finalizers).To(ContainElement(v1.VMRFinalizer))
	secret := &corev1.Secret{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "conseil-pins"}, secret)).To(Succeed())
	g.Expect(metav1.IsControlledBy(secret, got)).To(BeTrue(), "the PIN Secret is owned by its room")
	g.Expect(pins.ValidatePair(nil, nil, string(secret.Data[pins.HostPINKey]), string(secret.Data[pins.GuestPINKey]), true, nil)).To(BeEmpty())
	waitReady(g, client.ObjectKeyFromObject(keep))

	// Aliases and limit change: the new generation becomes Ready.
	updateVMR(g, client.ObjectKeyFromObject(del), func(v *v1.VMR) {
		v.Spec.Aliases = []string{"seance@" + ns + ".example", "conseil-2@" + ns + ".example"}
		v.Spec.ParticipantLimit = ptr.To[int32](120)
	})
	got = waitVMR(g, client.ObjectKeyFromObject(del), func(g Gomega, v *v1.VMR) {
		beReady(g, v)
		g.Expect(v.Status.Aliases).To(Equal([]string{"conseil-2@" + ns + ".example", "seance@" + ns + ".example"}))
	})
	g.Expect(got.Status.NumericID).To(Equal(st.NumericID), "the numeric id stays")

	// Both policies let the VMR go; the events say what became of the room.
	deleteAndWait(g, got)
	deleteAndWait(g, keep)
	g.Eventually(func(g Gomega) {
		g.Expect(eventReasons(g, got)).To(ContainElement("Deleted"))
		g.Expect(eventReasons(g, keep)).To(ContainElement("Retained"))
		g.Expect(eventReasons(g, keep)).NotTo(ContainElement("Deleted"))
	}).WithTimeout(30 * time.Second).Should(Succeed())
}

// TestVMRPexipLifecycle provisions rooms in the Pexip test server, changes
// them through the VMR and the PIN Secret, repairs drift, and deletes them
// with both deletion policies. In steady state it writes nothing anywhere.
func TestVMRPexipLifecycle(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	const drift = 3 * time.Second
	bed := startPexip(t, g, nil, func(o *operator.Options) { o.DriftCheckInterval = drift })
	t.Cleanup(func() { expectNoPINLeak(t) })

	del := newVMR(ns, "conseil", func(v *v1.VMR) {
		v.Spec.Description = "Conseil municipal"
		v.Spec.Aliases = []string{"conseil@" + ns + ".example", "cm@" + ns + ".example"}
		v.Spec.AllowGuests = true
		v.Spec.ParticipantLimit = ptr.To[int32](60)
	})
	keep := newVMR(ns, "archives", func(v *v1.VMR) {
		v.Spec.DeletionPolicy = v1.DeletionPolicyRetain
		v.Spec.NumericID = "31415926"
	})
	g.Expect(k8s.Create(ctx(), del)).To(Succeed())
	g.Expect(k8s.Create(ctx(), keep)).To(Succeed())
	got := waitReady(g, client.ObjectKeyFromObject(del))
	bed.expectRoom(g, got)
	kept := waitReady(g, client.ObjectKeyFromObject(keep))
	g.Expect(kept.Status.NumericID).To(Equal("31415926"))
	bed.expectRoom(g, kept)

	// Aliases, limit and guests change: the room follows.
	updateVMR(g, client.ObjectKeyFromObject(del), func(v *v1.VMR) {
		v.Spec.Aliases = []string{"cm@" + ns + ".example", "seance@" + ns + ".example"}
		v.Spec.ParticipantLimit = ptr.To[int32](250)
		v.Spec.AllowGuests = false
	})
	waitVMR(g, client.ObjectKeyFromObject(del), func(g Gomega, v *v1.VMR) {
		beReady(g, v)
		bed.expectRoom(g, v)
	})
	updateVMR(g, client.ObjectKeyFromObject(del), func(v *v1.VMR) { v.Spec.ParticipantLimit = nil })
	got = waitVMR(g, client.ObjectKeyFromObject(del), func(g Gomega, v *v1.VMR) {
		beReady(g, v)
		bed.expectRoom(g, v)
	})

	// New PINs in the generated Secret reach the room without a spec change.
	rotatePINs(g, ns, got.Status.PINSecretName)
	waitVMR(g, client.ObjectKeyFromObject(del), func(g Gomega, v *v1.VMR) { bed.expectRoom(g, v) })

	// A room changed or removed by hand is repaired at the next drift check.
	room := bed.expectRoom(g, got)
	g.Expect(bed.srv.EditRoomByHand(room.ID, func(c *pexiptest.Conference) {
		c.ParticipantLimit = ptr.To(2)
		c.PIN = ""
	})).To(BeTrue())
	waitVMR(g, client.ObjectKeyFromObject(del), func(g Gomega, v *v1.VMR) { bed.expectRoom(g, v) })
	g.Expect(bed.srv.DeleteRoomByHand(room.ID)).To(BeTrue())
	got = waitVMR(g, client.ObjectKeyFromObject(del), func(g Gomega, v *v1.VMR) {
		beReady(g, v)
		bed.expectRoom(g, v)
	})
	g.Expect(got.Status.BackendRef).NotTo(Equal(strconv.Itoa(room.ID)), "the room removed by hand is created again")
	g.Expect(eventReasons(g, got)).To(ContainElement("RoomMissing"))

	// Steady state: no write to the backend or to Kubernetes, and at most one
	// read per room per drift interval (plus one for a check under way when
	// the window opens).
	const intervals = 3
	bed.srv.ResetRequests()
	writes := bed.counter.snapshot()
	time.Sleep(intervals * drift)
	ops := bed.srv.Operations()
	written := diffCounts(writes, bed.counter.snapshot())
	t.Logf("steady state, %d rooms, %d drift intervals: %v", 2, intervals, ops)
	for op, n := range ops {
		g.Expect(op).To(BeElementOf("get conference", "list conference"), "steady state made %d %q requests", n, op)
	}
	g.Expect(ops["get conference"]).To(BeNumerically("<=", 2*(intervals+1)))
	// The sweep: one listing by tag per interval (one page for two rooms).
	g.Expect(ops["list conference"]).To(BeNumerically("<=", intervals+1))
	for _, res := range roomResources {
		g.Expect(written[res]).To(BeZero(), "Kubernetes writes to %s in steady state", res)
	}

	// Delete removes the room; Retain leaves it as it is.
	before := bed.roomsOf(kept)
	deleteAndWait(g, got)
	deleteAndWait(g, kept)
	g.Expect(bed.roomsOf(got)).To(BeEmpty(), "the room of a VMR with deletionPolicy Delete is left")
	// Retained: handed over, with nothing changed but its tag, so that no
	// sweep takes it for an orphan.
	retained := before[0]
	retained.Tag = "retained-" + bed.tag(kept.UID)
	g.Expect(bed.srv.Rooms()).To(ContainElement(retained), "the room of a VMR with deletionPolicy Retain was changed or removed")
	g.Consistently(func() []pexiptest.Conference { return bed.srv.Rooms() }).WithTimeout(2 * drift).Should(ContainElement(retained))
}

// rotatePINs writes new PINs into a generated PIN Secret, as an entity
// administrator rotating them would.
func rotatePINs(g Gomega, ns, name string) (host, guest string) {
	host, guest, err := pins.Generate(8)
	g.Expect(err).NotTo(HaveOccurred())
	recordPINs(host, guest)
	s := &corev1.Secret{}
	g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, s)).To(Succeed())
	s.Data[pins.HostPINKey], s.Data[pins.GuestPINKey] = []byte(host), []byte(guest)
	g.Expect(k8s.Update(ctx(), s)).To(Succeed())
	return host, guest
}

// TestVMRPexipCrash kills the manager after the backend has created a room
// and before the operator has recorded it, then starts a new one: the room is
// found by its key, completed, and never created twice.
func TestVMRPexipCrash(t *testing.T) {
	for _, tc := range []struct {
		name, request string
	}{
		// The conference exists with its aliases (created inline), its
		// answer (and so its id) never arrived.
		{"conference-answer-lost", "POST conference"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := NewWithT(t)
			_, ns := newEntity(t, g)
			bed := startPexip(t, g, nil, nil)
			t.Cleanup(func() { expectNoPINLeak(t) })
			hold := bed.srv.HoldNext(tc.request)
			defer hold.Release()

			vmr := newVMR(ns, "crash", func(v *v1.VMR) { v.Spec.Aliases = []string{"crash@" + ns + ".example"} })
			g.Expect(k8s.Create(ctx(), vmr)).To(Succeed())
			g.Eventually(hold.Applied()).WithTimeout(vmrTimeout).Should(BeClosed())
			bed.crash(func() {
				got := &v1.VMR{}
				g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(vmr), got)).To(Succeed())
				g.Expect(got.Status.BackendRef).To(BeEmpty(), "the dead operator recorded the room")
				g.Expect(bed.roomsOf(got)).To(HaveLen(1), "the backend did not create the room")
			})
			got := waitReady(g, client.ObjectKeyFromObject(vmr))
			bed.expectRoom(g, got)
			g.Expect(bed.srv.Operations()["create conference"]).To(Equal(1), "conference POSTs")
			g.Expect(bed.ourRooms()).To(HaveLen(1))

			deleteAndWait(g, got)
			g.Expect(bed.ourRooms()).To(BeEmpty())
		})
	}
}

// TestVMRPexipBackendConflict gives a VMR the name of a room an administrator
// created by hand in Pexip, and another VMR an alias such a room holds: both
// stall with BackendConflict, advertise nothing, leave nothing dialable on
// the node, and the hand-made rooms are never changed or deleted, not even
// when the VMRs go.
func TestVMRPexipBackendConflict(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	bed := startPexip(t, g, nil, nil)
	t.Cleanup(func() { expectNoPINLeak(t) })
	bed.srv.CreateRoomByHand("Room conseil (7777001)", "conseil-by-hand@"+ns+".example")
	bed.srv.CreateRoomByHand("somebody's room", "taken@"+ns+".example")
	handMade := bed.srv.Rooms()

	sameName := newVMR(ns, "conseil", func(v *v1.VMR) { v.Spec.NumericID = "7777001" })
	sameAlias := newVMR(ns, "bureau", func(v *v1.VMR) { v.Spec.Aliases = []string{"taken@" + ns + ".example"} })
	g.Expect(k8s.Create(ctx(), sameName)).To(Succeed())
	g.Expect(k8s.Create(ctx(), sameAlias)).To(Succeed())

	got := waitBlocked(g, client.ObjectKeyFromObject(sameName), v1.ReasonBackendConflict)
	msg := meta.FindStatusCondition(got.Status.Conditions, v1.ReadyCondition).Message
	g.Expect(msg).To(ContainSubstring("Room conseil (7777001)"), "the message names the room in the way")
	g.Expect(got.Status.BackendRef).To(BeEmpty())
	g.Expect(eventReasons(g, got)).To(ContainElement(v1.ReasonBackendConflict))
	got2 := waitBlocked(g, client.ObjectKeyFromObject(sameAlias), v1.ReasonBackendConflict)
	g.Expect(meta.FindStatusCondition(got2.Status.Conditions, v1.ReadyCondition).Message).To(ContainSubstring("taken@" + ns + ".example"))
	for _, v := range []*v1.VMR{got, got2} {
		g.Expect(v.Status.JoinURL).To(BeEmpty(), "a room in conflict advertises a join URL")
		g.Expect(v.Status.SIPURI).To(BeEmpty(), "a room in conflict advertises a SIP URI")
		g.Expect(v.Status.Aliases).To(BeEmpty(), "a room in conflict advertises aliases")
		g.Expect(bed.roomsOf(v)).To(BeEmpty(), "a room in conflict left something dialable on the node")
	}

	expectHandMadeUntouched := func() {
		g.Expect(bed.srv.Rooms()).To(ContainElements(handMade), "a room made by hand was changed or deleted")
	}
	expectHandMadeUntouched()
	deleteAndWait(g, got)
	deleteAndWait(g, got2)
	expectHandMadeUntouched()
	g.Expect(bed.srv.Rooms()).To(HaveLen(len(handMade)), "the operator's own rooms are gone, the others stay")
}

// TestVMROwnerMustBeLicensed: a room whose owner is missing, inactive or
// waiting for a license is Stalled with OwnerNotLicensed; its backend room is
// kept, and it is Ready again as soon as the owner holds a license again.
func TestVMROwnerMustBeLicensed(t *testing.T) {
	g := NewWithT(t)
	_, ns := newEntity(t, g)
	_, other := newEntity(t, g)
	bed := startPexip(t, g, nil, nil)
	t.Cleanup(func() { expectNoPINLeak(t) })
	newPool(g, ns, "default", 1, v1.EnforcementQueue)
	newPool(g, other, "default", 1, v1.EnforcementQueue)
	// A licensed user of another entity with the owner's name counts for nothing.
	g.Expect(k8s.Create(ctx(), newUser(other, "olga", true))).To(Succeed())

	vmr := newVMR(ns, "bureau", func(v *v1.VMR) { v.Spec.Owner = "olga" })
	key := client.ObjectKeyFromObject(vmr)
	g.Expect(k8s.Create(ctx(), vmr)).To(Succeed())
	got := waitBlocked(g, key, v1.ReasonOwnerNotLicensed)
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, v1.ReadyCondition).Message).To(ContainSubstring(`owner "olga" does not exist`))

	olga := newUser(ns, "olga", true)
	g.Expect(k8s.Create(ctx(), olga)).To(Succeed())
	got = waitReady(g, key)
	room := bed.expectRoom(g, got)

	setActive := func(name string, active bool) {
		g.Eventually(func() error {
			u := &v1.PlatformUser{}
			if err := k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: name}, u); err != nil {
				return err
			}
			u.Spec.Active = ptr.To(active)
			return k8s.Update(ctx(), u)
		}).WithTimeout(30 * time.Second).Should(Succeed())
	}
	// Deactivated: the room waits, and stays in the backend as it was.
	setActive("olga", false)
	got = waitBlocked(g, key, v1.ReasonOwnerNotLicensed)
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, v1.ReadyCondition).Message).To(ContainSubstring("deactivated"))
	g.Expect(bed.roomsOf(got)).To(Equal([]pexiptest.Conference{room}))

	// Active again but the only license went to someone else: still waiting.
	g.Expect(k8s.Create(ctx(), newUser(ns, "paul", true))).To(Succeed())
	g.Eventually(func(g Gomega) {
		u := &v1.PlatformUser{}
		g.Expect(k8s.Get(ctx(), client.ObjectKey{Namespace: ns, Name: "paul"}, u)).To(Succeed())
		g.Expect(meta.IsStatusConditionTrue(u.Status.Conditions, v1.LicensedCondition)).To(BeTrue())
	}).WithTimeout(vmrTimeout).Should(Succeed())
	setActive("olga", true)
	waitVMR(g, key, func(g Gomega, v *v1.VMR) {
		ready := meta.FindStatusCondition(v.Status.Conditions, v1.ReadyCondition)
		g.Expect(ready.Reason).To(Equal(v1.ReasonOwnerNotLicensed))
		g.Expect(ready.Message).To(ContainSubstring("holds no license"))
	})

	// The license comes back to her: the room follows.
	setActive("paul", false)
	got = waitReady(g, key)
	g.Expect(bed.roomsOf(got)).To(Equal([]pexiptest.Conference{room}), "the room was not kept as it was")
	deleteAndWait(g, got)
	g.Expect(bed.ourRooms()).To(BeEmpty())
}

// TestVMRDialStringClashRefused: numeric ids and aliases are unique across
// the platform, so a room of another entity claiming one is refused at
// admission, with the field and the room that holds the value.
func TestVMRDialStringClashRefused(t *testing.T) {
	g := NewWithT(t)
	startPINRecorder(t)
	_, nsA := newEntity(t, g)
	_, nsB := newEntity(t, g)
	t.Cleanup(func() { expectNoPINLeak(t) })
	alias := "conseil@" + nsA + ".example"
	first := newVMR(nsA, "conseil", func(v *v1.VMR) {
		v.Spec.Aliases = []string{alias}
		v.Spec.NumericID = "27182818"
	})
	generated := newVMR(nsA, "bureau", nil)
	g.Expect(k8s.Create(ctx(), first)).To(Succeed())
	g.Expect(k8s.Create(ctx(), generated)).To(Succeed())
	waitReady(g, client.ObjectKeyFromObject(first))
	gen := waitReady(g, client.ObjectKeyFromObject(generated))

	refused := func(v *v1.VMR, field, value, holder string) {
		err := k8s.Create(ctx(), v)
		g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "VMR %s/%s admitted or refused for another reason: %v", v.Namespace, v.Name, err)
		g.Expect(err.Error()).To(And(ContainSubstring(field), ContainSubstring(value), ContainSubstring(holder)))
		g.Expect(k8s.Get(ctx(), client.ObjectKeyFromObject(v), &v1.VMR{})).To(Satisfy(apierrors.IsNotFound))
	}
	refused(newVMR(nsB, "copy", func(v *v1.VMR) { v.Spec.Aliases = []string{"other@" + nsB + ".example", alias} }),
		"spec.aliases[1]", alias, nsA+"/conseil")
	refused(newVMR(nsB, "copy", func(v *v1.VMR) { v.Spec.NumericID = "27182818" }),
		"spec.numericId", "27182818", nsA+"/conseil")
	refused(newVMR(nsB, "copy", func(v *v1.VMR) { v.Spec.Aliases = []string{"27182818"} }),
		"spec.aliases[0]", "27182818", nsA+"/conseil")
	// A refused request claims nothing: its other alias is free at once.
	g.Expect(k8s.Create(ctx(), newVMR(nsB, "other", func(v *v1.VMR) { v.Spec.Aliases = []string{"other@" + nsB + ".example"} }))).To(Succeed())
	// Neither does a dry run.
	dry := "dry@" + nsA + ".example"
	g.Expect(k8s.Create(ctx(), newVMR(nsA, "dry", func(v *v1.VMR) { v.Spec.Aliases = []string{dry} }), client.DryRunAll)).To(Succeed())
	g.Expect(k8s.Create(ctx(), newVMR(nsB, "wet", func(v *v1.VMR) { v.Spec.Aliases = []string{dry} }))).To(Succeed())
	// A generated number is taken as well as a given one.
	refused(newVMR(nsB, "copy", func(v *v1.VMR) { v.Spec.NumericID = gen.Status.NumericID }),
		"spec.numericId", gen.Status.NumericID, nsA+"/bureau")

	// An existing room cannot take the value either.
	mine := newVMR(nsB, "mine", nil)
	g.Expect(k8s.Create(ctx(), mine)).To(Succeed())
	err := tryUpdateVMR(g, client.ObjectKeyFromObject(mine), func(v *v1.VMR) { v.Spec.Aliases = []string{alias} })
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "update: %v", err)
	g.Expect(err.Error()).To(ContainSubstring(nsA + "/conseil"))

	// Once the holder is gone the value is free.
	deleteAndWait(g, first)
	g.Eventually(func() error {
		return k8s.Create(ctx(), newVMR(nsB, "copy", func(v *v1.VMR) { v.Spec.Aliases = []string{alias} }))
	}).WithTimeout(30 * time.Second).Should(Succeed())
	waitReady(g, client.ObjectKey{Namespace: nsB, Name: "copy"})
}

// TestVMRPINSecretAppliedAfterRoom: a room may name a PIN Secret that does
// not exist yet (GitOps applies them in any order). When it then turns out to
// hold weak PINs the room stalls with InvalidPINs, without quoting them, and
// admission does not hold that against updates that do not touch the PINs:
// the operator can still add and remove its finalizer, and the room can be
// deleted.
func TestVMRPINSecretAppliedAfterRoom(t *testing.T) {
	g := NewWithT(t)
	startPINRecorder(t)
	_, ns := newEntity(t, g)
	t.Cleanup(func() { expectNoPINLeak(t) })
	vmr := newVMR(ns, "late", func(v *v1.VMR) { v.Spec.PINSecretRef = &v1.LocalSecretReference{Name: "late-pins"} })
	key := client.ObjectKeyFromObject(vmr)
	g.Expect(k8s.Create(ctx(), vmr)).To(Succeed())
	got := waitBlocked(g, key, v1.ReasonInvalidPINs)
	g.Expect(meta.FindStatusCondition(got.Status.Conditions, v1.ReadyCondition).Message).To(ContainSubstring(`"late-pins"`))
	g.Expect(got.Finalizers).To(ContainElement(v1.VMRFinalizer))

	recordPINs("2222222222", "8642097531")
	g.Expect(k8s.Create(ctx(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "late-pins"},
		Data: map[string][]byte{pins.HostPINKey: []byte("2222222222"), pins.GuestPINKey: []byte("8642097531")}})).To(Succeed())
	// A label change makes the room look again (the Secret, created after
	// the room and not labelled yet, is not watched), and is admitted
	// although the PINs are weak.
	updateVMR(g, key, func(v *v1.VMR) { v.Labels = map[string]string{"touched": "yes"} })
	got = waitVMR(g, key, func(g Gomega, v *v1.VMR) {
		ready := meta.FindStatusCondition(v.Status.Conditions, v1.ReadyCondition)
		g.Expect(ready.Reason).To(Equal(v1.ReasonInvalidPINs))
		g.Expect(ready.Message).To(ContainSubstring("data[hostPin]"))
	})
	msg := meta.FindStatusCondition(got.Status.Conditions, v1.ReadyCondition).Message
	g.Expect(msg).NotTo(Or(ContainSubstring("2222222222"), ContainSubstring("8642097531")))
	// Changing what the PINs must satisfy is checked, though.
	err := tryUpdateVMR(g, key, func(v *v1.VMR) { v.Spec.AllowGuests = true })
	g.Expect(apierrors.IsInvalid(err)).To(BeTrue(), "allowing guests with weak PINs: %v", err)

	deleteAndWait(g, got)
}
