# One way to do each chore. Every target builds its own virtualenv, so a fresh
# Debian machine with Python 3.11+ needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Every install takes the versions pinned there, build backend included, so a new
# release of a tool or library changes nothing until it is pinned.
CONSTRAINTS := constraints.txt
PIP_INSTALL := pip install --quiet --constraint $(CONSTRAINTS) --build-constraint $(CONSTRAINTS)
CHROMIUM ?= /usr/bin/chromium
# Reactions are emoji: without a colour emoji font, Chromium draws them as boxes in the
# browser tests' screenshots.
EMOJI_FONT ?= /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
CADDY ?= /usr/bin/caddy
# The README test types the README's commands, which use curl and jq.
CURL ?= /usr/bin/curl
JQ ?= /usr/bin/jq
# The benchmark's C reference: Debian's nginx with the Nchan module.
NCHAN ?= /usr/lib/nginx/modules/ngx_nchan_module.so

# The client libraries a postgresql:// or redis:// FEED_DATABASE_URL or FEED_BROKER_URL
# needs, as extras of pyproject.toml (feed/extras.py, which needs nothing installed).
URL_EXTRAS = $(shell $(PYTHON) -m feed.extras)

.PHONY: run test test-fast screenshots check bench constraints clean

# A virtualenv gets its pip from ensurepip, which Debian packages apart, in python3-venv
# (versioned, e.g. python3.11-venv): without it, say what to install before making one.
define need_ensurepip
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || { \
		package=$$($(PYTHON) -c 'import sys; print("python%d.%d-venv" % sys.version_info[:2])'); \
		echo "$(PYTHON) cannot make a virtualenv: its ensurepip module is missing." >&2; \
		echo "On Debian or Ubuntu, install $$package (as root: apt-get install $$package)," \
			"then run make again." >&2; \
		exit 1; }
endef

# pip is pinned first: the one a new virtualenv brings may not know --build-constraint.
$(BIN)/feed: pyproject.toml $(CONSTRAINTS)
	$(need_ensurepip)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --constraint $(CONSTRAINTS) pip
	$(BIN)/$(PIP_INSTALL) -e .
	touch $@

$(VENV)/.test-deps: $(BIN)/feed
	$(BIN)/$(PIP_INSTALL) -e '.[test]'
	touch $@

# One extra at a time, each once, named by the stamp's suffix.
$(VENV)/.extra-%: $(BIN)/feed
	$(BIN)/$(PIP_INSTALL) -e '.[$*]'
	touch $@

run: $(BIN)/feed $(URL_EXTRAS:%=$(VENV)/.extra-%)
	@echo 'feed is installed in $(abspath $(BIN)). For `feed` and `python -m feed` in another shell:'
	@echo '    export PATH="$(abspath $(BIN)):$$PATH"'
	$(BIN)/feed serve

# Browser tests need Debian's Chromium, and the deployment test Debian's Caddy as the
# reverse proxy; install them when they are missing. A package's postinst must not start
# a system daemon (Caddy's would take port 80): a policy-rc.d that refuses every start
# is in place during the install, and the unit is left disabled where systemd runs.
define apt_install
	set -e; made_policy=; \
	if [ ! -e /usr/sbin/policy-rc.d ]; then \
		printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; \
		chmod 755 /usr/sbin/policy-rc.d; made_policy=1; \
	fi; \
	trap '[ -z "$$made_policy" ] || rm -f /usr/sbin/policy-rc.d' EXIT; \
	apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(1)
endef

$(CHROMIUM):
	$(call apt_install,chromium)

$(EMOJI_FONT):
	$(call apt_install,fonts-noto-color-emoji)

$(CADDY):
	$(call apt_install,caddy)
	if [ -d /run/systemd/system ]; then systemctl disable --now caddy.service; fi

$(CURL):
	$(call apt_install,curl)

$(JQ):
	$(call apt_install,jq)

# Most of a test's time is spent waiting on the servers it starts, so the suite runs on
# one pytest-xdist worker per core, at most four: each worker starts its own PostgreSQL
# and Valkey. loadgroup keeps a module that shares Chromium on one worker
# (tests/conftest.py groups them) and hands out every other test one at a time.
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 4 ? n : 4 )))

# The slowest tests are listed at the end: the suite must stay under 15 minutes here.
test: $(VENV)/.test-deps $(CHROMIUM) $(EMOJI_FONT) $(CADDY) $(CURL) $(JQ)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadgroup --durations=25

# The core logic alone: no browser, no server process, no PostgreSQL (tests/tiers.py
# marks the rest slow, and fails an unmarked test that starts a process). Its workers
# start only when the session does, and finish sooner than one process.
test-fast: $(VENV)/.test-deps
	$(BIN)/pytest -m 'not slow' -n $(TEST_WORKERS) --dist loadgroup

# The README's screenshots, from the tests that take them (fixed content, frozen clock).
screenshots: $(VENV)/.test-deps $(CHROMIUM) $(EMOJI_FONT)
	$(BIN)/pytest -m screenshots --screenshots=docs/screenshots

check: $(VENV)/.test-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The benchmark runs its own nginx from a template in bench/ (own prefix, pid and logs,
# a loopback port); the system service must stay stopped, as for Caddy.
$(NCHAN):
	$(call apt_install,nginx libnginx-mod-nchan)
	if [ -d /run/systemd/system ]; then systemctl disable --now nginx.service; fi

$(VENV)/.bench-deps: $(VENV)/.test-deps $(NCHAN)
	$(BIN)/$(PIP_INSTALL) -e '.[bench]'
	touch $@

# Every scenario unless BENCH_ARGS names one, e.g. BENCH_ARGS="fanout --subscribers 5000",
# or one is named after it: `make bench search`.
BENCH_SCENARIOS := fanout throughput storm slow search
BENCH_SCENARIO := $(if $(filter bench,$(MAKECMDGOALS)),$(filter $(BENCH_SCENARIOS),$(MAKECMDGOALS)))
bench: $(VENV)/.bench-deps
	$(BIN)/python -m bench $(or $(BENCH_ARGS),$(BENCH_SCENARIO),all)

ifneq ($(BENCH_SCENARIO),)
.PHONY: $(BENCH_SCENARIO)
$(BENCH_SCENARIO): bench
	@:
endif

# New pins: the newest release of everything pyproject.toml allows, resolved in a
# virtualenv of its own. Run the tests with them before committing the file.
constraints:
	rm -rf .venv-pins
	$(PYTHON) -m venv .venv-pins
	.venv-pins/bin/python -m pip install --quiet --upgrade pip hatchling
	.venv-pins/bin/pip install --quiet -e '.[bench]'
	{ sed -n '/^#/p' $(CONSTRAINTS); .venv-pins/bin/pip freeze --all --exclude-editable \
	  | grep -v '^setuptools==' | sort -f; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)
	rm -rf .venv-pins

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
