# Two set-up commands (README): `make demo` and `make test`. Each installs what it needs.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)
LAB := .lab

.PHONY: demo test unit lint deps sshd busybox chromium sudo aptlists promtool qemu install clean bench bench-bastion e2e-vm audit-deps

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

# chromium renders the HTML report in its test (headless: real DOM, screenshots).
chromium:
	@if ! command -v chromium >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium missing (its test skips, fails under CI=true): apt-get install -y chromium" >&2; fi; fi

# sudo asks a real account for its real password in tests/integration/test_sudo.py.
sudo:
	@if ! command -v sudo >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sudo; \
	  else echo "sudo missing (its test skips, fails under CI=true): apt-get install -y sudo" >&2; fi; fi

$(STAMP): pyproject.toml | deps
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	rm -f $(VENV)/.installed-* && touch $@

install: $(STAMP)

# The main job on the local lab: audit it, remediate one incident host (before -> after CPU),
# audit again, remediate and roll back a second one, take the lab down. Journals go to
# $(DEMO_STATE) so a demo never mixes with your own runs.
DEMO_STATE := .fleet-state
DEMO := FLEET_STATE_DIR=$(DEMO_STATE) $(BIN)/fleet
demo: $(STAMP) sshd
	@$(BIN)/fleet lab down --state-dir $(LAB) >/dev/null 2>&1 || true
	$(BIN)/fleet lab up --hosts 7 --state-dir $(LAB) --inventory-out inventory/lab.yml
	@mkdir -p -m 700 $(DEMO_STATE); rc=0; fail=0; \
	  step() { echo; echo "== $$1"; }; \
	  step "fleet audit: which hosts have it?"; \
	  $(DEMO) audit -i inventory/lab.yml --cpu-window 2 || rc=$$?; \
	  $(DEMO) report -i inventory/lab.yml --cpu-window 2 --format json -o $(DEMO_STATE)/first-report.json || true; \
	  step "fleet profile: where does their CPU go? (perf samples, flame graphs in profile.html)"; \
	  $(DEMO) profile -i inventory/lab.yml --window 2 --html profile.html || true; \
	  step "fleet remediate --host incident-01: the plan (nothing changes yet)"; \
	  $(DEMO) remediate -i inventory/lab.yml --host incident-01; \
	  step "fleet remediate --host incident-01 --apply --yes --verify profile: fix, then prove the cause is gone"; \
	  $(DEMO) remediate -i inventory/lab.yml --host incident-01 --apply --yes --cpu-window 3 --verify profile --html remediate-profile.html || fail=1; \
	  step "fleet audit again"; \
	  $(DEMO) audit -i inventory/lab.yml --cpu-window 2 --limit 'incident*'; \
	  step "fleet remediate --host incident-07, then fleet rollback --host incident-07"; \
	  $(DEMO) remediate -i inventory/lab.yml --host incident-07 --apply --yes --cpu-window 2 || fail=1; \
	  $(DEMO) rollback -i inventory/lab.yml --host incident-07 || fail=1; \
	  $(DEMO) audit -i inventory/lab.yml --cpu-window 0 --limit incident-07; \
	  step "fleet report --profile: drift since the last report (history in $(DEMO_STATE)), report.html with a flame graph per host"; \
	  $(DEMO) report -i inventory/lab.yml --cpu-window 2 --profile --format table --format html:report.html || true; \
	  step "fleet profile: incident-01 fixed, incident-07 still spending its CPU in probes"; \
	  $(DEMO) profile -i inventory/lab.yml --window 2 || true; \
	  $(BIN)/fleet lab down --state-dir $(LAB); \
	  echo; echo "first audit exit code $$rc (bit 1: non-compliant hosts, bit 4: unreachable/error hosts)"; \
	  [ $$rc -ne 2 ] && [ $$rc -lt 8 ] && [ $$fail -eq 0 ]

# The netdata.conf tests run Debian's netdata binary (apt-get download, never installed);
# apt-get download needs package lists, which a fresh image may not have.
aptlists:
	@if ! apt-cache show netdata-core >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq; \
	  else echo "no apt package lists (the netdata tests skip): run as root: apt-get update" >&2; fi; fi

test: $(STAMP) sshd busybox chromium sudo aptlists promtool
	$(BIN)/ruff check fleet tests
	$(BIN)/pytest -q -m 'not e2e'

# promtool checks and unit-tests docs/alerts.yml: Debian's prometheus package ships it; only
# the binary is taken (apt-get download + dpkg -x into the venv): no service is installed.
promtool: $(STAMP) aptlists
	@if ! command -v promtool >/dev/null && [ ! -x $(BIN)/promtool ]; then \
	  d=$$(mktemp -d); \
	  (cd $$d && apt-get download -q prometheus >/dev/null 2>&1 && dpkg -x prometheus_*.deb x \
	    && cp x/usr/bin/promtool $(CURDIR)/$(BIN)/promtool); rm -rf $$d; \
	  [ -x $(BIN)/promtool ] || echo "promtool missing (its tests skip, fail under CI=true): apt-get install -y prometheus" >&2; fi

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

lint: $(STAMP)
	$(BIN)/ruff check fleet tests

# `make bench` (never part of `make test`): fleet audit against a bare paramiko pool (the
# floor), ansible-core -m raw / -m shell and pyinfra on a loopback lab; bench/results.json.
# About 9 minutes on 2 cores. BENCH_HOSTS=1000 runs every tool at N=1000 (much longer);
# BENCH_SCALE, BENCH_ROUNDS, BENCH_PAIR_ROUNDS, BENCH_FORKS, BENCH_TOOLS: bench/run.py --help.
# bench/profile.py: what fleet profile costs the host (this machine's real perf; root) and
# the client; bench/profile.json.
BENCH_VENV := .venv-bench
BENCH_STAMP := $(BENCH_VENV)/.installed-$(shell cat pyproject.toml bench/requirements*.txt | cksum | cut -d' ' -f1)

$(BENCH_STAMP): pyproject.toml bench/requirements.txt bench/requirements-pyinfra.txt | deps
	$(PY) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/pip install -q --upgrade pip
	$(BENCH_VENV)/bin/pip install -q -e . -r bench/requirements.txt
	$(PY) -m venv $(BENCH_VENV)/pyinfra
	$(BENCH_VENV)/pyinfra/bin/pip install -q -r bench/requirements-pyinfra.txt
	rm -f $(BENCH_VENV)/.installed-* && touch $@

bench: $(BENCH_STAMP) sshd
	$(BENCH_VENV)/bin/python bench/run.py
	$(BENCH_VENV)/bin/python bench/bastion.py
	$(BENCH_VENV)/bin/python bench/profile.py
	$(BENCH_VENV)/bin/python bench/scaling.py

# `make bench-bastion`: 200 hosts behind one lab bastion, fleet's fabric channels vs one
# `ssh -W` per host (FLEET_JUMP_VIA=ssh); bench/bastion.json. About 3 minutes on 2 cores.
bench-bastion: $(BENCH_STAMP) sshd
	$(BENCH_VENV)/bin/python bench/bastion.py

# `make e2e-vm` (CI runs it after `make test`): the real-kernel tier. Builds a Debian 12 guest
# from apt-get download (cached in $(E2E_DIR)), boots it under QEMU (KVM one short try, then
# TCG) with sshd on 127.0.0.1 only, and drives the real fleet CLI against it. docs/e2e.md.
E2E_DIR ?= .e2e-vm
qemu:
	@if ! command -v qemu-system-x86_64 >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-system-x86; \
	  else echo "qemu missing: run as root: apt-get install -y qemu-system-x86" >&2; exit 1; fi; fi
	@# apt-get download needs package lists; a fresh image may have none.
	@if ! apt-cache show linux-image-amd64 >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq; \
	  else echo "no apt package lists: run as root: apt-get update" >&2; exit 1; fi; fi

e2e-vm: $(STAMP) sshd qemu
	FLEET_E2E_DIR=$(E2E_DIR) $(BIN)/python -m tests.e2e.vm build
	FLEET_E2E_DIR=$(E2E_DIR) $(BIN)/pytest -q -m e2e tests/e2e

# `make audit-deps`: pip-audit of every installed dependency (pinned by pip freeze). Needs the
# PyPI JSON API or api.osv.dev; CI machines reach only a package mirror, so CI cannot run it
# (docs/security.md).
audit-deps: $(STAMP)
	$(BIN)/pip install -q pip-audit
	$(BIN)/pip freeze --exclude-editable > $(VENV)/requirements.audit.txt
	$(BIN)/pip-audit --no-deps --disable-pip -r $(VENV)/requirements.audit.txt

clean:
	-$(BIN)/fleet lab down --state-dir $(LAB) >/dev/null 2>&1
	rm -rf $(VENV) $(BENCH_VENV) $(LAB) $(E2E_DIR) inventory/lab.yml .pytest_cache .ruff_cache *.egg-info
