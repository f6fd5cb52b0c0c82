# segdeep: `make demo` and `make test` set themselves up (.venv on first use) and are quick after.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_OUT ?= demo_out

.PHONY: demo test lint bench train-default screenshots sysdeps clean-venv

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev,oracle]"
	@touch $(STAMP)

sysdeps:
	@scripts/system_deps.sh

demo: $(STAMP)
	@scripts/demo.sh $(DEMO_OUT)

test: $(STAMP) sysdeps
	$(VENV)/bin/ruff check core napari_segdeep tests benchmarks scripts
	$(PY) -m pytest -q

bench: $(STAMP)
	@for b in benchmarks/*.py; do case $$b in */_*) continue;; esac; echo "== $$b"; $(PY) $$b || exit 1; done

train-default: $(STAMP)
	$(PY) scripts/train_default.py

screenshots: $(STAMP) sysdeps
	xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) scripts/screenshots.py

clean-venv:
	rm -rf $(VENV)
