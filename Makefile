# grokkit: two commands on a fresh machine, `make fit` and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
CONFIG ?= configs/default.yaml

.PHONY: fit test lint tensorboard bench bench-paper bench-profile study clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	# torch first and pinned: an unpinned torch would pull several GB of CUDA packages.
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

fit: $(VENV)/.installed
	$(VENV)/bin/grokkit fit --config $(CONFIG)

# He et al.'s five regimes x 2 seeds at CPU scale, as many at once as there are cores (see README, "The study").
study: $(VENV)/.installed
	$(VENV)/bin/grokkit study --scale cpu --seeds 0 1

# One pytest worker per core; a test file stays on one worker, so its module fixtures (a sweep, a study) run once.
test: $(VENV)/.installed
	$(PY) -m pytest -q -n auto --dist loadfile

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check grokkit plugins tests bench
	$(VENV)/bin/ruff format --check grokkit plugins tests bench

tensorboard: $(VENV)/.installed
	$(VENV)/bin/tensorboard --logdir runs

bench: $(VENV)/.installed
	$(PY) -m pip install --quiet -e '.[bench]'
	$(PY) bench/bench.py

# The paper-scale runs' cost (He et al.'s recursive model, Wang et al.'s 8 x 768 decoder) on this machine's GPU;
# tiny sizes on a CPU (see bench/RESULTS.md).
bench-paper: $(VENV)/.installed
	$(PY) bench/paper_scale.py

# Where the batch-512 step of bench's FLOP-fraction rows spends its time (PyTorch's profiler, by op group).
bench-profile: $(VENV)/.installed
	$(PY) bench/step_profile.py

clean:
	rm -rf $(VENV) runs data .pytest_cache
