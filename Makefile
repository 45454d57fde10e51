# kubetune: two commands matter to users, `make demo` and `make test`. Everything else is a step of those.
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV := $(shell hack/ensure-uv.sh)
VENV := .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
PYTEST := $(PY) -m pytest
CACHE := $(or $(KUBETUNE_CACHE),$(HOME)/.cache/kubetune)
include hack/versions.env
HELM := $(CACHE)/bin/helm-$(HELM_NPM_VERSION)/helm
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export TORCH_EXTENSIONS_DIR := $(CACHE)/torch_extensions

.PHONY: help install generate verify lint test test-fast test-integration test-kueue test-trainer test-e2e test-gpu \
        demo labs bench binaries deepspeed-ops cluster-up cluster-down clean \
        images image-operator image-trainer test-images test-image-operator

help: ## list targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | column -t -s $$'\t'

install: $(VENV)/.synced ## create .venv from uv.lock (all extras)
$(VENV)/.synced: pyproject.toml uv.lock
	$(UV) sync --frozen --extra operator --extra trainer --extra eval --extra pii-ner --extra labs --extra dev
	@touch $@

generate: install ## write crds/ and charts/kubetune/crds/ from the pydantic models
	$(PY) -m kubetune.api.crd write

verify: install ## fail when committed CRDs drift from the models
	$(PY) -m kubetune.api.crd check

lint: install binaries ## ruff, mypy (strict for kubetune and the trainer), import-linter, hadolint, helm lint
	$(BIN)/ruff check operator trainer-image dev tests
	$(BIN)/ruff format --check operator trainer-image dev tests
	$(BIN)/mypy operator/kubetune trainer-image/kubetune_trainer dev/kubetune_dev
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile trainer-image/Dockerfile
	$(HELM) lint --strict charts/kubetune

test: install verify lint test-fast test-trainer test-integration test-e2e test-image-operator ## everything, from a fresh clone

test-fast: install binaries ## unit tests of pure code, contract tests (examples, fixtures, CRDs, chart, alerts, dashboard)
	$(PYTEST) tests/unit tests/contract -m "not trainer"

test-trainer: install deepspeed-ops ## trainer tests that really train tiny models on CPU (GPU tests skip on CPU)
	$(PYTEST) tests/unit -m trainer
	$(PYTEST) tests/gpu

test-gpu: install ## the GPU check: kubetune's LoRA, QLoRA and ZeRO-3 paths on CUDA with a ~1B model (one line on CPU)
	@if $(PY) -c 'import sys, torch; sys.exit(not torch.cuda.is_available())'; then \
		$(PYTEST) tests/gpu -s -p no:cacheprovider; \
	else echo "test-gpu: skipped, no CUDA GPU visible (tests/gpu runs on a machine with one)"; fi

test-integration: install binaries ## against the real local control plane (etcd, apiserver, controllers, kwok, Kueue)
	$(PYTEST) tests/integration

test-kueue: install binaries ## only the tests against real Kueue (part of test-integration and test-e2e)
	$(PYTEST) tests/integration tests/e2e -m kueue

test-e2e: install binaries ## operator + trainer on the local control plane, as `make demo` runs it
	$(PYTEST) tests/e2e

images: install ## build the operator and trainer images with buildah (local Debian base, the host's uv cache)
	hack/build-images.sh operator trainer

image-operator: install ## build the operator image (about 350 MB)
	hack/build-images.sh operator

image-trainer: install ## build the trainer image (torch with CUDA: several GB)
	hack/build-images.sh trainer

test-image-operator: image-operator ## build the operator image and run it (part of make test)
	$(PYTEST) tests/images/test_operator_image.py

test-images: images ## build both images and run them: the trainer image trains the demo's tiny model
	$(PYTEST) tests/images

deepspeed-ops: install ## compile DeepSpeed's CPU ops once into $(CACHE)/torch_extensions
	hack/prebuild-deepspeed-ops.sh

bench: install binaries ## benchmarks (ratios against a baseline measured in the same run)
	$(PYTEST) tests/bench -s -p no:cacheprovider

binaries: ## build or reuse the local control plane binaries and promtool (cached outside the tree)
	hack/build-all.sh

cluster-up: install binaries ## start a local control plane by hand (KUEUE=1 adds Kueue); prints the kubeconfig path
	$(PY) -m kubetune_dev.controlplane up $(if $(KUEUE),--kueue)

cluster-down: install ## stop the control plane started by cluster-up
	$(PY) -m kubetune_dev.controlplane down

demo: install binaries ## apply a FineTuneJob on the local control plane, train a tiny model on CPU, get an Adapter
	$(PY) -m kubetune_dev.demo

LABS_OUT ?= .kubetune/labs
LAB_NAMES ?= peft-sweep qlora-memory dpo-vs-rl forgetting fusion
labs: install ## run every code lab's small setting on CPU (labs/README.md); reports in $(LABS_OUT)
	@model=$$($(PY) -m kubetune_dev.lab_model) && for lab in $(LAB_NAMES); do \
		OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} \
		$(BIN)/kubetune lab run $$lab --setting small --model $$model --out $(LABS_OUT) || exit 1; done
	@echo "reports: $(LABS_OUT)/README.md"

clean: ## remove the venv and caches in the tree (binaries stay cached in ~/.cache/kubetune)
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
