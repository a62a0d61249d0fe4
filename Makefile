# The two commands a fresh machine needs: `make demo` and `make test`.
# Each installs what is missing first (scripts/bootstrap.sh) and is safe to run twice.
VENV := .venv
BIN := $(VENV)/bin

.PHONY: setup demo test test-long faults fuzz bench bench-full docs floors clean

setup:
	@bash scripts/bootstrap.sh

demo: setup  ## run drfleet's main job on its embedded defaults
	$(BIN)/drfleet demo

test: setup  ## the test suite (under 10 minutes on 2 cores; 3 pytest-xdist workers, fault scenarios on one)
	$(BIN)/python -m pytest -q -n 3 --dist loadgroup

test-long: setup  ## long scenarios excluded from `make test`
	$(BIN)/python -m pytest -q -m slow

faults: setup  ## fault injection and soak at full scale (~45 min): prints the table, writes docs/faults.md
	$(BIN)/python -m pytest -q -m slow tests/faults
	$(BIN)/python -m tests.faults.report

fuzz: setup  ## property-based bad-input tests with a long budget (tests/fuzz)
	DRFLEET_FUZZ_EXAMPLES=3000 $(BIN)/python -m pytest -q tests/fuzz

bench: setup  ## benchmarks, side by side with the tools users would otherwise use
	$(BIN)/python -m bench.run

bench-full: setup  ## the sizes the README quotes (1 GB database, 100,000-file tree; about 15 minutes)
	$(BIN)/python -m bench.run --full

docs: setup  ## regenerate the generated pages (plan reference, settings, runbook pages, recovery checklists)
	$(BIN)/drfleet plan docs --all docs

floors: setup  ## the import contracts (also run by `make test`)
	$(BIN)/python scripts/check_floors.py

clean:
	rm -rf .drfleet .pytest_cache
