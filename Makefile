# cbedflow: `make run` (tiny campaign) and `make test` (whole suite) set up
# everything they need from the pinned files in envs/.
PYTHON ?= python3
SIM := .venv/simulate
SIM_PY := $(SIM)/bin/python
CONFIG ?= config/config.yaml
PROFILE ?= profiles/local
export PATH := $(abspath $(SIM))/bin:$(PATH)

.PHONY: run test test-fast envs clean dry-run-paper

envs: $(SIM)/.done

$(SIM)/.done: envs/simulate.requirements.txt pyproject.toml
	$(PYTHON) -m venv $(SIM)
	$(SIM_PY) -m pip install --quiet --upgrade pip
	$(SIM_PY) -m pip install --quiet -r envs/simulate.requirements.txt
	$(SIM_PY) -m pip install --quiet --no-deps -e .
	touch $@

run: $(SIM)/.done
	$(SIM)/bin/snakemake --profile $(PROFILE) --configfile $(CONFIG)
	@$(SIM_PY) -m cbedflow summary --configfile $(CONFIG)

dry-run-paper: $(SIM)/.done
	$(SIM)/bin/snakemake -n --configfile config/paper.yaml

test: $(SIM)/.done
	$(SIM_PY) -m pytest tests

test-fast: $(SIM)/.done
	$(SIM_PY) -m pytest tests -m "not slow"

clean:
	rm -rf results .snakemake
