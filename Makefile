# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench setup clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade pip
	$(PY) -m pip install torch==2.13.0
	$(PY) -m pip install -e .[dev]
	touch $(STAMP)

setup: $(STAMP)

RUN := outputs/lego-$(shell date +%Y%m%d-%H%M%S)

demo: $(STAMP)
	$(VENV)/bin/omnifield train data/lego_200 --method hashgrid --minutes 3 --out $(RUN) --seed 0
	$(VENV)/bin/omnifield render $(RUN) --orbit-only --frames 48
	@echo "demo outputs in $(RUN): checkpoint, metrics.json, renders/test (render | ground truth, depth), orbit video"

test: $(STAMP)
	$(PY) -m pytest -q --timeout=900

bench: $(STAMP)
	$(PY) benchmarks/recon_lego.py --quick

clean:
	rm -rf $(VENV) outputs
