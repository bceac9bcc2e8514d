package capabilities

import (
	"slices"
	"testing"

	v1 "visio.dev/operator/api/v1alpha1"
)

func TestFor(t *testing.T) {
	meetings := []v1.Capability{"ScheduleMeetings", "ManageContacts", "RecordMeetings", "StreamMeetings"}
	cases := []struct {
		role     v1.PlatformUserRole
		licensed bool
		want     []v1.Capability
	}{
		{v1.RoleUser, true, meetings},
		{v1.RoleUser, false, []v1.Capability{}},
		{v1.RoleDelegatedOrganizer, true, append(slices.Clone(meetings), "ScheduleOnBehalfInEntity")},
		{v1.RoleDelegatedOrganizer, false, []v1.Capability{}},
		{v1.RoleAdministrator, true, append(slices.Clone(meetings), "ScheduleOnBehalfInEntity", "ManageEntityUsers", "ViewEntityStatistics", "RequestLicenses")},
		// Seed 000: a deactivated administrator keeps administering.
		{v1.RoleAdministrator, false, []v1.Capability{"ManageEntityUsers", "ViewEntityStatistics", "RequestLicenses"}},
		{v1.RoleConcierge, true, append(slices.Clone(meetings), "ScheduleOnBehalfInEntity", "ManageEntityUsers", "ViewEntityStatistics", "RequestLicenses",
			"ManagePermanentVMRs", "ViewAllEntities", "ViewAllStatistics", "ScheduleOnBehalfOnPlatform", "DecideLicenseRequests")},
		{v1.RoleConcierge, false, []v1.Capability{"ManageEntityUsers", "ViewEntityStatistics", "RequestLicenses",
			"ManagePermanentVMRs", "ViewAllEntities", "ViewAllStatistics", "DecideLicenseRequests"}},
		{"Unknown", true, []v1.Capability{}},
	}
	for _, c := range cases {
		got := For(c.role, c.licensed)
		if !slices.Equal(got, c.want) {
			t.Errorf("For(%s, licensed=%v) = %v, want %v", c.role, c.licensed, got, c.want)
		}
	}
}

func TestAtLeast(t *testing.T) {
	if !AtLeast(v1.RoleConcierge, v1.RoleAdministrator) || AtLeast(v1.RoleAdministrator, v1.RoleConcierge) {
		t.Fatal("Concierge must include Administrator and not the reverse")
	}
	if AtLeast("Unknown", v1.RoleUser) {
		t.Fatal("an unknown role has no rights")
	}
}
