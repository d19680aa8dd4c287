# Two commands a newcomer needs: `make demo` and `make test`. Both run `make setup` first.
VENV ?= .venv
PY := $(VENV)/bin/python
# Each run gets its own DDS domain so parallel runs on one machine never see each other.
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST

.PHONY: setup test test-fast demo lint bench clean

setup:
	@bash scripts/setup_env.sh

test: setup
	$(PY) -m pytest -q test

# The inner loop for contributors: everything but the tests marked slow (training, slim, demo, launch,
# bench harness, bag replay through the node); `make test` stays the full suite CI runs.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" test

demo: setup
	$(PY) -m slimyolo_ros.demo

lint: setup
	$(VENV)/bin/ruff check slimyolo_ros test bench launch scripts

bench: setup
	$(PY) bench/run.py --json docs/benchmarks.json --node-variant "rect:=false"

clean:
	rm -rf build demo_out .pytest_cache
