# Two commands for a fresh machine: `make run` and `make test`. Both create/reuse .venv
# from the pinned dependencies in pyproject.toml.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
PROTOS := $(wildcard proto/crypto_trading/v1/*.proto)
PROTOC := $(BIN)/python -m grpc_tools.protoc -I proto --plugin=protoc-gen-mypy=$(BIN)/protoc-gen-mypy \
	--plugin=protoc-gen-mypy_grpc=$(BIN)/protoc-gen-mypy_grpc

.PHONY: run test venv proto proto-deps proto-check lint typecheck buflint pytest bench clean

$(STAMP):
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e ".[ml,dev]"
	@rm -f $(VENV)/.installed-*; touch $(STAMP)

venv: $(STAMP)

run: $(STAMP)
	$(BIN)/cts up $(ARGS)

# Everything CI checks: lint, types, proto lint and freshness, then the test suite.
test: $(STAMP) lint typecheck buflint proto-check pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy

# google/rpc/status.proto comes from the pinned googleapis-common-protos package (never edited, git-ignored).
proto-deps: $(STAMP)
	@mkdir -p proto/google/rpc
	@cp "$$($(BIN)/python -c 'import google.rpc.status_pb2 as m, pathlib; print(pathlib.Path(m.__file__).parent)')/status.proto" \
		proto/google/rpc/status.proto

buflint: proto-deps
	$(BIN)/buf lint
	$(BIN)/buf format --diff --exit-code

pytest: $(STAMP)
	$(BIN)/pytest $(PYTEST_ARGS)

# Regenerate messages, gRPC stubs and typed stubs (.pyi + mypy-protobuf async gRPC stubs).
proto: proto-deps
	rm -rf generated/crypto_trading
	mkdir -p generated
	$(PROTOC) \
		--python_out=generated --grpc_python_out=generated \
		--mypy_out=generated --mypy_grpc_out=generated \
		$(PROTOS)
	touch generated/crypto_trading/__init__.py generated/crypto_trading/v1/__init__.py generated/crypto_trading/v1/py.typed

# CI: regenerating must not change the committed code.
proto-check: proto-deps
	@tmp=$$(mktemp -d) && mkdir -p $$tmp/out && \
	$(PROTOC) --python_out=$$tmp/out --grpc_python_out=$$tmp/out \
		--mypy_out=$$tmp/out --mypy_grpc_out=$$tmp/out $(PROTOS) && \
	touch $$tmp/out/crypto_trading/__init__.py $$tmp/out/crypto_trading/v1/__init__.py $$tmp/out/crypto_trading/v1/py.typed && \
	diff -r $$tmp/out/crypto_trading generated/crypto_trading -x __pycache__ && echo "generated code is fresh" || \
	{ echo "generated/ is stale: run 'make proto' and commit"; exit 1; }

bench: $(STAMP)
	$(BIN)/python -m bench $(ARGS)

clean:
	rm -rf $(VENV) var build *.egg-info
