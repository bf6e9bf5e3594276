# cri-shim: see README.md. Every target that needs the host prepared runs `setup` first.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
SOCKET ?= /run/cri-shim.sock
# make run's network runs on our own plugins (netplugins), installed here.
CNI_BIN_DIR ?= $(CURDIR)/build/cni-bin
PROTO_SRC := proto/cri_api/api.proto

.PHONY: setup host venv pause-image test-tools run test unit integration lint bench proto proto-check

setup: host venv pause-image

host:
	bash scripts/setup-host.sh

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[dev]'
	# The upstream CRI stubs share our import name, so they live in a folder of their own.
	$(VENV)/bin/pip install -q --no-deps --target $(VENV)/upstream-cri container-runtime-interface-api==2.0.1
	touch $@

pause-image: host
	bash scripts/pause-image.sh
	bash scripts/test-image.sh

test-tools: venv
	bash scripts/test-tools.sh
	bash scripts/critest-tools.sh && bash scripts/critest-images.sh
	bash scripts/kubelet-tools.sh

run: setup
	$(PY) -m netplugins install $(CNI_BIN_DIR)
	$(VENV)/bin/cri-shim --container-runtime-endpoint unix://$(SOCKET) \
	    --cni-conf-dir $(CURDIR)/examples/net.d --cni-bin-dir $(CNI_BIN_DIR) --log-level info

test: setup test-tools proto-check lint
	PATH=$(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m pytest -q -ra tests

unit: venv
	$(PY) -m pytest -q tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy shim cnilib netplugins overlay bench tests

# stdout carries nothing but the benchmark's JSON document: set-up output goes to stderr.
bench:
	@$(MAKE) --no-print-directory setup >&2
	@PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m bench

# The mypy-protobuf plugins (protoc-gen-mypy*) live in the venv's bin/.
proto: venv
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iproto --python_out=. --grpc_python_out=. \
	    --mypy_out=. --mypy_grpc_out=. $(PROTO_SRC)

# Fails when cri_api/ is not what `make proto` generates from proto/.
proto-check: venv
	rm -rf build/proto-check && mkdir -p build/proto-check
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m grpc_tools.protoc -Iproto --python_out=build/proto-check \
	    --grpc_python_out=build/proto-check --mypy_out=build/proto-check \
	    --mypy_grpc_out=build/proto-check $(PROTO_SRC)
	diff -r -x __init__.py -x __pycache__ build/proto-check/cri_api cri_api
