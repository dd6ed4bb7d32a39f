# The two set-up commands on a fresh machine:  make demo   and   make test
# Both create .venv on first use; `make test` also installs the servers the tests run
# (mosquitto and systemd from Debian's packages; OctoPrint and Moonraker go into their own
# virtualenvs under .cache/ on first use by the tests).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test test-arm64 lint bench quality default-model clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.stamp-pi: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[pi]"
	touch $@

$(VENV)/.stamp-dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e ".[pi,train,test]"
	touch $@ $(VENV)/.stamp-pi

demo: $(VENV)/.stamp-pi
	$(BIN)/python -m watchdog demo

test: $(VENV)/.stamp-dev
	bash tests/install-servers.sh
	$(BIN)/ruff check watchdog trainer tests benchmarks
	$(BIN)/ruff format --check watchdog trainer tests benchmarks
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

# The install and the demo on an emulated 64-bit Raspberry Pi OS (Debian 12 arm64, qemu-user):
# needs root and network; the first run builds the root into .cache/arm64 (see tests/arm64/run.sh).
test-arm64: $(VENV)/.stamp-pi
	bash tests/arm64/run.sh

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check watchdog trainer tests benchmarks

# Slow, not in CI; figures go into docs/benchmarks.md and docs/reliability.md.
bench: $(VENV)/.stamp-dev
	mkdir -p runs
	$(BIN)/python benchmarks/frame_cost.py
	$(BIN)/python benchmarks/quality.py --control --seed-epochs 10 --json runs/quality.json
	$(BIN)/python benchmarks/time_to_pause.py --json runs/time_to_pause.json
	$(BIN)/python benchmarks/lasting_change.py --json runs/lasting_change.json
	$(BIN)/python benchmarks/soak.py --frames 20000 --seed 1 --out runs/soak.json

# Detection quality (not in CI; docs/quality.md): three training runs of the default
# preset, leave-one-print-out on the Kaggle data (first minutes, in-scene failures, Kaggle
# failures; the start also judged without matching its light, on the same models), then the
# shipped bundle on other camera framings. About 25 min on 2 cores (measured: 23 + 2).
DATA ?= ../shared/data/kaggle-3d-printer
quality: $(VENV)/.stamp-dev
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/quality.py --data $(DATA) --seeds 0,1,2 --json benchmarks/results/quality-detection.json
	$(BIN)/python benchmarks/framing.py --data $(DATA) --json benchmarks/results/framing.json

# Retrain the shipped default bundle on the Kaggle data (../shared/data/kaggle-3d-printer).
default-model: $(VENV)/.stamp-dev
	run=$$($(BIN)/python -m trainer --data ../shared/data/kaggle-3d-printer --preset default --split all --out runs/ | tail -n 1) && \
	cp "$$run/bundle/model.tflite" "$$run/bundle/model.json" watchdog/models/default/

clean:
	rm -rf $(VENV) .cache
