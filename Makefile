# rhel-book: two commands on a fresh machine.
#   make test   creates .venv, installs the project with every extra, runs the whole test suite
#   make book   creates .venv, installs, executes the notebooks at smoke scale, builds the HTML
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
PROFILE ?= smoke

.PHONY: install browser test book lint bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check uv

install: $(PY)
	$(UV) pip install --quiet --python $(PY) -e '.[all]'

# Debian's Chromium for the browser test of the rendered book (Playwright drives it; it never
# downloads a browser of its own).
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: install browser
	$(PY) -m pytest -q -n 2 --dist loadgroup

book: install
	$(PY) book/build.py --profile $(PROFILE)

lint: install
	$(VENV)/bin/ruff check rhel_lib tests benchmarks data_dir book

bench: install
	$(PY) benchmarks/step_cost.py

clean:
	rm -rf _build .pytest_cache
