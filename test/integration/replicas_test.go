package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"visio.dev/operator/internal/index"
	"visio.dev/operator/internal/operator"
	"visio.dev/operator/internal/webhook"
)

// withWebhookReplicas replaces the shared manager, for the rest of the test,
// by two replicas as a Deployment of two runs them: the leader (controllers
// and webhooks) and a second replica that serves the webhooks only, as a
// replica that is not the leader does. The API server reaches them through a
// proxy that spreads its connections over both, so concurrent admissions are
// answered by both replicas at once. restart stops and starts the leader;
// connections tells how many admission requests each replica was given.
func withWebhookReplicas(t testing.TB, counter *writeCounter, change func(*operator.Options)) (restart func(), connections func() [2]int64) {
	t.Helper()
	opts := testOptions()
	change(&opts)
	ports := [2]int{freePort(t), freePort(t)}
	stopSharedManager()
	stopShared = startManagerOn(counter, opts, ports[0])
	stopReplica := startWebhookReplica(counter, opts, ports[1])
	wo := testEnv.WebhookInstallOptions
	proxy, err := startProxy(fmt.Sprintf("%s:%d", wo.LocalServingHost, wo.LocalServingPort), wo.LocalServingHost, ports)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		proxy.close()
		stopReplica()
		stopSharedManager()
		startSharedManager()
	})
	restart = func() {
		stopSharedManager()
		stopShared = startManagerOn(counter, opts, ports[0])
	}
	return restart, func() [2]int64 { return [2]int64{proxy.conns[0].Load(), proxy.conns[1].Load()} }
}

// startWebhookReplica runs a manager that serves the admission webhooks only.
func startWebhookReplica(counter *writeCounter, opts operator.Options, port int) (stop func()) {
	mgr := newTestManager(counter, port)
	ctx, cancel := context.WithCancel(context.Background())
	if err := index.Setup(ctx, mgr.GetFieldIndexer()); err != nil {
		panic(err)
	}
	if err := webhook.Setup(mgr, opts.WebhookOptions()); err != nil {
		panic(err)
	}
	return runTestManager(ctx, cancel, mgr, port)
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().(*net.TCPAddr).Port
}

// replicaProxy terminates the API server's TLS connections with the webhook
// certificate and hands each request to the next replica in turn, so that
// concurrent admissions are answered by both even over one HTTP/2 connection.
type replicaProxy struct {
	srv   *http.Server
	conns [2]atomic.Int64 // requests per replica
}

func startProxy(addr, host string, ports [2]int) (*replicaProxy, error) {
	wo := testEnv.WebhookInstallOptions
	cert, err := tls.LoadX509KeyPair(filepath.Join(wo.LocalServingCertDir, "tls.crt"), filepath.Join(wo.LocalServingCertDir, "tls.key"))
	if err != nil {
		return nil, fmt.Errorf("cannot load the webhook certificate: %w", err)
	}
	ln, err := tls.Listen("tcp", addr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	if err != nil {
		return nil, fmt.Errorf("cannot listen on the webhook address: %w", err)
	}
	p := &replicaProxy{}
	var next atomic.Uint64
	transport := &http.Transport{TLSClientConfig: insecureTLS(), MaxIdleConnsPerHost: 256}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			i := next.Add(1) % 2
			p.conns[i].Add(1)
			r.SetURL(&url.URL{Scheme: "https", Host: fmt.Sprintf("%s:%d", host, ports[i])})
		},
		Transport: transport,
	}
	p.srv = &http.Server{Handler: proxy, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

func (p *replicaProxy) close() {
	_ = p.srv.Close()
}
