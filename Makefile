# The two commands of the README: `make demo` (set-up + laptop suite + HTML report), `make test`.
.PHONY: setup demo test bench

setup:
	bash scripts/setup.sh

demo: setup
	.venv/bin/dlc-bench suite laptop

test: setup
	.venv/bin/python -m pytest -n 2 -q

bench: setup
	.venv/bin/python -m pytest -m benchmark -p no:xdist tests/benchmarks --benchmark-columns=min,mean,rounds
