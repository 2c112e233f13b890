"""The galexie layout: object keys, the manifest, batches, compression forms, S3."""

from __future__ import annotations

import pytest

from obsrvr_ray.errors import ConfigError
from obsrvr_ray.ledger.framing import ZSTD_MAGIC, zstd_compress, zstd_decompress
from obsrvr_ray.network import PUBNET
from obsrvr_ray.objectstore import LocalStore, S3Options, S3Store
from obsrvr_ray.sinks.lake_writer import LakeWriter, encode_batch, read_ledger_file
from obsrvr_ray.sources.lake_layout import CONFIG_KEY, LakeConfig
from obsrvr_ray.sources.lake_source import LakeSource
from tests.conftest import CONSECUTIVE, LEDGERS_DIR


@pytest.mark.parametrize(
    ("per_partition", "seq", "per_batch", "key"),
    [  # SEP-54 / galexie schema examples
        (1, 5, 1, "FFFFFFFA--5.xdr.zst"),
        (1, 5, 10, "FFFFFFFF--0-9.xdr.zst"),
        (2, 10, 100, "FFFFFFFF--0-199/FFFFFFFF--0-99.xdr.zst"),
        (2, 150, 50, "FFFFFF9B--100-199/FFFFFF69--150-199.xdr.zst"),
        (4, 250, 50, "FFFFFF37--200-399/FFFFFF05--250-299.xdr.zst"),
        (64000, 50000000, 1, "FD054DFF--49984000-50047999/FD050F7F--50000000.xdr.zst"),
        (64000, 62148003, 1, "FC4BC1FF--62144000-62207999/FC4BB25C--62148003.xdr.zst"),
    ],
)
def test_object_keys_follow_sep54(per_partition, seq, per_batch, key):
    config = LakeConfig(ledgers_per_batch=per_batch, batches_per_partition=per_partition)
    assert config.batch_key(seq) == key


def test_manifest_round_trip_and_validation():
    config = LakeConfig(network_passphrase=PUBNET, ledgers_per_batch=8, batches_per_partition=16)
    assert LakeConfig.from_json(config.to_json()) == config
    with pytest.raises(ConfigError, match="ledgersPerBatch"):
        LakeConfig.from_json(b'{"ledgersPerBatch": 0}')
    with pytest.raises(ConfigError, match="not valid JSON"):
        LakeConfig.from_json(b"{nope")


def test_zstd_frame_without_content_size_is_streamed():
    """The stellar-go galexie file has no content size in its frame header."""
    raw = (LEDGERS_DIR / "stellar-go" / "FCD285FF--53312000.xdr.zstd").read_bytes()
    import zstandard

    assert zstandard.get_frame_parameters(raw).content_size == zstandard.CONTENTSIZE_UNKNOWN
    out = zstd_decompress(raw)
    assert len(out) > len(raw)
    ours = zstd_compress(b"x" * 1000)
    assert ours.startswith(ZSTD_MAGIC)
    assert zstandard.get_frame_parameters(ours).content_size == zstandard.CONTENTSIZE_UNKNOWN


def test_every_file_form_is_read():
    forms = {p.name: dict(read_ledger_file(p)) for p in sorted(LEDGERS_DIR.glob("*/*")) if p.suffix != ".md"}
    assert set(forms["ledgers-base64.txt"]) == {6154623, 16154623, 26154623, 46154623, 36154623}
    assert set(forms["FCD285FF--53312000.xdr.zstd"]) == {53312000}  # zstd batch
    assert set(forms["FC62697B--60659332.xdr"]) == {60659332}  # raw batch
    assert set(forms["ledger-63092990.xdr.gz"]) == {63092990}  # gzip LedgerCloseMeta


def test_multi_ledger_batches_and_legacy_extension(real_ledgers, tmp_path):
    """Batches of 4 ledgers in partitions of 2 batches, written as .xdr.zstd (older stores)."""
    config = LakeConfig(network_passphrase=PUBNET, ledgers_per_batch=4, batches_per_partition=2)
    store = LocalStore(tmp_path)
    LakeWriter(store, config).write_config()
    first, last = 63092984, 63092999  # whole batches of 4
    LakeWriter(store, config).write((s, real_ledgers[s]) for s in range(first, last + 1))
    for key in list(store.list()):
        if key.endswith(".xdr.zst"):
            (tmp_path / key).rename(tmp_path / (key + "d"))
    source = LakeSource(LocalStore(tmp_path))
    assert source.config == config
    records = list(source.records(63092986, 63092993))
    assert [r.sequence for r in records] == list(range(63092986, 63092994))
    assert all(r.ok and r.data == real_ledgers[r.sequence] for r in records)
    assert records[0].origin.endswith("/FC3D4707--63092984-63092991/FC3D4707--63092984-63092987.xdr.zstd")


def test_lake_on_s3_compatible_server(real_ledgers, s3_endpoint):
    """Upload through the importer to moto's server and read back over HTTP with boto3."""
    opts = S3Options(endpoint_url=s3_endpoint, region="us-east-1")
    store = S3Store("lake-test", "pubnet/ledgers", opts)
    store.client.create_bucket(Bucket="lake-test")
    writer = LakeWriter(store, LakeConfig(network_passphrase=PUBNET))
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in CONSECUTIVE)
    assert store.exists(CONFIG_KEY)
    source = LakeSource(S3Store("lake-test", "pubnet/ledgers", opts))
    assert source.network_passphrase == PUBNET
    records = list(source.records(CONSECUTIVE[0], CONSECUTIVE[-1]))
    assert [r.data for r in records] == [real_ledgers[s] for s in CONSECUTIVE]
    assert records[0].origin.startswith("s3://lake-test/pubnet/ledgers/FC3E15FF--63040000-63103999/")


@pytest.fixture
def batched_lake(real_ledgers, tmp_path) -> tuple[LocalStore, LakeConfig]:
    """Batches of 4 of the consecutive real ledgers, 63092984-63092999."""
    config = LakeConfig(network_passphrase=PUBNET, ledgers_per_batch=4, batches_per_partition=2)
    store = LocalStore(tmp_path)
    writer = LakeWriter(store, config)
    writer.write_config()
    writer.write((s, real_ledgers[s]) for s in range(63092984, 63093000))
    return store, config


def read_each_once(store: LocalStore) -> list:
    records = list(LakeSource(store).records(63092984, 63092999))
    assert [r.sequence for r in records] == list(range(63092984, 63093000))  # each ledger once, in order
    return records


def test_an_object_holding_another_objects_ledgers_fails_whole(batched_lake, real_ledgers):
    """A copied object would pass off the ledgers of another as its own: they would come out twice."""
    store, config = batched_lake
    key = config.batch_key(63092988)
    store.put(key, store.get(config.batch_key(63092992)))
    records = read_each_once(store)
    bad = [r for r in records if not r.ok]
    assert [r.sequence for r in bad] == list(range(63092988, 63092992))
    assert all(r.error.origin == store.describe(key) and r.error.stage == "validate" for r in bad)
    assert bad[0].error.cause == (f"object {key} holds ledger 63092992, 63092993, 63092994, 63092995, "
                                  "outside its range 63092988-63092991")
    assert all(r.data == real_ledgers[r.sequence] for r in records if r.ok)


@pytest.mark.parametrize(("held", "cause"), [
    ((63092988, 63092988, 63092990, 63092991), "holds ledger 63092988 twice"),  # the batch header is right
    ((63092988, 63092989, 63092991, 63092990), "holds its ledgers out of order"),
    ((63092988, 63092989, 63092990, 63093000), "holds ledger 63093000, outside its range 63092988-63092991"),
])
def test_an_object_whose_ledgers_contradict_its_key_fails_whole(batched_lake, real_ledgers, held, cause):
    store, config = batched_lake
    key = config.batch_key(63092988)
    store.put(key, zstd_compress(encode_batch(63092988, [real_ledgers[s] for s in held])))
    bad = [r for r in read_each_once(store) if not r.ok]
    assert [r.sequence for r in bad] == list(range(63092988, 63092992))
    assert {r.error.cause for r in bad} == {f"object {key} {cause}"}
