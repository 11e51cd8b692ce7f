# The two commands a fresh machine needs:  make demo  and  make test.
# Each creates or updates the virtualenv in .venv, installs lrkit into it, then runs.
VENV   := .venv
PYTHON := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs bench clean system-deps

$(STAMP): pyproject.toml constraints.txt | system-deps
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -c constraints.txt -e '.[test,dev]'
	touch $(STAMP)

# Debian packages: headless Chromium + chromedriver (tests/test_report_browser.py), the full
# Fashion-MNIST (tasks fashion-cnn, fashion-transfer) and the fortunes text (task charlm-transformer).
SYSTEM_FILES := /usr/bin/chromium /usr/bin/chromedriver \
	/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz /usr/share/games/fortunes/zippy
system-deps:
	@for file in $(SYSTEM_FILES); do [ -e $$file ] || missing=1; done; \
	if [ -n "$$missing" ]; then \
	  if ! command -v apt-get >/dev/null; then \
	    echo "system-deps: no apt-get; install chromium chromium-driver dataset-fashion-mnist fortunes yourself"; \
	  else \
	    SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	    $$SUDO apt-get update -qq && \
	    $$SUDO apt-get install -y chromium chromium-driver dataset-fashion-mnist fortunes; \
	  fi; \
	fi

demo: $(STAMP)
	$(VENV)/bin/lrkit demo

# The gates before the tests: layer contracts (docs/architecture.md), style, types.
lint: $(STAMP)
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

# The documentation site (mkdocs.yml), offline and --strict: a broken link or an unreadable
# docstring fails it. `make test` builds it too, so CI does.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

test: lint docs
	$(PYTHON) -m pytest -n 2 -q

clean:
	rm -rf $(VENV) build site *.egg-info src/*.egg-info
