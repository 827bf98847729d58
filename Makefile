VENV ?= .venv
PROFILE ?= cpu
EXTRAS ?=
PY := $(VENV)/bin/python
comma := ,
STAMP := $(VENV)/.installed-$(PROFILE)$(if $(EXTRAS),-$(subst $(comma),-,$(EXTRAS)))

.PHONY: install demo test lint bench validate clean

install: $(STAMP)

# Reinstalls only when the project's requirements change.
$(STAMP): pyproject.toml deploy/install.sh
	EXTRAS=$(EXTRAS) deploy/install.sh $(VENV) $(PROFILE)
	touch $@

demo: $(STAMP)
	$(VENV)/bin/dialoguellm demo --watch

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest -x -q

lint: $(STAMP)
	$(PY) -m ruff check .

validate: $(STAMP)
	$(PY) deploy/validate/validate.py

bench: $(STAMP)
	$(VENV)/bin/dialoguellm bench engine --limit 128

clean:
	rm -rf $(VENV) *.egg-info
