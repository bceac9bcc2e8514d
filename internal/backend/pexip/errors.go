package pexip

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"unicode/utf8"

	"visio.dev/operator/internal/pins"
)

// ErrUnauthorized is wrapped by errors for HTTP 401 and 403: retrying does not
// help, the credentials or the account's permissions must be fixed.
var ErrUnauthorized = errors.New("pexip management API refused the credentials")

// errOutcomeUnknown marks a failed POST that may or may not have been applied
// (timeout, lost connection, 5xx after the request was sent). It must not be
// retried blindly: the caller looks for the object first.
var errOutcomeUnknown = errors.New("the request may or may not have been applied")

// APIError is an unexpected HTTP answer from the management API.
type APIError struct {
	Method     string
	Path       string
	StatusCode int
	// Body is the response body, truncated, with PIN values removed.
	Body string
}

func (e *APIError) Error() string {
	switch e.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Sprintf("pexip: %s %s: HTTP 401: authentication failed, check the management API username and password", e.Method, e.Path)
	case http.StatusForbidden:
		return fmt.Sprintf("pexip: %s %s: HTTP 403: the management API account is not allowed to do this", e.Method, e.Path)
	case http.StatusTooManyRequests:
		return fmt.Sprintf("pexip: %s %s: HTTP 429: rate limited", e.Method, e.Path)
	}
	msg := fmt.Sprintf("pexip: %s %s: HTTP %d", e.Method, e.Path, e.StatusCode)
	if e.Body != "" {
		msg += ": " + e.Body
	}
	return msg
}

func (e *APIError) Unwrap() error {
	if e.StatusCode == http.StatusUnauthorized || e.StatusCode == http.StatusForbidden {
		return ErrUnauthorized
	}
	return nil
}

const (
	redacted        = "[redacted]"
	maxErrorBodyLen = 512
)

var secretFields = map[string]bool{"pin": true, "guest_pin": true}

// pinPair catches PIN fields in bodies that are not valid JSON (truncated
// answers, HTML error pages quoting the request).
var pinPair = regexp.MustCompile(`("(?:guest_)?pin"\s*:\s*)("(?:[^"\\]|\\.)*"|[^,}\s]+)`)

// redactBody prepares a response body for an error message: PIN fields are
// blanked whatever they hold (validation messages may quote the value), the
// PINs of the request are removed wherever else they appear, and the result
// is truncated.
func redactBody(body []byte, secrets []string) string {
	var s string
	var v any
	if json.Unmarshal(body, &v) == nil {
		b, err := json.Marshal(redactJSON(v))
		if err != nil {
			return redacted
		}
		s = string(b)
	} else {
		s = pinPair.ReplaceAllString(string(body), `$1"`+redacted+`"`)
	}
	s = scrub(s, secrets)
	s = strings.TrimSpace(s)
	if len(s) > maxErrorBodyLen {
		cut := maxErrorBodyLen
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

func redactJSON(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, child := range t {
			if secretFields[strings.ToLower(k)] {
				t[k] = redacted
				continue
			}
			t[k] = redactJSON(child)
		}
	case []any:
		for i, child := range t {
			t[i] = redactJSON(child)
		}
	}
	return v
}

// scrub removes the secrets from s, with the whole number each is part of.
func scrub(s string, secrets []string) string { return pins.Redact(s, secrets...) }
