# The two set-up commands on a fresh machine:  make demo   and   make test
# Both create .venv on first use; `make test` also installs, as root, the Debian packages the
# tests run for real (tests/install-servers.sh: mosquitto, systemd, openssl, shellcheck,
# bubblewrap, Chromium and its driver, GStreamer's RTSP server); OctoPrint and Moonraker go
# into their own virtualenvs under .cache/ on first use by the tests.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
# the Kaggle frames (read-only, never committed)
DATA ?= ../shared/data/kaggle-3d-printer
# pytest processes side by side (pytest-xdist), each test file in one of them, in file order:
# most tests wait on servers, cameras and daemons, so two keep a 2-core machine busy
# (--tb=short: a failure's reason near its start, where a truncated CI log still shows it)
TEST_WORKERS ?= 2

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
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile --tb=short $(PYTEST_ARGS)

# The install and the demo on an emulated 64-bit Raspberry Pi OS (Debian 12 arm64, qemu-user):
# needs root and network; the first run builds the root into .cache/arm64 (see tests/arm64/run.sh).
test-arm64: $(VENV)/.stamp-pi
	bash tests/arm64/run.sh

lint: $(VENV)/.stamp-dev
	$(BIN)/ruff check watchdog trainer tests benchmarks

# Slow, not in CI: the single-run benchmarks behind docs/quality.md, each writing the JSON
# its section is generated from (the commands the page names), then the page itself. The
# three-run detection figures are `make quality`; memory needs a baseline (see its section);
# the soak's figures are in docs/reliability.md (benchmarks/soak.py, as that page says).
bench: $(VENV)/.stamp-dev
	mkdir -p benchmarks/results
	$(BIN)/python benchmarks/quality.py --data $(DATA) --skip-seed --json benchmarks/results/quality.json
	$(BIN)/python benchmarks/time_to_pause.py --data $(DATA) --json benchmarks/results/time_to_pause.json
	$(BIN)/python benchmarks/lasting_change.py --data $(DATA) --json benchmarks/results/lasting_change.json
	$(BIN)/python benchmarks/lasting_change.py --data $(DATA) --onset 15 --json benchmarks/results/lasting_change_in_start.json
	$(BIN)/python benchmarks/start_guard.py --data $(DATA) --json benchmarks/results/start_guard.json
	$(BIN)/python benchmarks/still_start.py --data $(DATA) --json benchmarks/results/still_start.json
	$(BIN)/python benchmarks/growing_prints.py --data $(DATA) --json benchmarks/results/growing_prints.json
	$(BIN)/python benchmarks/frame_order.py --data $(DATA) --json benchmarks/results/frame_order.json
	$(BIN)/python benchmarks/frame_cost.py --json benchmarks/results/frame_cost.json
	PYTHONPATH=. $(BIN)/python benchmarks/capacity.py --json benchmarks/results/capacity.json
	$(BIN)/python benchmarks/qualitydoc.py

# Detection quality (not in CI; docs/quality.md): three training runs of the default
# preset, leave-one-print-out on the Kaggle data (first minutes, in-scene failures, Kaggle
# failures; the start also judged without matching its light, on the same models), then the
# shipped bundle on other camera framings. About 17 min on 2 cores (measured: 16 + 1.5).
# The run it replaces is kept as quality-variant-shipped-run-<its date>.json: the decision
# records quote the run they measured, by its file.
quality: $(VENV)/.stamp-dev
	mkdir -p benchmarks/results
	if [ -f benchmarks/results/quality-detection.json ]; then \
	  stamp=$$($(BIN)/python -c 'import json, sys; print(json.load(open(sys.argv[1]))["date"][:16].replace(" ", "-").replace(":", ""))' benchmarks/results/quality-detection.json) && \
	  kept=benchmarks/results/quality-variant-shipped-run-$$stamp.json && \
	  { [ -e "$$kept" ] || cp benchmarks/results/quality-detection.json "$$kept"; }; \
	fi
	$(BIN)/python benchmarks/quality.py --data $(DATA) --seeds 0,1,2 --json benchmarks/results/quality-detection.json
	$(BIN)/python benchmarks/framing.py --data $(DATA) --json benchmarks/results/framing.json

# Retrain the shipped default bundle on the Kaggle data ($(DATA)).
default-model: $(VENV)/.stamp-dev
	run=$$($(BIN)/python -m trainer --data $(DATA) --preset default --split all --out runs/ | tail -n 1) && \
	cp "$$run/bundle/model.tflite" "$$run/bundle/model.json" watchdog/models/default/

clean:
	rm -rf $(VENV) .cache
