# The two commands a fresh machine needs:  make demo  and  make test.
# Each creates or updates the virtualenv in .venv, installs lrkit into it, then runs.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

$(STAMP): pyproject.toml constraints.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/lrkit demo

test: $(STAMP)
	$(PYTHON) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
