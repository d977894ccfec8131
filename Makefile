# The two commands: `make demo` and `make test`. Both set up .venv first when needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export YOLO_OFFLINE := 1
export DAGSTER_DISABLE_TELEMETRY := 1

.PHONY: setup demo test test-fast bench ui-screenshot dev clean

setup: $(STAMP)

# Re-installs only when pyproject.toml changed (or the venv is missing): a no-op run takes well under a second.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(BIN)/vision-pipeline demo

test: setup
	$(BIN)/pytest vision_pipeline_tests

test-fast: setup
	$(BIN)/pytest vision_pipeline_tests -m "not slow and not ui"

bench: setup
	$(BIN)/python -m bench $(if $(QUICK),--quick) $(if $(GPU),--gpu)

# Starts dagster-webserver on the materialised demo instance and screenshots the asset page.
ui-screenshot: setup
	$(BIN)/python -m vision_pipeline_tests.ui_screenshot docs/img/asset-page.png

# The Dagster UI with the daemon (sensors, schedules) on the embedded instance.
dev: setup
	$(BIN)/vision-pipeline dev

clean:
	rm -rf .vision_pipeline
