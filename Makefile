# The two commands a fresh machine needs: `make demo` and `make test`.
# Each installs what is missing first (scripts/bootstrap.sh) and is safe to run twice.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-long faults bench clean

setup:
	@bash scripts/bootstrap.sh

demo: setup  ## run drfleet's main job on its embedded defaults
	$(BIN)/drfleet demo

test: setup  ## the test suite (under 10 minutes on 2 cores)
	$(BIN)/python -m pytest -q

test-long: setup  ## long scenarios excluded from `make test`
	$(BIN)/python -m pytest -q -m slow

bench: setup  ## benchmarks, side by side with the tools users would otherwise use
	$(BIN)/python -m bench.run

clean:
	rm -rf .drfleet .pytest_cache
