# The verbs a newcomer looks for. `make run` and `make test` do all the set-up on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
DEMO_PATIENTS ?= 10

.PHONY: run test lint fmt migrate demo bench definitions clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

migrate: $(STAMP)
	$(PY) manage.py migrate --noinput

demo: migrate
	$(PY) manage.py generate_demo_data --patients $(DEMO_PATIENTS) --seed 1 --if-empty

run: demo
	@echo
	@echo "FHIR base: http://$(HOST):$(PORT)/fhir   (try: curl http://$(HOST):$(PORT)/fhir/metadata)"
	@echo "Subscriptions' WebSocket endpoint: ws://$(HOST):$(PORT)/fhir/websocket   (docs/subscriptions.md)"
	@echo "Every call but /fhir/metadata needs a token; an operator's: $(PY) manage.py issue_token --role Admin"
	@echo
	$(PY) manage.py runserver --insecure $(HOST):$(PORT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	DJANGO_SETTINGS_MODULE=fhirplatform.settings.test $(VENV)/bin/lint-imports --no-cache

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: lint
	DJANGO_SETTINGS_MODULE=fhirplatform.settings.test $(PY) manage.py makemigrations --check --dry-run
	$(VENV)/bin/pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

bench: $(STAMP)
	bash bench/run.sh

definitions: $(STAMP)
	$(PY) scripts/generate_definitions.py

clean:
	rm -rf $(VENV) db.sqlite3 db.sqlite3-wal db.sqlite3-shm
