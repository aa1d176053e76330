# cbedflow: `make run` (tiny campaign, structures to report) and `make test`
# (whole suite) set up everything they need from the pinned files in envs/.
PYTHON ?= python3
SIM := .venv/simulate
TRAIN := .venv/train
SIM_PY := $(SIM)/bin/python
TRAIN_PY := $(TRAIN)/bin/python
CONFIG ?= config/config.yaml
PROFILE ?= profiles/local
OUT_DIR := $(shell sed -n 's/^output_dir: *//p' $(CONFIG) 2>/dev/null | head -1)
export PATH := $(abspath $(SIM))/bin:$(PATH)
export CBEDFLOW_TRAIN_ENV := $(abspath $(TRAIN))
# Horovod 0.28.1 from source against TF 2.15 with Gloo (no MPI needed locally)
HOROVOD_FLAGS := HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 \
	HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 MAKEFLAGS=-j2

.PHONY: run test test-fast envs clean dry-run-paper report reproduce

envs: $(SIM)/.done $(TRAIN)/.done

$(SIM)/.done: envs/simulate.requirements.txt pyproject.toml
	$(PYTHON) -m venv $(SIM)
	$(SIM_PY) -m pip install --quiet --upgrade pip
	$(SIM_PY) -m pip install --quiet -r envs/simulate.requirements.txt
	$(SIM_PY) -m pip install --quiet --no-deps -e .
	touch $@

$(TRAIN)/.done: envs/train.requirements.txt envs/train-horovod.requirements.txt pyproject.toml
	@command -v cmake >/dev/null || { echo "Horovod needs cmake (apt-get install cmake)"; exit 1; }
	$(PYTHON) -m venv $(TRAIN)
	$(TRAIN_PY) -m pip install --quiet --upgrade pip setuptools wheel
	$(TRAIN_PY) -m pip install --quiet -r envs/train.requirements.txt
	$(HOROVOD_FLAGS) $(TRAIN_PY) -m pip install --quiet --no-build-isolation \
		-r envs/train-horovod.requirements.txt
	$(TRAIN)/bin/horovodrun --check-build
	$(TRAIN_PY) -m pip install --quiet --no-deps -e .
	touch $@

run: envs
	$(SIM)/bin/snakemake --profile $(PROFILE) --configfile $(CONFIG)
	$(SIM)/bin/snakemake --profile $(PROFILE) --configfile $(CONFIG) --report $(OUT_DIR)/report.html
	@$(SIM_PY) -m cbedflow summary --configfile $(CONFIG)

# The paper's two results on this machine (< 2 h on 2 cores), published to docs/results/
reproduce: envs
	$(SIM_PY) benchmarks/run_measured.py --out results-reproduce/measured.json -- \
		$(SIM)/bin/snakemake --profile $(PROFILE) --configfile config/reproduce.yaml
	$(SIM)/bin/snakemake --profile $(PROFILE) --configfile config/reproduce.yaml \
		--report results-reproduce/report.html
	$(SIM_PY) -m cbedflow publish --results results-reproduce \
		--measured results-reproduce/measured.json --out docs/results

dry-run-paper: $(SIM)/.done
	$(SIM)/bin/snakemake -n --configfile config/paper.yaml

test: envs
	$(SIM_PY) -m pytest tests

test-fast: envs
	$(SIM_PY) -m pytest tests -m "not slow"

clean:
	rm -rf results .snakemake
