# The two commands a fresh machine needs:  make demo  and  make test.
# Each creates or updates the virtualenv in .venv, installs lrkit into it, then runs.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean system-deps

$(STAMP): pyproject.toml constraints.txt | system-deps
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[test,dev]'
	touch $(STAMP)

# Headless Chromium + chromedriver (Debian packages) for tests/test_report_browser.py.
system-deps:
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "system-deps: no apt-get; install chromium and chromedriver yourself (the browser test skips)"; \
	  else \
	    SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && $$SUDO apt-get install -y chromium chromium-driver; \
	  fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/lrkit demo

# The gates before the tests: layer contracts (docs/architecture.md), style, types.
lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

test: lint
	$(PYTHON) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
