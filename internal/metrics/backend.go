package metrics

import (
	"context"
	"errors"
	"net"
	"strconv"

	"visio.dev/operator/internal/backend"
)

// Operations of the room backend, the values of the operation label: the
// Backend call a request was sent for. OpListTagged is the sweep's listing of
// the rooms by key; its removals are OpDelete.
const (
	OpFind       = "find"
	OpGet        = "get"
	OpCreate     = "create"
	OpUpdate     = "update"
	OpDelete     = "delete"
	OpRelease    = "release"
	OpListTagged = "list_tagged"
)

// Operations lists every value of the operation label but OpOther.
var Operations = []string{OpFind, OpGet, OpCreate, OpUpdate, OpDelete, OpRelease, OpListTagged}

// OpOther counts a request sent outside any Backend call: none should be.
const OpOther = "other"

type operationKey struct{}

// WithOperation marks ctx as serving the Backend call op, so that each HTTP
// request sent under it is counted under that operation.
func WithOperation(ctx context.Context, op string) context.Context {
	return context.WithValue(ctx, operationKey{}, op)
}

func operationOf(ctx context.Context) string {
	if op, ok := ctx.Value(operationKey{}).(string); ok {
		return op
	}
	return OpOther
}

// BackendHTTPRequest counts one HTTP request the named backend's client sent:
// status is the answer's HTTP status when err is nil.
func BackendHTTPRequest(ctx context.Context, backendName string, status int, err error) {
	code := strconv.Itoa(status)
	if err != nil {
		code = failureCode(err)
	}
	backendRequests.WithLabelValues(backendName, operationOf(ctx), code).Inc()
}

// BackendCall counts one call to a backend that answers without HTTP (the
// embedded one): ok, not_found, timeout or error.
func BackendCall(backendName, op string, err error) {
	code := CodeOK
	switch {
	case err == nil:
	case errors.Is(err, backend.ErrNotFound):
		code = CodeMissing
	default:
		code = failureCode(err)
	}
	backendRequests.WithLabelValues(backendName, op, code).Inc()
}

// failureCode tells a request that got no answer in time from one that got
// none at all.
func failureCode(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return CodeTimeout
	}
	if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
		return CodeTimeout
	}
	return CodeError
}
