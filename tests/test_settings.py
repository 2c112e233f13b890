"""One settings model (issue 12): the backfill's file and flags, the live app's settings and the
security settings refuse an unknown key and a bad value alike, naming the key (or the flag, or the
environment variable) it came under; the old flag spellings still work; exit codes are one set."""

from __future__ import annotations

import argparse
import signal

import pytest

from obsrvr_ray import exit_codes
from obsrvr_ray.backfill_settings import add_arguments, from_arguments
from obsrvr_ray.cli import build_parser, main
from obsrvr_ray.errors import ConfigError
from obsrvr_ray.network import PASSPHRASES, PUBNET, resolve_network
from obsrvr_ray.security.security_settings import SecuritySettings
from obsrvr_ray.serve.serve_settings import live_config_from_args

LIVE = {"rpc_url": "http://127.0.0.1:9/", "dataset": "/tmp/obsrvr-unused", "network": "sandbox"}


def _backfill(*argv: str):
    parser = argparse.ArgumentParser(prog="obsrvr-ray backfill")
    add_arguments(parser)
    return from_arguments(parser.parse_args(["--source", "/lake", "--out", "/o", "--ledgers", "3", *argv]))


def test_every_settings_model_tells_an_unknown_key_alike(tmp_path):
    path = tmp_path / "backfill.yaml"
    path.write_text("processing: {batch_sise: 8}\n")
    with pytest.raises(ConfigError, match=r"processing.batch_sise: unknown key \(known here: .*\); did you mean "
                                          r"'batch_size'\?"):
        _backfill("--config", str(path))
    with pytest.raises(ConfigError, match=r"^commit_evry: unknown key \(known here: .*\); did you mean 'commit_every'"):
        live_config_from_args({**LIVE, "commit_evry": 4})
    with pytest.raises(ConfigError, match=r"^resilience.rpc_timout: unknown key .*did you mean 'rpc_timeout'"):
        live_config_from_args({**LIVE, "resilience": {"rpc_timout": 4}})
    with pytest.raises(ConfigError, match=r"^security.jwt.audiense: unknown key .*did you mean 'audience'"):
        live_config_from_args({**LIVE, "security": {"jwt": {"audiense": "api"}}})


def test_a_bad_value_is_named_by_where_it_came_from(tmp_path):
    path = tmp_path / "backfill.yaml"
    path.write_text("processing: {batch_size: -3}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: processing.batch_size: expected a whole number >= 1, got -3$"):
        _backfill("--config", str(path))
    with pytest.raises(ConfigError, match=r"^--batch-size: expected a whole number >= 1, got '-3'$"):
        _backfill("--batch-size", "-3")
    with pytest.raises(ConfigError, match=r"^commit_every: expected a whole number >= 1, got 0$"):
        live_config_from_args({**LIVE, "commit_every": 0})
    with pytest.raises(ConfigError, match=r"^--flight-port: expected a whole number >= 0, got 'x'$"):
        live_config_from_args({**LIVE, "flight_port": "x"}, names={"flight_port": "--flight-port"})
    with pytest.raises(ConfigError, match=r"^OBSRVR_BURST_PER_IP: expected a whole number, got 'many'$"):
        SecuritySettings.load(env={"OBSRVR_BURST_PER_IP": "many"})
    with pytest.raises(ConfigError, match=r"^rate_per_ip: expected a number >= 0.0, got -1$"):
        SecuritySettings(rate_per_ip=-1)


def test_one_flag_name_and_the_old_spellings_still_work(capsys):
    config = _backfill("--format", "jsonl", "--format", "csv", "--ray-address", "auto")
    assert config.formats == ("jsonl", "csv") and config.ray_address == "auto"
    old = _backfill("--formats", "jsonl,csv", "--address", "auto")
    assert (old.formats, old.ray_address) == (config.formats, config.ray_address)
    assert capsys.readouterr().err.splitlines() == ["obsrvr-ray backfill: --formats is deprecated, use --format",
                                                    "obsrvr-ray backfill: --address is deprecated, use --ray-address"]
    helptext = build_parser()._subparsers._group_actions[0].choices["backfill"].format_help()
    assert "--format" in helptext and "--ray-address" in helptext
    assert "--formats" not in helptext and "--address " not in helptext  # documented once, by its one name


def test_one_set_of_exit_codes_and_one_network_rule():
    assert (exit_codes.OK, exit_codes.FAILURES, exit_codes.USAGE) == (0, 1, 2)
    assert exit_codes.INTERRUPTED == exit_codes.stopped_by(signal.SIGINT) == 130  # export and backfill alike
    assert exit_codes.stopped_by(signal.SIGTERM) == 143
    assert resolve_network("testnet", PUBNET) == PASSPHRASES["testnet"]  # the operator's choice wins
    assert resolve_network(None, PASSPHRASES["sandbox"]) == PASSPHRASES["sandbox"]  # then the source's
    assert resolve_network(None, None) == PUBNET


@pytest.mark.parametrize("argv, said", [
    (["export", "ledgers", "--source", "/lake", "--out", "/o", "--flush-every", "0"],
     "--flush-every: expected a whole number >= 1, got '0'"),
    (["lake", "import", "a.xdr", "--out", "/o", "--ledgers-per-batch", "many"],
     "--ledgers-per-batch: expected a whole number >= 1, got 'many'"),
    (["table", "vacuum", "--out", "/o", "--retention-hours", "-1"],
     "--retention-hours: expected a number >= 0.0, got '-1'"),
    (["keys", "create", "--store", "/nonexistent/keys.json", "--expires-days", "0"],
     "--expires-days: expected a positive number, got '0'"),
    (["rpc", "serve", "--lake", "/lake", "--start", "3", "--end", "9", "--port", "http"],
     "--port: expected a whole number >= 0, got 'http'"),
    (["inspect", "out.parquet", "--rows", "x"], "--rows: expected a whole number >= 0, got 'x'"),
    # serve checks its settings before it joins a cluster or asks the RPC node anything
    (["serve", "--rpc", "http://127.0.0.1:1", "--dataset", "/d", "--network", "testnet", "--dev", "--port", "abc"],
     "--port: expected a whole number >= 0, got 'abc'"),
    (["serve", "--rpc", "http://127.0.0.1:1", "--dataset", "/d", "--network", "testnet", "--dev",
      "--flight-port", "-1"], "--flight-port: expected a whole number >= 0, got '-1'"),
])
def test_every_command_refuses_a_bad_flag_in_the_one_style(argv, said, capsys):
    """Each command's flags are a settings model: a bad value is refused before anything runs, in
    the backfill's style, naming the flag, with the usage exit code."""
    assert main(argv) == exit_codes.USAGE
    assert capsys.readouterr().err.splitlines() == [f"obsrvr-ray: configuration error: {said}"]
