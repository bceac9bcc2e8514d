package pexip

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"visio.dev/operator/internal/metrics"
)

// maxResponseBytes bounds what one answer may make us hold in memory.
const maxResponseBytes = 8 << 20

// call is one logical API request; do may send it several times.
type call struct {
	method string
	path   string
	query  url.Values
	body   any
	// secrets are removed from any error text built from this call.
	secrets []string
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends c and retries what is safe to retry. GET, PATCH (absolute values)
// and DELETE are retried on timeouts, transport errors, 429 and 5xx. POST is
// retried only on 429, which means the request was refused unprocessed; any
// other failure after sending comes back wrapping errOutcomeUnknown so that
// the caller looks the object up before posting again.
//
// Every answer other than 429 and 5xx is returned to the caller, which knows
// what 404 or 400 mean for the request.
func (c *Client) do(ctx context.Context, cl call) (*response, error) {
	var payload []byte
	if cl.body != nil {
		var err error
		if payload, err = json.Marshal(cl.body); err != nil {
			return nil, fmt.Errorf("pexip: encoding %s %s: %w", cl.method, cl.path, err)
		}
	}
	target := c.endpoint(cl.path, cl.query)
	for attempt := 0; ; attempt++ {
		resp, err := c.attempt(ctx, cl.method, target, payload)
		var lastErr error
		var wait time.Duration
		waitSet := false
		switch {
		case errors.As(err, new(*redirectError)):
			// Not followed, not retried: the URL is wrong, and a POST
			// redirected was not applied.
			return nil, fmt.Errorf("pexip: %s %s: %w", cl.method, cl.path, err)
		case err != nil:
			if ctx.Err() != nil {
				return nil, fmt.Errorf("pexip: %s %s: %w", cl.method, cl.path, context.Cause(ctx))
			}
			if errors.Is(err, context.DeadlineExceeded) {
				err = fmt.Errorf("no answer within %s", c.timeout)
			} else if ue, ok := errors.AsType[*url.Error](err); ok {
				err = ue.Err // the URL is already in the message
			}
			lastErr = fmt.Errorf("pexip: %s %s: %w", cl.method, cl.path, err)
			if cl.method == http.MethodPost {
				return nil, fmt.Errorf("%w (%w)", lastErr, errOutcomeUnknown)
			}
		case resp.status == http.StatusTooManyRequests:
			lastErr = c.apiError(cl, resp)
			wait, waitSet = c.retryAfter(resp.header)
		case resp.status >= 500:
			lastErr = c.apiError(cl, resp)
			if cl.method == http.MethodPost {
				return nil, fmt.Errorf("%w (%w)", lastErr, errOutcomeUnknown)
			}
		default:
			return resp, nil
		}
		if attempt >= c.maxRetries {
			return nil, fmt.Errorf("%w (gave up after %d attempts)", lastErr, attempt+1)
		}
		if !waitSet {
			wait = c.backoff(attempt)
		}
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("%w (retry interrupted: %w)", lastErr, err)
		}
	}
}

// attempt sends one HTTP request under its own timeout, reading the whole
// body before the timeout ends so that a stalled body counts as a timeout.
func (c *Client) attempt(ctx context.Context, method, target string, payload []byte) (*response, error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if payload != nil {
		body = bytes.NewReader(payload)
	}
	req, err := http.NewRequestWithContext(actx, method, target, body)
	if err != nil {
		return nil, err
	}
	user, pass, err := c.creds.get()
	if err != nil {
		return nil, err
	}
	req.SetBasicAuth(user, pass)
	req.Header.Set("Accept", "application/json")
	if payload != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		metrics.BackendHTTPRequest(ctx, c.Name(), 0, err)
		return nil, err
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		return nil, &redirectError{status: resp.StatusCode, location: resp.Header.Get("Location")}
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	metrics.BackendHTTPRequest(ctx, c.Name(), resp.StatusCode, err)
	if err != nil {
		return nil, err
	}
	return &response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// redirectError is a redirect the client refuses to follow.
type redirectError struct {
	status   int
	location string
}

func (e *redirectError) Error() string {
	return fmt.Sprintf("HTTP %d: the management node redirects to %q; redirects are not followed (a POST must not become a GET, credentials must not go elsewhere): set the Pexip URL to the address it redirects to",
		e.status, e.location)
}

func (c *Client) endpoint(path string, query url.Values) string {
	u := *c.base
	u.Path = c.basePath + path
	u.RawPath = ""
	u.RawQuery = query.Encode()
	return u.String()
}

func (c *Client) apiError(cl call, resp *response) *APIError {
	return &APIError{
		Method:     cl.method,
		Path:       cl.path,
		StatusCode: resp.status,
		Body:       redactBody(resp.body, cl.secrets),
	}
}

// backoff is exponential with jitter (half fixed, half random), so that many
// rooms failing together do not retry in lockstep.
func (c *Client) backoff(attempt int) time.Duration {
	d := c.maxDelay
	if attempt < 30 {
		if e := c.baseDelay << attempt; e > 0 && e < d {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}

// retryAfter honours the server's Retry-After (seconds or HTTP date), capped
// so that a long server hint cannot stall a reconcile; the caller's context
// and the retry budget still decide when to give up.
func (c *Client) retryAfter(h http.Header) (time.Duration, bool) {
	v := h.Get("Retry-After")
	if v == "" {
		return 0, false
	}
	var d time.Duration
	if secs, err := strconv.Atoi(v); err == nil {
		d = time.Duration(secs) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = time.Until(t)
	} else {
		return 0, false
	}
	return min(max(d, 0), c.maxDelay), true
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
