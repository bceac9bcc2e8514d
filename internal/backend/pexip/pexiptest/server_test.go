package pexiptest

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// do sends one request to the server and returns the status, headers and body.
func do(t *testing.T, s *Server, method, path, body string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, strings.TrimSuffix(s.URL, "/")+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("u", "p")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

const conf = "/api/admin/configuration/v1/conference/"

// The server answers as a real management node does, where the operator
// depends on it.
func TestServerIsStrict(t *testing.T) {
	s := NewServer("u", "p")
	defer s.Close()

	code, h, body := do(t, s, "POST", conf, `{"name":"A (1000)","tag":"visio-1","aliases":[{"alias":"1000"},{"alias":"1000@visio.example"}]}`)
	if code != 201 || !strings.HasPrefix(h.Get("Location"), "http://") || body != "" {
		t.Fatalf("create: %d, Location %q, body %q; want 201, an absolute Location, no body", code, h.Get("Location"), body)
	}
	if rooms := s.Rooms(); len(rooms) != 1 || len(rooms[0].Aliases) != 2 {
		t.Fatalf("inline aliases not created: %+v", rooms)
	}
	// Duplicate name, exactly as the node says it.
	code, _, body = do(t, s, "POST", conf, `{"name":"A (1000)"}`)
	if code != 400 || strings.TrimSpace(body) != `{"conference":{"name":["Virtual Meeting Room with this Name already exists."]}}` {
		t.Fatalf("duplicate name: %d %s", code, body)
	}
	// A taken inline alias refuses the whole create.
	code, _, _ = do(t, s, "POST", conf, `{"name":"B","aliases":[{"alias":"free"},{"alias":"1000"}]}`)
	if code != 400 || len(s.Rooms()) != 1 {
		t.Fatalf("create with a taken alias: %d, %d rooms; want 400 and nothing created", code, len(s.Rooms()))
	}
	for _, tc := range []struct{ body, field string }{
		{`{"name":"` + strings.Repeat("x", 251) + `"}`, "name"},
		{`{"name":"C","pin":"123"}`, "pin"},
		{`{"name":"C","pin":"123456789012345678901"}`, "pin"},
		{`{"name":"C","pin":"12345678901234567890#"}`, "pin"},
		{`{"name":"C","allow_guests":true}`, "allow_guests"},
		{`{"name":"C","guest_pin":"5678"}`, "guest_pin"},
	} {
		code, _, body := do(t, s, "POST", conf, tc.body)
		if code != 400 || !strings.Contains(body, `"`+tc.field+`"`) {
			t.Errorf("POST %.40s: %d %s; want 400 on %s", tc.body, code, body, tc.field)
		}
	}
	for _, pin := range []string{"1234", "123#", "12345678901234567890", "1234567890123456789#"} {
		code, _, body := do(t, s, "POST", conf, fmt.Sprintf(`{"name":"pin %s","pin":%q}`, pin, pin))
		if code != 201 {
			t.Errorf("PIN %q refused: %d %s", pin, code, body)
		}
	}

	id := s.Rooms()[0].ID
	one := fmt.Sprintf("%s%d/", conf, id)
	if code, _, _ := do(t, s, "PATCH", one, `{"description":"d"}`); code != 202 || s.Rooms()[0].Tag != "visio-1" {
		t.Fatalf("PATCH: %d; a partial update keeps the other fields", code)
	}
	if code, _, _ := do(t, s, "PUT", one, `{"name":"A (1000)"}`); code != 202 {
		t.Fatalf("PUT: %d", code)
	}
	if r := s.Rooms()[0]; r.Tag != "" || r.Description != "" {
		t.Fatalf("PUT is a full replace: %+v", r)
	}

	// Pagination: 20 by default, with a next link; filters.
	for i := range 25 {
		do(t, s, "POST", conf, fmt.Sprintf(`{"name":"r%d","tag":"visio-r%d"}`, i, i))
	}
	var page struct {
		Meta struct {
			Limit int     `json:"limit"`
			Next  *string `json:"next"`
		} `json:"meta"`
		Objects []map[string]any `json:"objects"`
	}
	_, _, body = do(t, s, "GET", conf, "")
	if err := json.Unmarshal([]byte(body), &page); err != nil || page.Meta.Limit != 20 || len(page.Objects) != 20 || page.Meta.Next == nil {
		t.Fatalf("first page: %v %+v", err, page.Meta)
	}
	filters := map[string]int{"tag=visio-r3": 1, "aliases__alias=1000": 1, "name=nobody": 0, "service_type=conference": 20, "nosuchfield=1": 20}
	for q, want := range filters {
		_, _, body = do(t, s, "GET", conf+"?"+q, "")
		if err := json.Unmarshal([]byte(body), &page); err != nil || len(page.Objects) != want {
			t.Errorf("filter %s: %d objects, %v; want %d", q, len(page.Objects), err, want)
		}
	}
	for q, want := range map[string]string{
		"pin=1":                   "The 'pin' field does not allow filtering.",
		"tag__startswith=visio-r": "'startswith' is not an allowed filter on the 'tag' field.",
	} {
		if code, _, body := do(t, s, "GET", conf+"?"+q, ""); code != 400 || !strings.Contains(body, want) {
			t.Errorf("filter %s: %d %s, want 400 %q", q, code, body, want)
		}
	}
	s.AllowTagPrefixFilter(true)
	_, _, body = do(t, s, "GET", conf+"?tag__startswith=visio-r1", "")
	if err := json.Unmarshal([]byte(body), &page); err != nil || len(page.Objects) != 11 {
		t.Errorf("tag__startswith=visio-r1 once allowed: %d objects, %v; want 11", len(page.Objects), err)
	}
}

// After a restore the ids handed out since are handed out again.
func TestServerRestoreReusesIDs(t *testing.T) {
	s := NewServer("u", "p")
	defer s.Close()
	backup := s.Snapshot()
	_, h, _ := do(t, s, "POST", conf, `{"name":"ours","tag":"visio-1"}`)
	s.Restore(backup)
	id := s.CreateRoomByHand("theirs")
	if !strings.HasSuffix(h.Get("Location"), fmt.Sprintf("/%d/", id)) || len(s.Rooms()) != 1 {
		t.Fatalf("Location %s, new id %d, rooms %+v", h.Get("Location"), id, s.Rooms())
	}
}

// WithListener and WithTLS serve HTTPS on a listener of the caller's, with a
// certificate a client that trusts its PEM accepts.
func TestServerOnListenerWithTLS(t *testing.T) {
	cert, caPEM, err := SelfSignedCertificate("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer("u", "p", WithListener(l), WithTLS(cert))
	defer s.Close()
	if want := "https://" + l.Addr().String() + "/"; s.URL != want {
		t.Fatalf("URL %q, want %q", s.URL, want)
	}
	if _, err := http.Get(s.URL + strings.TrimPrefix(conf, "/")); err == nil {
		t.Fatal("a client without the CA was accepted")
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	http.DefaultTransport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	defer func() { http.DefaultTransport.(*http.Transport).TLSClientConfig = nil }()
	if status, _, body := do(t, s, http.MethodGet, conf, ""); status != http.StatusOK {
		t.Fatalf("GET over TLS: %d %s", status, body)
	}
}
