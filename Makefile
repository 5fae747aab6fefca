# Common tasks. The test command CI runs is ./scripts/test (make test calls it).
GOBIN ?= $(shell go env GOPATH)/bin
BUF_VERSION := v1.75.0
PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

.PHONY: all build test run generate lint-proto breaking tools docker bench

all: build

build:
	go build -o bin/ ./cmd/...

test:
	./scripts/test

run:
	go run ./cmd/resilienced --log-format text

# Regenerate gen/ from proto/ with local plugins (works offline once the
# tools are installed with `make tools`).
generate: tools
	PATH="$(GOBIN):$$PATH" buf generate
	PATH="$(GOBIN):$$PATH" buf lint

lint-proto: tools
	PATH="$(GOBIN):$$PATH" buf lint

# Compare the API with main's: breaking changes fail.
breaking: tools
	PATH="$(GOBIN):$$PATH" buf breaking --against '.git#branch=main'

tools:
	@command -v $(GOBIN)/buf >/dev/null || go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@command -v $(GOBIN)/protoc-gen-go >/dev/null || go install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@command -v $(GOBIN)/protoc-gen-go-grpc >/dev/null || go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

docker:
	docker build -t topdeck/resilienced .

bench:
	go test -run '^$$' -bench . -benchmem ./limiter/... ./breaker/... ./cache/...

# The Python SDK (clients/python): regenerate its committed stubs from proto/
# with Debian's protoc and grpc_python_plugin; install it (apt-get for what is
# missing, no PyPI); run its tests; run its benchmark.
.PHONY: python-generate python-install python-test python-bench
python-generate:
	./clients/python/gen.sh
python-install:
	./clients/python/install.sh
python-test:
	./clients/python/test.sh
python-bench:
	/usr/bin/python3 clients/python/bench.py
