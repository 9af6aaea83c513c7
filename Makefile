# `make chat` and `make test` work on a machine with only python3 and make.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# Test processes (pytest-xdist): most tests wait on real servers and subprocesses, so
# four workers overlap that waiting even on two cores. TEST_JOBS=0 runs in one process.
TEST_JOBS ?= 4

.PHONY: chat web test lint format bench eval check clean venv mail-screenshots web-screenshot

venv: $(STAMP)

# Rebuilt only when the pinned dependencies or the project metadata change.
# It says what it does: the first run installs for a while with pip kept quiet.
$(STAMP): requirements.lock pyproject.toml
	@echo "Setting up $(VENV): installing the pinned dependencies (first time: about a minute)..."
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	@echo "Setting up $(VENV): installing clusterbot itself..."
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	@touch $(STAMP)
	@echo "Setting up $(VENV): done."

chat: $(STAMP)
	$(BIN)/clusterbot chat $(ARGS)

# The web chat in a browser: http://127.0.0.1:8081/chat (web.listen / web.port).
web: $(STAMP)
	$(BIN)/clusterbot web $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -n $(TEST_JOBS) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bot tests bench
	$(BIN)/ruff format --check bot tests bench
	$(BIN)/mypy --strict bot

format: $(STAMP)
	$(BIN)/ruff format bot tests bench
	$(BIN)/ruff check --fix bot tests bench

bench: $(STAMP)
	$(BIN)/python bench/faq.py
	@for b in dialogue outbox reminders telegram web; do \
	  if [ -f bench/$$b.py ]; then $(BIN)/python bench/$$b.py || exit 1; fi; \
	done

# Pictures of the mails in docs/mail/ (needs Debian's chromium: apt-get install -y chromium).
mail-screenshots: $(STAMP)
	$(BIN)/python docs/mail/render.py

# FAQ understanding on the blind evaluation sets (dev, held-out, fresh) beside the old
# matcher, with latency on a 5 000-entry knowledge base and the cold `ask` time.
eval: $(STAMP)
	$(BIN)/python bench/faq.py $(ARGS)

web-screenshot: $(STAMP)
	$(BIN)/python scripts/web_screenshot.py

check: $(STAMP)
	$(BIN)/clusterbot check $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
