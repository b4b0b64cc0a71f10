# The two commands a newcomer runs: `make run` and `make test`. Both set up first
# (scripts/setup.sh: virtualenv, Docker + runsc when missing, the base image).
SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint unit bench clean firecracker-guest

setup:
	@scripts/setup.sh

# The runtime in the foreground with the default provider; Ctrl-C stops it cleanly.
# Workspaces are enabled here (the seed's quick start); export ENABLE_AGENT_WORKSPACES=false to turn them off.
# The HTTP API and the admin page listen on 127.0.0.1:7780 (the URL is logged); export
# WORKSPACE_HTTP_ADDR= (empty) to turn them off.
run: setup
	ENABLE_AGENT_WORKSPACES=$${ENABLE_AGENT_WORKSPACES:-true} WORKSPACE_HTTP_ADDR=$${WORKSPACE_HTTP_ADDR-127.0.0.1:7780} \
		exec $(BIN)/workspaces serve

# Lint, type-check, then the whole suite (unit and integration against real Docker, the
# admin page in headless Chromium and the Node client under Node.js, which setup installs
# for the tests).
test: export SETUP_BROWSER := 1
test: export SETUP_NODE := 1
test: setup lint
	$(BIN)/pytest

lint:
	$(BIN)/ruff check runtime actors tests bench scripts
	$(BIN)/ruff format --check runtime actors tests bench scripts
	$(BIN)/mypy

# Fast tests only (no Docker).
unit:
	$(BIN)/pytest -m "not docker"

# Every scenario beside its raw baseline and the peer (llm-sandbox, installed into bench/.peer-venv)
# in one run, about 9 min on 2 cores; writes bench/results/ (JSON, Markdown, PNG). A missed
# target is reported, not failed. `$(BIN)/python -m bench --quick` takes under 2 min (bench/results/quick/).
bench: setup
	$(BIN)/python -m bench

# The Firecracker guest's kernel and initrd from Debian's cloud kernel: build/firecracker-guest/
# (vmlinux, initrd.img, manifest.json), where the provider looks when FIRECRACKER_KERNEL is empty.
firecracker-guest: setup
	@scripts/firecracker-guest.sh

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
