# Two commands on a fresh machine: `make demo` and `make test`. Both create the venv and install.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo-output
DEMO_LEDGERS ?= 120
DEMO_PORT ?= 8000

.PHONY: demo demo-live demo-stop test lint install clean bench

$(STAMP): pyproject.toml setup.py obsrvr_ray/xdr/_fastxdr.c
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

# The web console's charting library (uPlot): `npm ci` of the pinned package-lock.json (sha512
# integrity) in $(VENV)/console-npm, its files copied into the package and checked against the
# sha256 digests in vendor.json. Needs node + npm (.ci/run installs them when absent).
CONSOLE := obsrvr_ray/serve/console
CONSOLE_ASSETS := $(CONSOLE)/vendor/.fetched
$(CONSOLE_ASSETS): $(CONSOLE)/package.json $(CONSOLE)/package-lock.json $(CONSOLE)/vendor.json $(CONSOLE)/fetch_assets.py
	$(PYTHON) $(CONSOLE)/fetch_assets.py --build-dir $(VENV)/console-npm

install: $(STAMP) $(CONSOLE_ASSETS)

demo: $(STAMP) $(CONSOLE_ASSETS)
	rm -rf $(DEMO)
	$(BIN)/obsrvr-sandbox generate --out $(DEMO)/lake --ledgers $(DEMO_LEDGERS)
	$(BIN)/obsrvr-ray export token-transfers --source $(DEMO)/lake --start 2 --end $$(( $(DEMO_LEDGERS) + 1 )) \
	    --out $(DEMO)/token_transfers.parquet --verify
	RAY_AUTH_MODE=disabled $(BIN)/obsrvr-ray backfill --source $(DEMO)/lake --start 2 \
	    --end $$(( $(DEMO_LEDGERS) + 1 )) --batch-size 16 --tables ledgers,transactions,token_transfers \
	    --out $(DEMO)/tables --progress-interval 5
	$(BIN)/obsrvr-ray table history --out $(DEMO)/tables --table token_transfers --limit 4
	$(BIN)/obsrvr-ray table compact --out $(DEMO)/tables --table ledgers,transactions,token_transfers
	$(BIN)/obsrvr-ray table sql --out $(DEMO)/tables \
	    "SELECT event_topic, count(*) AS events, count(DISTINCT asset) AS assets, sum(amount) AS amount \
	     FROM token_transfers GROUP BY 1 ORDER BY 2 DESC"
	$(MAKE) --no-print-directory demo-live

# The live app on a local Ray cluster, following a sandbox feed that closes a ledger every 3 s
# (a detached actor of the cluster, so both outlive this command; `ray stop` ends them).
# Local development only: Ray's token auth and the app's API keys are off, everything on 127.0.0.1.
demo-live: $(STAMP) $(CONSOLE_ASSETS)
	RAY_AUTH_MODE=disabled $(BIN)/ray status >/dev/null 2>&1 || RAY_AUTH_MODE=disabled $(BIN)/ray start --head \
	    --num-cpus 2 --disable-usage-stats --node-ip-address 127.0.0.1 --dashboard-host 127.0.0.1 >/dev/null
	rpc=$$(RAY_AUTH_MODE=disabled $(BIN)/obsrvr-sandbox feed --detach --interval 3 --history 3 --port 0) && \
	echo "sandbox getLedgers feed at $$rpc: a new ledger every 3s" && \
	RAY_AUTH_MODE=disabled $(BIN)/obsrvr-ray serve --rpc $$rpc --dev \
	    --dataset $(abspath $(DEMO))/live --detach --port $(DEMO_PORT)
	@echo "Console: http://127.0.0.1:$(DEMO_PORT)/   (web console: live transfers, volume, lookups, status; dev mode, no key)"
	@echo "Ray dashboard: http://127.0.0.1:8265   stop everything: make demo-stop"

demo-stop:
	-$(BIN)/ray stop

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

# The suite runs the compiled decoder and, in its differential tests, the pure-Python one; the
# commands' own tests then run again with the pure-Python decoder only.
test: $(STAMP) $(CONSOLE_ASSETS)
	$(BIN)/ruff check .
	$(BIN)/lint-imports
	$(BIN)/python -m pytest
	OBSRVR_PURE_XDR=1 $(BIN)/python -m pytest -q -p no:cacheprovider tests/test_bad_input.py tests/test_export.py

bench: $(STAMP)
	$(BIN)/python -m benchmarks.decode_bench
	$(BIN)/python -m benchmarks.backfill_bench
	$(BIN)/python -m benchmarks.ray_data_vs_tasks
	$(BIN)/python -m benchmarks.live_bench

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .ruff_cache $(CONSOLE)/vendor
