# The two commands: `make test` and `make run`. Both set up .venv once (idempotent:
# the stamp is only rebuilt when the lock or setup.py change).
VENV    ?= .venv
PY      := $(VENV)/bin/python
STAMP   := $(VENV)/.installed
ARGS    ?=
IMAGE   ?= mnist-adv-tfx:latest
PYTEST_ARGS ?=

export PYTHONWARNINGS ?= ignore::DeprecationWarning
export TF_CPP_MIN_LOG_LEVEL ?= 3

.PHONY: install test test-fast run inspect bench lock kubeflow-compile image clean

$(STAMP): requirements.lock setup.py scripts/bootstrap.sh
	@bash scripts/bootstrap.sh
	@touch $@

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# The edit loop: everything but the long end-to-end runs (marked slow).
test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

run: $(STAMP)
	$(PY) -m pipeline.local_runner $(ARGS)

inspect: $(STAMP)
	$(PY) -m pipeline.lineage $(ARGS)

bench: $(STAMP)
	$(PY) bench/ingest.py
	$(PY) bench/train_step.py
	$(PY) bench/evaluate.py

kubeflow-compile: $(STAMP)
	$(PY) -m kubeflow.compile --output kubeflow/build/pipeline.yaml $(ARGS)

# BuildKit: the Dockerfile's own .dockerignore and multi-stage targets. DOCKER_ARGS
# passes extra flags, e.g. DOCKER_ARGS="--target beam-worker" (see kubeflow/README.md).
image:
	DOCKER_BUILDKIT=1 docker build -f kubeflow/Dockerfile $(DOCKER_ARGS) -t $(IMAGE) .

# Regenerates the lock from requirements.in (needs the venv's uv).
lock: $(STAMP)
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf $(VENV) runs serving kubeflow/build
