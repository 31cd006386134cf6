# NanoClone: `make demo` (offline), `make run` (real Gemini keys), `make test`, `make docs`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
HOST ?= 127.0.0.1
PORT ?= 8000
# The suite on this many pytest-xdist processes, a file to each at a time (1: in this process).
TEST_WORKERS ?= 2

.PHONY: install demo run test test-scaleout test-container lint docs docs-build bench emulator clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet '.[dev]'  # the dependencies; the code runs from this folder
	rm -f $(VENV)/.installed-* && touch $(STAMP)

install: $(STAMP)

demo: install
	$(PY) manage.py serve --demo --host $(HOST) --port $(PORT)

run: install
	$(PY) manage.py serve --host $(HOST) --port $(PORT)

test: install
	$(PY) -m pytest $(if $(filter 1,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadfile) $(PYTEST_ARGS)

# Two hosts on PostgreSQL, Redis and an S3-compatible bucket (CI runs it in its PostgreSQL pass):
# needs pg_virtualenv (Debian's postgresql) and redis-server.
test-scaleout: install
	pg_virtualenv sh -c 'DATABASE_URL="postgres://$$PGUSER:$$PGPASSWORD@$$PGHOST:$$PGPORT/$$PGDATABASE" \
	  $(PY) -m pytest -m scaleout $(PYTEST_ARGS)'

# The container image and compose.yaml's stack in root podman (CI runs it): needs
# apt-get install podman buildah debootstrap runc.
test-container: install
	$(PY) -m pytest -m container -p no:cacheprovider -s $(PYTEST_ARGS) tests/deploy/test_container.py

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy .
	$(VENV)/bin/lint-imports

# The documentation site on its own port (8000 is make run's): http://127.0.0.1:8100
docs: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

# The site as CI builds it: a broken link, a missing anchor or a page left out of the navigation fails.
docs-build: install
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir $(VENV)/site

bench: install
	$(PY) bench/overhead.py
	$(PY) bench/concurrency.py
	$(PY) bench/gallery_render.py
	$(PY) bench/quota.py

emulator: install
	$(PY) manage.py gemini_emulator --port 8001

clean:
	rm -rf $(VENV) .pytest_cache
