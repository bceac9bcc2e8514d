# visio-operator. `make help` lists the targets.

# Tool versions, installed into ./bin from the Go module proxy.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION    ?= v2.15.0
HELM_VERSION             ?= v4.3.1

# Tools and the manager binary. The versioned tools are built once from the Go
# module proxy and kept outside the clone, like the control-plane binaries, so a
# fresh clone (and CI) reuses them.
TOOLS_CACHE     ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/visio-operator/tools
LOCALBIN        ?= $(CURDIR)/bin
CONTROLLER_GEN  ?= $(TOOLS_CACHE)/controller-gen-$(CONTROLLER_TOOLS_VERSION)
GOLANGCI_LINT   ?= $(TOOLS_CACHE)/golangci-lint-$(GOLANGCI_LINT_VERSION)
HELM            ?= $(TOOLS_CACHE)/helm-$(HELM_VERSION)

# The operator's version (from git: the tag without its v, else the commit) and image.
VERSION ?= $(shell v=$$(git describe --tags --always --dirty --match 'v*' 2>/dev/null) && echo "$${v#v}" || echo dev)
IMG     ?= ghcr.io/visio-dev/visio-operator:$(VERSION)
LDFLAGS := -s -w -X main.version=$(VERSION)

# Extra manager flags for `make run`, e.g. ARGS="--vmr-backend=pexip ...".
ARGS ?=
# Extra `go test` flags, e.g. TESTARGS="-run TestLicense -v".
TESTARGS ?=

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

.PHONY: all
all: build

##@ General

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make \033[36m<target>\033[0m\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-16s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Main commands

.PHONY: run
run: ## Run the operator: on a local control plane, or on $KUBECONFIG's cluster when set.
	go run ./hack/localrun -- $(ARGS)

.PHONY: test
test: $(HELM) ## Run all tests against a real kube-apiserver, etcd and kube-controller-manager, then with real Flux, then on a real node.
	KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" HELM="$(HELM)" go test ./... -count=1 -timeout 45m $(TESTARGS)
	cd test/dashboard && go test ./... -count=1
	@if [ -n "$(TESTARGS)" ]; then echo "make test: TESTARGS is set, so the GitOps and real-node stages are left out (make test-gitops and make test-e2e run them)"; else $(MAKE) --no-print-directory test-gitops && HELM="$(HELM)" hack/e2e/e2e.sh; fi

.PHONY: test-gitops
test-gitops: ## Drive a platform repository through real Flux controllers (built by hack/gitops.sh) against the local control plane.
	KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" FLUX_ASSETS="$$(hack/gitops.sh)" go test -tags gitops ./test/gitops/ -count=1 -v -timeout 20m

.PHONY: test-e2e
test-e2e: $(HELM) ## Install the image with the chart on a real node (kubelet, containerd) and test it there (root on Linux).
	HELM="$(HELM)" hack/e2e/e2e.sh

.PHONY: test-image-docker
test-image-docker: image ## Check that docker load accepts make image's archive (a private dockerd in namespaces; skips without dockerd or root).
	hack/image-docker.sh $(LOCALBIN)/visio-operator-image.tar "$(IMG)" "$(VERSION)" "$$(git rev-parse HEAD)"

.PHONY: test-monitoring
test-monitoring: ## Check the chart's alerts with promtool (installs the Debian package prometheus when root) and its dashboard.
	go test ./test/prometheus/ -count=1 -v
	cd test/dashboard && go test ./... -count=1 -v

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs, RBAC and webhook configuration; copy them and the admission policies into the chart.
	$(CONTROLLER_GEN) rbac:roleName=visio-operator-manager crd webhook paths="./..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac output:webhook:artifacts:config=config/webhook
	mkdir -p charts/visio-operator/files/crds
	cp config/crd/bases/*.yaml charts/visio-operator/files/crds/
	cp config/rbac/roles.yaml charts/visio-operator/templates/platform-roles.yaml
	cp config/rbac/role.yaml charts/visio-operator/templates/manager-role.yaml
	sed -e 's/namespace: visio-system/namespace: {{ .Release.Namespace }}/' \
		config/rbac/leader_election_role.yaml > charts/visio-operator/templates/leader-election-role.yaml
	sed -e "s/\"'platform'\"/{{ .Values.platformEntity | squote | quote }}/" -e 's/:visio-system:/:{{ .Release.Namespace }}:/' \
		config/policies/admission-policies.yaml > charts/visio-operator/templates/admission-policies.yaml

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate the DeepCopy methods of the API types.
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: fmt
fmt: ## Format the code.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## Run go vet.
	go vet ./...

.PHONY: lint
lint: $(GOLANGCI_LINT) ## Run golangci-lint.
	$(GOLANGCI_LINT) run --build-tags e2e,gitops ./...

.PHONY: verify
verify: manifests generate ## Fail when generated files are stale, code is unformatted or go.mod is untidy.
	go mod tidy
	cd hack/controlplane && GOFLAGS=-mod=mod go mod tidy
	cd hack/gitops && GOFLAGS=-mod=mod go mod tidy -e # -e: the proxy lacks a module that only Flux's own tests import
	cd test/dashboard && go mod tidy
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed on:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@git diff --exit-code -- . ':!bin' || { echo "generated files or go.mod are stale: run make manifests generate and go mod tidy, then commit"; exit 1; }
	@test -z "$$(git status --porcelain --untracked-files=all -- config charts api)" || { echo "untracked generated files:"; git status --porcelain -- config charts api; exit 1; }

.PHONY: bench
bench: ## Run the benchmarks of the pure logic.
	go test ./internal/licensing/ -run=NONE -bench=. -benchmem

.PHONY: bench-burst
bench-burst: ## Measure a burst of 2,000 users across 20 pools against the floor, same run (BURST_POOLS=100: 10,000 users).
	BURST_POOLS="$(BURST_POOLS)" KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" go test ./test/integration/ -run=NONE -bench=BenchmarkUserBurst -benchtime=1x -timeout 90m

.PHONY: bench-quiet
bench-quiet: ## Count every write to the API group in 10 s windows for 5 min after a burst settled and after a resync, straight and with a restart mid-burst (QUIET_USERS=10000).
	QUIET_USERS="$(QUIET_USERS)" QUIET_WINDOWS="$(QUIET_WINDOWS)" KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" go test ./test/integration/ -run=NONE -bench=BenchmarkQuietAfterBurst -benchtime=1x -timeout 150m -v

.PHONY: bench-writes
bench-writes: ## What one status write of each kind costs the control plane: a plain object, a user, a pool with 100 reservations.
	KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" go test ./test/integration/ -run=NONE -bench=BenchmarkStatusWrite -benchtime=1x -timeout 30m

.PHONY: bench-scale
bench-scale: ## Memory with 10,000 users, 100 pools and 1,000 rooms settled, and the cost of one full resync.
	KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" go test ./test/integration/ -run=NONE -bench=BenchmarkScaleMemory -benchtime=1x -timeout 90m

.PHONY: bench-vmr
bench-vmr: ## Measure 500 rooms against the Pexip test server: time to Ready, requests per room, drift check and sweep costs.
	VISIO_BENCH=1 KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" go test ./test/integration/ -count=1 -run 'TestVMRBenchmark|TestVMRPexipFaults' -v -timeout 60m

.PHONY: bench-cli
bench-cli: ## Measure `kubectl visio users import` of 2,000 rows, and its re-import, against a real control plane.
	VISIO_BENCH=1 KUBEBUILDER_ASSETS="$$(hack/controlplane.sh)" go test ./test/integration/ -count=1 -run TestCLIImportBenchmark -v -timeout 30m

.PHONY: fuzz
fuzz: ## Fuzz the validators and the allocator for 30s each.
	go test ./internal/licensing/ -run=NONE -fuzz=FuzzAllocate -fuzztime=30s
	go test ./internal/pins/ -run=NONE -fuzz=FuzzValidatePIN -fuzztime=30s
	go test ./internal/pins/ -run=NONE -fuzz=FuzzValidatePair -fuzztime=30s
	go test ./internal/userimport/ -run=NONE -fuzz=FuzzParse -fuzztime=30s
	go test ./internal/rooms/ -run=NONE -fuzz=FuzzName -fuzztime=30s
	go test ./internal/rooms/ -run=NONE -fuzz=FuzzPick -fuzztime=30s
	go test ./internal/hierarchy/ -run=NONE -fuzz=FuzzCheck -fuzztime=30s
	go test ./internal/hierarchy/ -run=NONE -fuzz=FuzzForest -fuzztime=30s

.PHONY: controlplane
controlplane: ## Build (or find cached) the control-plane binaries and print their directory.
	@hack/controlplane.sh

##@ Build

.PHONY: build
build: ## Build the manager binary and the kubectl plugin (bin/manager, bin/kubectl-visio).
	go build -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/manager ./cmd
	go build -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/kubectl-visio ./cmd/kubectl-visio

.PHONY: image
image: ## Build the operator image into bin/visio-operator-image.tar (no Docker daemon, no registry).
	CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "$(LDFLAGS)" -o $(LOCALBIN)/linux/manager ./cmd
	go run ./hack/image -binary $(LOCALBIN)/linux/manager -tag "$(IMG)" -version "$(VERSION)" \
		-revision "$$(git rev-parse HEAD)" -created "$$(git log -1 --format=%cI)" -o $(LOCALBIN)/visio-operator-image.tar

##@ Tools

$(TOOLS_CACHE):
	mkdir -p $(TOOLS_CACHE)

$(CONTROLLER_GEN): | $(TOOLS_CACHE)
	$(call go-install-tool,$(CONTROLLER_GEN),sigs.k8s.io/controller-tools/cmd/controller-gen,$(CONTROLLER_TOOLS_VERSION))

$(GOLANGCI_LINT): | $(TOOLS_CACHE)
	$(call go-install-tool,$(GOLANGCI_LINT),github.com/golangci/golangci-lint/v2/cmd/golangci-lint,$(GOLANGCI_LINT_VERSION))

$(HELM): | $(TOOLS_CACHE)
	$(call go-install-tool,$(HELM),helm.sh/helm/v4/cmd/helm,$(HELM_VERSION))

# go-install-tool installs a versioned binary: $(1) target path, $(2) package, $(3) version.
define go-install-tool
@[ -f "$(1)" ] || { \
	set -e; \
	echo "Installing $(2)@$(3) (first time only)"; \
	rm -f "$(1)"; \
	GOBIN="$(TOOLS_CACHE)" go install "$(2)@$(3)"; \
	mv "$(TOOLS_CACHE)/$$(basename "$(2)")" "$(1)"; \
}
endef
