# initlab: `make study` and `make test` each work on a fresh machine (they create .venv when missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ARGS   ?=

.PHONY: study test test-all lint install data bench bench-sweep clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch is pinned in pyproject.toml (==2.13.0): an unpinned torch would pull a multi-GB CUDA build
	$(BIN)/python -m pip install --quiet -e '.[test]'
	# mup: the peer oracle of the μP tests, without its unpinned torchvision/seaborn (see pyproject.toml)
	$(BIN)/python -m pip install --quiet --no-deps mup==1.0.0
	-@bash scripts/install-system-data.sh
	touch $(STAMP)

install: $(STAMP)

data: $(STAMP)
	$(BIN)/initlab data fetch mnist

study: data
	$(BIN)/initlab study $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check initlab tests benchmarks
	$(BIN)/lint-imports

# the suite without the end-to-end tests (a real Ray cluster, kill loops, the notebook, full epochs), on
# two processes (pytest-xdist; ARGS="-n 8" for more)
test: data lint
	$(BIN)/python -m pytest -q -m "not e2e" -n 2 $(ARGS)

# everything, the end-to-end tests included: what CI runs
test-all: data lint
	$(BIN)/python -m pytest -q $(ARGS)

# whole processes against the textbook loop: one model, the default study, 50 models; median of 3
# (~25 min on the 2-core lab VM; ARGS="--repeats 1" for a smoke test, "--against DIR" to time another checkout)
bench: $(STAMP)
	$(BIN)/python benchmarks/engine_speed.py $(ARGS)

bench-sweep: $(STAMP)
	$(BIN)/python benchmarks/sweep_speed.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
