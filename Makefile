# Berth's build, test and lab targets. `make help` lists them.

SHELL := /usr/bin/env bash -o pipefail
.DEFAULT_GOAL := build

GO        ?= go
BIN       := $(CURDIR)/bin
TOOLS     := $(BIN)/tools
K8S_BIN   := $(BIN)/k8s
MODULE    := github.com/berthnet/berth
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT    ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X $(MODULE)/internal/version.version=$(VERSION) -X $(MODULE)/internal/version.commit=$(COMMIT)
IMAGE_REGISTRY ?= ghcr.io/berthnet

CONTROLLER_GEN_VERSION := v0.23.0
STATICCHECK_VERSION    := v0.8.2
CONTROLLER_GEN := $(TOOLS)/controller-gen-$(CONTROLLER_GEN_VERSION)
STATICCHECK    := $(TOOLS)/staticcheck-$(STATICCHECK_VERSION)
HELM_VERSION   := v3.22.0
# The chart's tests run this helm (test/chart).
export HELM    := $(TOOLS)/helm-$(HELM_VERSION)

BINARIES := berth-controller berth-agent berth-cni berthctl
# Packages whose kubebuilder:rbac markers make up the controller's role.
CONTROLLER_RBAC_PATHS := ./cmd/berth-controller/... $(if $(wildcard controllers),./controllers/...)

# Tests find the control plane here (controller-runtime's envtest reads it).
export KUBEBUILDER_ASSETS := $(K8S_BIN)

.PHONY: help
help: ## List the targets.
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## Build the four binaries into bin/, version stamped.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ $(addprefix ./cmd/,$(BINARIES))

.PHONY: images
images: build debian-deps ## Build every image the lab runs as OCI tarballs in bin/images: berth-controller, berth-agent, and the lab's pause, echo programs, toolbox and CoreDNS; from scratch, no Docker engine (docs/images.md).
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/berth-pause ./build/pause
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/berth-echo ./build/echo
	test/k8sbin/build-coredns.sh $(BIN)/node
	$(GO) run ./hack/images -images all -bin $(BIN) -coredns $(BIN)/node/coredns -busybox /bin/busybox -out $(BIN)/images \
		-registry $(IMAGE_REGISTRY) -version $(VERSION) \
		-revision $$(git rev-parse HEAD 2>/dev/null || echo unknown) -created $$(git log -1 --format=%ct 2>/dev/null || echo 0)

.PHONY: chart
chart: $(HELM) ## Package charts/berth into bin/charts, appVersion $(VERSION) (the images' default tag).
	$(HELM) lint charts/berth
	$(HELM) package charts/berth --app-version $(VERSION) -d $(BIN)/charts

.PHONY: debian-deps
debian-deps: ## Install the Debian packages the lab and tests use, if missing.
	hack/debian-deps.sh

.PHONY: test-deps
test-deps: debian-deps $(CONTROLLER_GEN) $(STATICCHECK) $(HELM) ## Install Debian packages; build etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl into bin/k8s, kubelet, containerd, ctr, runc and CoreDNS into bin/node (cached) and the tools (helm too).
	test/k8sbin/build.sh $(K8S_BIN)
	test/k8sbin/build-node.sh $(BIN)/node
	test/k8sbin/build-coredns.sh $(BIN)/node

# The race detector watches every test; as root the host's own network
# namespace is recorded before and compared after (hack/host-state.sh):
# tests work in namespaces they made, and leave the host as they found it.
.PHONY: test
test: build test-deps ## Run every test (race detector on): unit, privileged (as root), API server and lab; then check the host's network namespace is unchanged.
	@if [[ $$(id -u) == 0 ]]; then hack/host-state.sh snapshot $(BIN)/host-state.before; fi
	$(GO) test -race -count=1 -timeout 30m ./...
	@if [[ $$(id -u) == 0 ]]; then hack/host-state.sh compare $(BIN)/host-state.before; fi

.PHONY: golden
golden: ## Regenerate the golden files (every package whose tests define -update); review their diff like code.
	@pkgs="$$(grep -rl 'flag.Bool("update"' --include='*_test.go' . | xargs -r -n1 dirname | sort -u)"; \
	if [[ -z "$$pkgs" ]]; then echo "no golden tests"; exit 0; fi; \
	$(GO) test -count=1 $$pkgs -run Golden -update

.PHONY: bench
bench: test-deps ## Run the benchmarks and print figures against their goals and baselines.
	hack/bench.sh

.PHONY: lint
lint: $(STATICCHECK) ## gofmt, go vet and staticcheck.
	@out="$$(gofmt -l $$(git ls-files '*.go') )"; if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code for api/.
	$(CONTROLLER_GEN) object paths=./api/...

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC into config/ from kubebuilder markers, and copy them into charts/berth.
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	hack/gateway-api-crds.sh
	$(CONTROLLER_GEN) rbac:roleName=berth-controller $(addprefix paths=,$(CONTROLLER_RBAC_PATHS)) output:rbac:artifacts:config=config/rbac/controller
	$(CONTROLLER_GEN) rbac:roleName=berth-agent paths=./cmd/berth-agent/... output:rbac:artifacts:config=config/rbac/agent
	hack/chart-files.sh

.PHONY: verify
verify: lint ## Fail when lint fails or when make generate manifests would change a file.
	@sum() { find api config charts/berth/crds charts/berth/files -type f 2>/dev/null | sort | xargs -r sha256sum; }; \
	before="$$(sum)"; $(MAKE) --no-print-directory generate manifests >/dev/null; after="$$(sum)"; \
	if [[ "$$before" != "$$after" ]]; then diff <(echo "$$before") <(echo "$$after"); \
	echo "generated files were stale: make generate manifests has updated them; commit the result"; exit 1; fi

.PHONY: run
run: build test-deps images ## Start the local lab of real nodes (needs root), with Berth installed by its chart from bin/images; run the demo and show the lab's state.
	$(BIN)/berthctl lab up
	$(BIN)/berthctl lab demo
	$(BIN)/berthctl lab status
	@echo
	@echo "kubectl:  $(K8S_BIN)/kubectl --kubeconfig $$($(BIN)/berthctl lab kubeconfig --path) get nodes -o wide"
	@echo "stop it:  sudo $(BIN)/berthctl lab down"

.PHONY: lab-down
lab-down: ## Tear the local lab down.
	$(BIN)/berthctl lab down

.PHONY: clean
clean: ## Remove built binaries and tools (keeps the cached control plane in bin/k8s and the node binaries in bin/node).
	rm -rf $(addprefix $(BIN)/,$(BINARIES)) $(TOOLS)

.PHONY: clean-all
clean-all: clean ## Also remove the cached control plane and node binaries.
	rm -rf $(K8S_BIN) $(BIN)/node

$(CONTROLLER_GEN):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS)/.gobin $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)
	mv $(TOOLS)/.gobin/controller-gen $@

$(HELM):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS)/.gobin $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
	mv $(TOOLS)/.gobin/helm $@

$(STATICCHECK):
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS)/.gobin $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	mv $(TOOLS)/.gobin/staticcheck $@
