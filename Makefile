# Two set-up commands (README): `make demo` and `make test`. Each installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
LAB := .lab

.PHONY: demo test unit lint deps sshd busybox install clean

# Debian 12 as root: python3-venv and openssh-server come from apt; as a normal user we say how.
deps:
	@if ! $(PY) -c 'import ensurepip, venv' >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip; \
	  else echo "python3-venv missing: run as root: apt-get install -y python3-venv" >&2; exit 1; fi; fi

sshd:
	@if [ ! -x /usr/sbin/sshd ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client; \
	  else echo "sshd missing: run as root: apt-get install -y openssh-server" >&2; exit 1; fi; fi

# busybox lets the probe tests run on busybox applets alone (targets need only POSIX sh).
busybox:
	@if ! command -v busybox >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox; \
	  else echo "busybox missing (its tests skip): apt-get install -y busybox" >&2; fi; fi

$(STAMP): pyproject.toml | deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# The main job on the local lab: bring it up, audit it, take it down.
demo: $(STAMP) sshd
	@$(BIN)/fleet lab down --state-dir $(LAB) >/dev/null 2>&1 || true
	$(BIN)/fleet lab up --hosts 6 --state-dir $(LAB) --inventory-out inventory/lab.yml
	@rc=0; $(BIN)/fleet audit -i inventory/lab.yml --cpu-window 2 || rc=$$?; \
	  $(BIN)/fleet lab down --state-dir $(LAB); \
	  echo "fleet audit exit code $$rc (bit 1: non-compliant hosts, bit 4: unreachable/error hosts)"; \
	  [ $$rc -ne 2 ] && [ $$rc -lt 8 ]

test: $(STAMP) sshd busybox
	$(BIN)/ruff check fleet tests
	$(BIN)/pytest -q -m 'not e2e'

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check fleet tests

clean:
	-$(BIN)/fleet lab down --state-dir $(LAB) >/dev/null 2>&1
	rm -rf $(VENV) $(LAB) inventory/lab.yml .pytest_cache .ruff_cache *.egg-info
