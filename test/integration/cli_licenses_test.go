package integration

import (
	"regexp"
	"testing"
	"time"

	. "github.com/onsi/gomega"

	v1 "visio.dev/operator/api/v1alpha1"
	"visio.dev/operator/internal/visioctl"
)

// TestCLILicenseRequests: the whole flow from the command line against the
// real API server. An Administrator asks for licenses, the report shows them
// requested, a Concierge lists every entity's requests and approves, the
// pool's capacity grows and its waiting users are licensed; a second
// decision is refused with the one that stands, and an Administrator cannot
// decide. A second request is denied with a message.
func TestCLILicenseRequests(t *testing.T) {
	g := NewWithT(t)
	f := newRequestFixture(t, g, 1, v1.EnforcementQueue)
	for _, name := range []string{"ana", "bob", "chloe"} {
		g.Expect(k8s.Create(ctx(), newUser(f.ns, name, true))).To(Succeed())
		time.Sleep(1100 * time.Millisecond)
	}
	settle(g, f.ns, v1.DefaultLicensePool, 1, 2)
	asAdmin := []string{"--as", f.adminName, "--as-group", "system:authenticated"}
	asConcierge := []string{"--as", f.deciderID, "--as-group", "system:authenticated"}

	r := visio(g, nil, append(asAdmin, "licenses", "request", "--licenses", "0", "--reason", "", "-n", f.ns)...)
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.errOut).To(ContainSubstring("--licenses: must be between 1 and 10000, not 0"))
	g.Expect(r.errOut).To(ContainSubstring("--reason: required"))

	r = visio(g, nil, append(asAdmin, "licenses", "request", "--licenses", "2", "--reason", "two new teachers", "--duration", "2160h", "-n", f.ns)...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	m := regexp.MustCompile(`^licenserequest/(default-\w+) created: 2 licenses for license pool "default", awaiting a decision\n$`).FindStringSubmatch(r.out)
	g.Expect(m).To(HaveLen(2), "%s", r)
	name := m[1]
	poolCounts(g, f.ns, 1, 2)

	g.Eventually(func(g Gomega) {
		r := visio(g, nil, append(asAdmin, "report", "-n", f.ns, "-o", "json")...)
		g.Expect(r.code).To(Equal(0), "%s", r)
		var rows []visioctl.EntityReport
		g.Expect(jsonUnmarshal(r.out, &rows)).To(Succeed())
		g.Expect(rows).To(HaveLen(1))
		g.Expect(rows[0].Requested).To(Equal(int32(2)))
	}).WithTimeout(30 * time.Second).Should(Succeed())

	r = visio(g, nil, append(asAdmin, "licenses", "approve", name, "-n", f.ns)...)
	g.Expect(r.code).To(Equal(1), "an Administrator may not decide: %s", r)
	g.Expect(r.errOut).To(ContainSubstring("forbidden"))

	r = visio(g, nil, append(asConcierge, "licenses", "list", "-A")...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.out).To(MatchRegexp(`(?m)^NAMESPACE\s+NAME\s+POOL\s+LICENSES\s+DURATION\s+DECISION\s+BY\s+EXPIRES\s+AGE\s+STATUS$`))
	g.Expect(r.out).To(MatchRegexp(`(?m)^` + f.ns + `\s+` + name + `\s+default\s+2\s+2160h0m0s\s+Awaiting\s+-\s+-\s+`))

	r = visio(g, nil, append(asConcierge, "licenses", "approve", name, "-n", f.ns, "--message", "ok for the school year")...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.out).To(Equal("licenserequest/" + name + " approved by " + f.deciderID + ": 2 licenses for license pool \"default\"\n"))
	requestReady(g, f.ns, name, v1.ReasonGranted)
	poolCounts(g, f.ns, 3, 0)
	settle(g, f.ns, v1.DefaultLicensePool, 3, 0)

	r = visio(g, nil, append(asConcierge, "licenses", "deny", name, "-n", f.ns)...)
	g.Expect(r.code).To(Equal(1), "%s", r)
	g.Expect(r.errOut).To(MatchRegexp(`^license request ` + name + ` was already Approved by ` + regexp.QuoteMeta(f.deciderID) + ` at \S+; a decision is final\n$`))

	time.Sleep(1100 * time.Millisecond) // the list orders by creation, to the second
	r = visio(g, nil, append(asAdmin, "licenses", "request", "--licenses", "50", "--reason", "everyone", "-n", f.ns, "-o", "json")...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	var second v1.LicenseRequest
	g.Expect(jsonUnmarshal(r.out, &second)).To(Succeed())
	r = visio(g, nil, append(asConcierge, "licenses", "deny", second.Name, "-n", f.ns, "--message", "50 is more than the entity's size")...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	lr := requestReady(g, f.ns, second.Name, v1.ReasonDenied)
	g.Expect(lr.Status.Decision.Message).To(Equal("50 is more than the entity's size"))

	// Awaiting first: none now; the newest decided first.
	r = visio(g, nil, append(asAdmin, "licenses", "list", "-n", f.ns)...)
	g.Expect(r.code).To(Equal(0), "%s", r)
	g.Expect(r.out).To(MatchRegexp(`^NAME\s+POOL.*\n` + second.Name + `\s+default\s+50\s+-\s+Denied\s+.*\n` + name + `\s+default\s+2\s+2160h0m0s\s+Approved\s+`))
}
