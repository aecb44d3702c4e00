# The two commands of README: `make demo` and `make test`. Both prepare the environment first.
.PHONY: setup demo test

setup:
	@bash scripts/setup.sh

demo: setup
	@.venv/bin/python tools/demo.py

test: setup
	@.venv/bin/python -m pytest tests
