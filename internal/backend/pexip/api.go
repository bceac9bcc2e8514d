package pexip

import (
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"visio.dev/operator/internal/backend"
)

const (
	apiPrefix      = "/api/admin/configuration/v1/"
	conferencePath = apiPrefix + "conference/"
	aliasPath      = apiPrefix + "conference_alias/"

	serviceTypeConference = "conference"

	// listPageSize keeps lookups to one request in the normal case; the
	// server may cap it, and listing follows meta.next either way.
	listPageSize = 100
)

// conference is the subset of a Pexip conference object the operator uses.
type conference struct {
	ID               int               `json:"id"`
	Name             string            `json:"name"`
	Description      string            `json:"description"`
	ServiceType      string            `json:"service_type"`
	PIN              string            `json:"pin"`
	GuestPIN         string            `json:"guest_pin"`
	AllowGuests      bool              `json:"allow_guests"`
	ParticipantLimit *int              `json:"participant_limit"`
	Tag              string            `json:"tag"`
	Aliases          []conferenceAlias `json:"aliases"`
	ResourceURI      string            `json:"resource_uri"`
}

type conferenceAlias struct {
	ID          int    `json:"id"`
	Alias       string `json:"alias"`
	Conference  string `json:"conference"`
	Description string `json:"description"`
}

// conferenceCreate is a POST body; every field is sent so that platform
// defaults never decide how a room behaves.
type conferenceCreate struct {
	Name             string `json:"name"`
	Description      string `json:"description"`
	ServiceType      string `json:"service_type"`
	PIN              string `json:"pin"`
	GuestPIN         string `json:"guest_pin"`
	AllowGuests      bool   `json:"allow_guests"`
	ParticipantLimit *int   `json:"participant_limit"`
	Tag              string `json:"tag"`
	// Aliases are created with the conference, in the same request: the
	// node refuses the whole create when one of them is taken, so a room
	// is never half there.
	Aliases []inlineAlias `json:"aliases"`
}

type inlineAlias struct {
	Alias string `json:"alias"`
}

type aliasCreate struct {
	Alias       string `json:"alias"`
	Conference  string `json:"conference"`
	Description string `json:"description"`
}

type listMeta struct {
	Limit      int     `json:"limit"`
	Offset     int     `json:"offset"`
	TotalCount int     `json:"total_count"`
	Next       *string `json:"next"`
}

type listPage[T any] struct {
	Meta    listMeta `json:"meta"`
	Objects []T      `json:"objects"`
}

func conferenceURI(id int) string {
	return conferencePath + strconv.Itoa(id) + "/"
}

// idFromURI extracts the object id from a resource URI or Location header,
// which Pexip may give as an absolute URL or as a path.
func idFromURI(uri, collection string) (int, bool) {
	u, err := url.Parse(uri)
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(u.Path, collection)
	if !ok {
		// A base URL with a path prefix (reverse proxy) puts it in front.
		i := strings.LastIndex(u.Path, collection)
		if i < 0 {
			return 0, false
		}
		rest = u.Path[i+len(collection):]
	}
	id, err := strconv.Atoi(strings.TrimSuffix(rest, "/"))
	if err != nil || id <= 0 {
		return 0, false
	}
	return id, true
}

// parseRef reads a conference id. A reference that is not one was made by
// another backend (the operator switched from the embedded one): it names no
// room here, and the error wraps backend.ErrNotFound so that the caller
// creates the room in Pexip, as the embedded backend does the other way round.
func parseRef(ref string) (int, error) {
	id, err := strconv.Atoi(ref)
	if err != nil || id <= 0 || strconv.Itoa(id) != ref {
		return 0, fmt.Errorf("pexip: room reference %q is not a conference id: %w", ref, backend.ErrNotFound)
	}
	return id, nil
}

func validateRoom(room backend.Room) error {
	if room.Key == "" {
		return fmt.Errorf("pexip: room %q has no key", room.Name)
	}
	if room.Name == "" {
		return fmt.Errorf("pexip: room with key %q has no name", room.Key)
	}
	return nil
}

func roomFromConference(c conference) *backend.Room {
	r := &backend.Room{
		Key:         c.Tag,
		Name:        c.Name,
		Description: c.Description,
		HostPIN:     c.PIN,
		GuestPIN:    c.GuestPIN,
		AllowGuests: c.AllowGuests,
	}
	if c.ParticipantLimit != nil {
		v := int32(*c.ParticipantLimit)
		r.ParticipantLimit = &v
	}
	// Every alias is a dial string; which one is the numeric id is the
	// operator's business, not something stored where users see it (the
	// alias description shows in directory search).
	for _, a := range c.Aliases {
		r.Aliases = append(r.Aliases, a.Alias)
	}
	slices.Sort(r.Aliases)
	r.Aliases = slices.Compact(r.Aliases)
	return r
}

// conferencePatch lists only the fields that differ, so that an unchanged
// room costs no write and concurrent edits of other fields are not undone.
// wantTag is want.Key as this installation tags it.
func conferencePatch(cur conference, want backend.Room, wantTag string) map[string]any {
	p := map[string]any{}
	if want.Name != cur.Name {
		p["name"] = want.Name
	}
	if want.Description != cur.Description {
		p["description"] = want.Description
	}
	// An empty service type means this Pexip version does not report it;
	// patching it would be a write on every update.
	if cur.ServiceType != "" && cur.ServiceType != serviceTypeConference {
		p["service_type"] = serviceTypeConference
	}
	if want.HostPIN != cur.PIN {
		p["pin"] = want.HostPIN
	}
	if want.GuestPIN != cur.GuestPIN {
		p["guest_pin"] = want.GuestPIN
	}
	if want.AllowGuests != cur.AllowGuests {
		p["allow_guests"] = want.AllowGuests
	}
	if wantTag != "" && wantTag != cur.Tag {
		p["tag"] = wantTag
	}
	if !sameLimit(cur.ParticipantLimit, want.ParticipantLimit) {
		if want.ParticipantLimit == nil {
			p["participant_limit"] = nil
		} else {
			p["participant_limit"] = int(*want.ParticipantLimit)
		}
	}
	return p
}

func sameLimit(cur *int, want *int32) bool {
	if cur == nil || want == nil {
		return cur == nil && want == nil
	}
	return *cur == int(*want)
}

// createBody is the create of room, tagged tag.
func createBody(room backend.Room, tag string) conferenceCreate {
	body := conferenceCreate{
		Name:        room.Name,
		Description: room.Description,
		ServiceType: serviceTypeConference,
		PIN:         room.HostPIN,
		GuestPIN:    room.GuestPIN,
		AllowGuests: room.AllowGuests,
		Tag:         tag,
		Aliases:     []inlineAlias{},
	}
	if room.ParticipantLimit != nil {
		v := int(*room.ParticipantLimit)
		body.ParticipantLimit = &v
	}
	for _, a := range room.DialStrings() {
		body.Aliases = append(body.Aliases, inlineAlias{Alias: a})
	}
	return body
}

// alreadyExists reports whether a 400 body says field of resource must be
// unique, in the shape {"<resource>": {"<field>": ["... already exists."]}}.
func alreadyExists(body []byte, resource, field string) bool {
	var byResource map[string]map[string][]string
	if json.Unmarshal(body, &byResource) == nil {
		if existsMessage(byResource[resource][field]) {
			return true
		}
	}
	var byField map[string][]string
	if json.Unmarshal(body, &byField) == nil {
		return existsMessage(byField[field])
	}
	return false
}

// aliasTakenBody reports whether a 400 answer to a conference create says
// one of its inline aliases is taken, in whichever shape the node nests it.
func aliasTakenBody(body []byte) bool {
	if alreadyExists(body, "conference_alias", "alias") {
		return true
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return false
	}
	return mentionsTakenAlias(v, false)
}

func mentionsTakenAlias(v any, underAlias bool) bool {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if mentionsTakenAlias(child, underAlias || strings.Contains(strings.ToLower(k), "alias")) {
				return true
			}
		}
	case []any:
		for _, child := range t {
			if mentionsTakenAlias(child, underAlias) {
				return true
			}
		}
	case string:
		return underAlias && strings.Contains(strings.ToLower(t), "already exists")
	}
	return false
}

func existsMessage(msgs []string) bool {
	for _, m := range msgs {
		if strings.Contains(strings.ToLower(m), "already exists") {
			return true
		}
	}
	return false
}
