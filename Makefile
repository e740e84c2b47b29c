# make demo: create .venv, install robusthash, run the demo.
# make test: run the test suite (creates .venv when missing).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench-speed results-classical clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robusthash demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2

# Needs the corpus: $(PYTHON) ../shared/corpus/build_corpus.py corpus
bench-speed: $(STAMP)
	$(PY) benchmarks/hash_speed.py --corpus corpus --out benchmarks/out

# The baseline report of every classical hasher on the corpus test split (needs the corpus).
results-classical: $(STAMP)
	$(VENV)/bin/robusthash bench --images corpus/test.txt --sample 400 --attacks all --out results/classical

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
