# Two entry points: `make demo` (index + search + eval on SciFact) and `make test`.
PY ?= python3
VENV ?= .venv
DATA ?= ../shared/data/scifact
INDEX ?= indexes/scifact
EPOCHS ?=  # empty: the library default (TrainConfig.epochs)
export HF_HUB_OFFLINE = 1
export TRANSFORMERS_OFFLINE = 1

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PY) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -c constraints.txt -e '.[dev]'
	touch $@

venv: $(VENV)/.installed

demo: $(VENV)/.installed
	$(VENV)/bin/genir index $(DATA) --out $(INDEX) $(if $(EPOCHS),--epochs $(EPOCHS)) --dev-fraction 0.2 --seed 0
	$(VENV)/bin/genir search $(INDEX) "vitamin D deficiency and bone fractures" -k 5 --mode hybrid
	$(VENV)/bin/genir eval $(INDEX) --data $(DATA) --split dev --out $(INDEX)-report.json

test: $(VENV)/.installed
	$(VENV)/bin/python -m pytest -q

.PHONY: venv demo test
