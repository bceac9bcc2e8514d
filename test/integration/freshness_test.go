package integration

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/onsi/gomega"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	watchtools "k8s.io/client-go/tools/watch"
	"sigs.k8s.io/controller-runtime/pkg/client"

	v1 "visio.dev/operator/api/v1alpha1"
)

// poolFreshness follows the pools and users of a namespace through two
// watches and, replayed in resourceVersion order (etcd's one order of every
// write), measures how far each pool's status strays from its users: used
// against the users showing a license of the pool, pending against the
// users waiting for one.
//
// The bound it checks is the pool's next status write: the pass that writes
// a pool's users writes the pool's counts after them, so once a pool's
// users are settled the first status of the pool written after the last of
// them agrees with them. Between a user's write and that pool write the two
// disagree, which is what the durations measure.
type poolFreshness struct {
	mu     sync.Mutex
	events []freshnessEvent
	errors []string // what the watches reported instead of objects
	stops  []func()
	done   sync.WaitGroup
}

type freshnessEvent struct {
	rv      uint64
	at      time.Time
	deleted bool
	user    *v1.PlatformUser
	pool    *v1.LicensePool
}

// watchFreshness starts the watches, from the namespace's current state:
// the objects already there arrive first, as additions.
func watchFreshness(t testing.TB, g Gomega, ns string) *poolFreshness {
	wc, err := client.NewWithWatch(cfg, client.Options{Scheme: scheme})
	g.Expect(err).NotTo(HaveOccurred())
	f := &poolFreshness{}
	for _, list := range []client.ObjectList{&v1.PlatformUserList{}, &v1.LicensePoolList{}} {
		g.Expect(wc.List(ctx(), list, client.InNamespace(ns))).To(Succeed())
		items, err := meta.ExtractList(list)
		g.Expect(err).NotTo(HaveOccurred())
		for _, o := range items {
			f.record(watch.Event{Type: watch.Added, Object: o})
		}
		// A RetryWatcher resumes from the last event when the API server ends
		// a watch, so that no write is missed over minutes.
		w, err := watchtools.NewRetryWatcherWithContext(ctx(), list.GetResourceVersion(), watcherFunc(
			func(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
				return wc.Watch(ctx, list.DeepCopyObject().(client.ObjectList), client.InNamespace(ns), &client.ListOptions{Raw: &opts})
			}))
		g.Expect(err).NotTo(HaveOccurred())
		f.stops = append(f.stops, w.Stop)
		f.done.Add(1)
		go func() {
			defer f.done.Done()
			for ev := range w.ResultChan() {
				f.record(ev)
			}
		}()
	}
	t.Cleanup(f.stop)
	return f
}

// watcherFunc makes a function a cache.WatcherWithContext.
type watcherFunc func(context.Context, metav1.ListOptions) (watch.Interface, error)

func (w watcherFunc) WatchWithContext(ctx context.Context, opts metav1.ListOptions) (watch.Interface, error) {
	return w(ctx, opts)
}

func (f *poolFreshness) record(ev watch.Event) {
	e := freshnessEvent{at: time.Now(), deleted: ev.Type == watch.Deleted}
	switch o := ev.Object.(type) {
	case *v1.PlatformUser:
		e.user = o
		e.rv, _ = strconv.ParseUint(o.ResourceVersion, 10, 64)
	case *v1.LicensePool:
		e.pool = o
		e.rv, _ = strconv.ParseUint(o.ResourceVersion, 10, 64)
	default:
		f.mu.Lock()
		f.errors = append(f.errors, fmt.Sprintf("%s: %v", ev.Type, ev.Object))
		f.mu.Unlock()
		return
	}
	f.mu.Lock()
	f.events = append(f.events, e)
	f.mu.Unlock()
}

func (f *poolFreshness) stop() {
	for _, s := range f.stops {
		s()
	}
	f.stops = nil
	f.done.Wait()
}

// freshnessReport is what the replay found, over every pool.
type freshnessReport struct {
	// Largest is the largest disagreement seen (|used - licensed users| +
	// |pending - waiting users|), and LargestLasted how long that episode
	// lasted, from the write that opened it to the pool write that closed it.
	Largest       int
	LargestLasted time.Duration
	// Longest is the longest disagreement of any size.
	Longest time.Duration
	// FullShownEmpty is the longest time a pool showed used 0 while its users
	// showed every license taken.
	FullShownEmpty time.Duration
	// SettleLag is the largest time from a pool's last user write to the
	// pool write that agreed with it, and StaleAfterSettle the pool writes
	// in between that did not agree (the bound allows none).
	SettleLag        time.Duration
	StaleAfterSettle int
	// Disagreeing names the pools that disagree at the end.
	Disagreeing []string
	// WatchErrors are what the watches reported instead of objects.
	WatchErrors []string
}

func (r freshnessReport) String() string {
	return fmt.Sprintf("largest disagreement %d users for %s; longest disagreement %s; full pool shown empty for at most %s; "+
		"last user write to agreeing pool write at most %s, with %d disagreeing pool writes between",
		r.Largest, r.LargestLasted.Round(time.Millisecond), r.Longest.Round(time.Millisecond), r.FullShownEmpty.Round(time.Millisecond),
		r.SettleLag.Round(time.Millisecond), r.StaleAfterSettle)
}

type userView struct {
	pool              string
	licensed, waiting bool
}

func viewOf(u *v1.PlatformUser) userView {
	c := meta.FindStatusCondition(u.Status.Conditions, v1.LicensedCondition)
	switch {
	case c == nil:
		return userView{}
	case c.Status == "True":
		return userView{pool: u.Status.LicensePool, licensed: true}
	case c.Reason == v1.ReasonLicensePoolExhausted:
		return userView{pool: u.PoolName(), waiting: true}
	}
	return userView{}
}

type poolView struct {
	status            v1.LicenseCounts
	seen              bool
	licensed, waiting int
	// the open disagreement and the open "full shown empty" episode
	since, emptySince time.Time
	largestOpen       int
	// the last user write and whether a pool write agreed since
	lastUser        time.Time
	lastUserRV      uint64
	agreedAfterUser bool
	staleAfterUser  int
	lag             time.Duration
}

func (p *poolView) off() int {
	return abs(int(p.status.Used)-p.licensed) + abs(int(p.status.Pending)-p.waiting)
}

func abs(n int) int { return max(n, -n) }

// report replays what the watches saw, in resourceVersion order.
func (f *poolFreshness) report() freshnessReport {
	f.mu.Lock()
	events := slices.Clone(f.events)
	r := freshnessReport{WatchErrors: slices.Clone(f.errors)}
	f.mu.Unlock()
	slices.SortStableFunc(events, func(a, b freshnessEvent) int { return cmp.Compare(a.rv, b.rv) })
	users := map[string]userView{}
	pools := map[string]*poolView{}
	poolOf := func(name string) *poolView {
		if pools[name] == nil {
			pools[name] = &poolView{}
		}
		return pools[name]
	}
	// after closes or opens the episodes of pool p once event at changed it.
	after := func(p *poolView, at time.Time) {
		off := p.off()
		switch {
		case off > 0 && p.since.IsZero():
			p.since, p.largestOpen = at, off
		case off > 0:
			p.largestOpen = max(p.largestOpen, off)
		case off == 0 && !p.since.IsZero():
			lasted := at.Sub(p.since)
			r.Longest = max(r.Longest, lasted)
			if p.largestOpen > r.Largest || p.largestOpen == r.Largest && lasted > r.LargestLasted {
				r.Largest, r.LargestLasted = p.largestOpen, lasted
			}
			p.since = time.Time{}
		}
		shownEmpty := p.seen && p.status.Capacity > 0 && p.licensed >= int(p.status.Capacity) && p.status.Used == 0
		switch {
		case shownEmpty && p.emptySince.IsZero():
			p.emptySince = at
		case !shownEmpty && !p.emptySince.IsZero():
			r.FullShownEmpty = max(r.FullShownEmpty, at.Sub(p.emptySince))
			p.emptySince = time.Time{}
		}
	}
	for _, e := range events {
		if e.user != nil {
			old := users[e.user.Name]
			now := userView{}
			if !e.deleted {
				now = viewOf(e.user)
			}
			if old == now {
				continue
			}
			users[e.user.Name] = now
			for _, change := range []struct {
				v userView
				d int
			}{{old, -1}, {now, +1}} {
				if change.v.pool == "" {
					continue
				}
				p := poolOf(change.v.pool)
				if change.v.licensed {
					p.licensed += change.d
				}
				if change.v.waiting {
					p.waiting += change.d
				}
				p.lastUser, p.lastUserRV, p.agreedAfterUser, p.staleAfterUser = e.at, e.rv, false, 0
				after(p, e.at)
			}
			continue
		}
		p := poolOf(e.pool.Name)
		p.status, p.seen = e.pool.Status.LicenseCounts, !e.deleted
		if !p.lastUser.IsZero() && !p.agreedAfterUser {
			if p.off() == 0 {
				p.agreedAfterUser, p.lag = true, e.at.Sub(p.lastUser)
			} else {
				p.staleAfterUser++
			}
		}
		after(p, e.at)
	}
	for name, p := range pools {
		if !p.seen {
			continue
		}
		if p.off() != 0 {
			r.Disagreeing = append(r.Disagreeing, fmt.Sprintf("%s (used %d, licensed users %d, pending %d, waiting users %d)",
				name, p.status.Used, p.licensed, p.status.Pending, p.waiting))
		}
		r.SettleLag = max(r.SettleLag, p.lag)
		r.StaleAfterSettle = max(r.StaleAfterSettle, p.staleAfterUser)
	}
	slices.Sort(r.Disagreeing)
	return r
}

// changesSince describes, for at most n objects written after since, what
// their last write changed in their status: what a storm rewrites.
func (f *poolFreshness) changesSince(since time.Time, n int) []string {
	f.mu.Lock()
	events := slices.Clone(f.events)
	f.mu.Unlock()
	slices.SortStableFunc(events, func(a, b freshnessEvent) int { return cmp.Compare(a.rv, b.rv) })
	last := map[string]any{}
	var out []string
	for _, e := range events {
		var key string
		var st any
		if e.user != nil {
			key, st = "PlatformUser/"+e.user.Name, e.user.Status
		} else {
			key, st = "LicensePool/"+e.pool.Name, e.pool.Status
		}
		prev, seen := last[key]
		last[key] = st
		if !seen || e.at.Before(since) || len(out) >= n {
			continue
		}
		out = append(out, fmt.Sprintf("%s at %s: %s", key, e.at.Format("15:04:05.000"), statusDiff(prev, st)))
	}
	return out
}

// statusDiff prints the JSON fields of two statuses that differ.
func statusDiff(a, b any) string {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	var ma, mb map[string]any
	_ = json.Unmarshal(ja, &ma)
	_ = json.Unmarshal(jb, &mb)
	var diffs []string
	for _, k := range slices.Sorted(maps.Keys(mb)) {
		if !reflect.DeepEqual(ma[k], mb[k]) {
			diffs = append(diffs, fmt.Sprintf("%s: %v → %v", k, ma[k], mb[k]))
		}
	}
	for k := range ma {
		if _, ok := mb[k]; !ok {
			diffs = append(diffs, fmt.Sprintf("%s: %v → (none)", k, ma[k]))
		}
	}
	if len(diffs) == 0 {
		return "no status change (metadata or spec only)"
	}
	return strings.Join(diffs, "; ")
}
