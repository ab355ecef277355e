# Two commands for a new user: `make run` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
PROJECT ?= data

.PHONY: setup run test bench clean-venv
setup: $(VENV)/.ready

# Re-runs are a no-op unless the install recipe or the dependency list changed.
$(VENV)/.ready: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

run: setup
	$(VENV)/bin/annotator app --project $(PROJECT)

test: setup
	$(PY) -m pytest -q

bench: setup
	for b in $$(ls bench/*.py | grep -v __init__); do $(PY) -m bench.$$(basename $$b .py) || exit 1; done

clean-venv:
	rm -rf $(VENV)
