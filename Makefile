# bellad: the two commands are `make run` and `make test`.
# Each installs what it needs: Debian packages (with sudo when not root) and a
# virtual environment in .venv.

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONFIG ?= config/bellad.toml

# Debian packages needed to build and run bellad (PyAudio and systemd-python compile).
APT_RUN := python3-venv python3-dev gcc pkg-config libportaudio2 portaudio19-dev libsystemd-dev
# ...and what the tests use for real: a broker, a sound server, a systemd container.
APT_TEST := $(APT_RUN) mosquitto mosquitto-clients pulseaudio pulseaudio-utils \
	libasound2-plugins openssl debootstrap systemd-container shellcheck

.PHONY: help run setup setup-dev test lint typecheck unit integration system bench \
	install uninstall clean

help:
	@echo "make run        set up and run the daemon in the foreground (config: $(CONFIG))"
	@echo "make test       set up and run lint, type checks and every test"
	@echo "make bench      run the benchmarks (figures against their targets)"
	@echo "make install    install bellad as a systemd service (as root)"
	@echo "make uninstall  remove the service (keeps /etc/bellad and /var/lib/bellad)"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# --- set up -------------------------------------------------------------------
$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	scripts/apt-deps.sh $(APT_RUN)
	$(BIN)/pip install -q -e '.[systemd]'
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	scripts/apt-deps.sh $(APT_TEST)
	$(BIN)/pip install -q -e '.[systemd,dev,bench]'
	# torch (CPU) checks the built-in sentiment model against its training framework
	$(BIN)/pip install -q 'torch==2.13.0' || \
		$(BIN)/pip install -q torch --index-url https://download.pytorch.org/whl/cpu
	$(BIN)/pip install -q -e '.[train]'
	touch $@ $(VENV)/.run-installed

setup: $(VENV)/.run-installed
setup-dev: $(VENV)/.dev-installed

# --- run ----------------------------------------------------------------------
run: setup
	$(BIN)/bellad --config $(CONFIG) models ensure
	$(BIN)/bellad --config $(CONFIG) run

# --- test ---------------------------------------------------------------------
lint: setup-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	shellcheck scripts/*.sh

typecheck: setup-dev
	$(BIN)/mypy

unit: setup-dev
	$(BIN)/pytest tests/unit

integration: setup-dev
	$(BIN)/pytest tests/integration

system: setup-dev
	$(BIN)/pytest tests/system

test: lint typecheck
	$(BIN)/pytest tests

bench: setup-dev
	$(BIN)/bellad bench --out bench/out
	$(BIN)/python -m bench.sentiment

# --- service ------------------------------------------------------------------
install:
	scripts/install.sh --enable --models --now

uninstall:
	scripts/uninstall.sh

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache bench/out
