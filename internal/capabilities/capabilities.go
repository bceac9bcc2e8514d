// Package capabilities derives what a user can do from its role and license,
// following the platform's role table: roles are cumulative, and the meeting
// capabilities of every role need a named license while the administrative ones
// do not (an administrator who plans no meetings deactivates himself and keeps
// administering without using a license).
package capabilities

import v1 "visio.dev/operator/api/v1alpha1"

// meeting capabilities need a license: they use the platform's conferencing.
var (
	userMeetings = []v1.Capability{
		v1.CapabilityScheduleMeetings,
		v1.CapabilityManageContacts,
		v1.CapabilityRecordMeetings,
		v1.CapabilityStreamMeetings,
	}
	delegatedMeetings = []v1.Capability{v1.CapabilityScheduleOnBehalfInEntity}
	conciergeMeetings = []v1.Capability{v1.CapabilityScheduleOnBehalfOnPlatform}

	administration = []v1.Capability{v1.CapabilityManageEntityUsers, v1.CapabilityViewEntityStatistics, v1.CapabilityRequestLicenses}
	concierge      = []v1.Capability{v1.CapabilityManagePermanentVMRs, v1.CapabilityViewAllEntities, v1.CapabilityViewAllStatistics}
	// conciergeDecisions come last in the role table, after the meeting one.
	conciergeDecisions = []v1.Capability{v1.CapabilityDecideLicenseRequests}
)

// level orders the roles; an unknown role has none of the capabilities.
func level(r v1.PlatformUserRole) int {
	switch r {
	case v1.RoleUser, "":
		return 1
	case v1.RoleDelegatedOrganizer:
		return 2
	case v1.RoleAdministrator:
		return 3
	case v1.RoleConcierge:
		return 4
	}
	return 0
}

// AtLeast reports whether role r includes the rights of role min.
func AtLeast(r, min v1.PlatformUserRole) bool { return level(r) >= level(min) && level(r) > 0 }

// For returns the capabilities of a user with role r, licensed or not, in the
// order of the role table. The result is a new slice.
func For(r v1.PlatformUserRole, licensed bool) []v1.Capability {
	l := level(r)
	out := make([]v1.Capability, 0, 13)
	if licensed && l >= 1 {
		out = append(out, userMeetings...)
		if l >= 2 {
			out = append(out, delegatedMeetings...)
		}
	}
	if l >= 3 {
		out = append(out, administration...)
	}
	if l >= 4 {
		out = append(out, concierge...)
		if licensed {
			out = append(out, conciergeMeetings...)
		}
		out = append(out, conciergeDecisions...)
	}
	return out
}
