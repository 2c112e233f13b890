"""What a backfill run needs, resolved once from its settings and its source: where to read,
how to cut the ledgers into chunks, and what every chunk task writes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from obsrvr_ray.backfill_settings import BackfillConfig
from obsrvr_ray.chunks.process import ChunkSettings
from obsrvr_ray.network import resolve_network, resolve_passphrase
from obsrvr_ray.objectstore import S3Options
from obsrvr_ray.pipeline import ExtractOptions
from obsrvr_ray.ranges import Grid
from obsrvr_ray.sinks.layout import OutputSpec
from obsrvr_ray.sources.open import SourceOptions, SourceSpec
from obsrvr_ray.sources.reach import PatienceNotice, check_reach
from obsrvr_ray.ttp.filters import EventFilter

if TYPE_CHECKING:
    from obsrvr_ray.table.tableset import Shape


@dataclass
class Job:
    """Everything a run needs besides the output's state."""

    config: BackfillConfig
    source: SourceSpec  # what each reader opens
    settings: ChunkSettings
    grid: Grid  # the chunks: whole objects of the source
    source_description: str


def source_options(config: BackfillConfig) -> SourceOptions:
    return SourceOptions(
        s3_endpoint_url=config.s3_endpoint_url, s3_region=config.s3_region, anonymous=config.anonymous,
        network_passphrase=resolve_passphrase(config.network) if config.network else None, prefetch=config.prefetch,
    )


def resolve(config: BackfillConfig) -> Job:
    """The run's job, from one opening of its source: the source must hold the requested ledgers
    (or, with wait_for_end, is waited for until it does; refused in one line otherwise, before
    anything is planned or written), and declares the network and the grid of its objects."""
    spec = SourceSpec(config.source, source_options(config))
    source = spec.open()
    try:
        check_reach(source, config.ranges, wait=config.wait_for_end, patience=config.source_patience,
                    notice=PatienceNotice("obsrvr-ray backfill"))
        passphrase = resolve_network(config.network, source.network_passphrase)
        grid = source.grid.chunks(config.batch_size)
        description = source.description
    finally:
        source.close()
    output = OutputSpec(
        config.out, config.formats, config.compression, config.partition_by, config.max_rows_per_file,
        S3Options(endpoint_url=config.out_s3_endpoint_url, region=config.out_s3_region),
    )
    extract = ExtractOptions(
        passphrase, events_from=config.events_from, decoder=config.decoder,
        filter=EventFilter.of(config.event_types, config.included_assets, config.accounts),
    )
    settings = ChunkSettings(config.tables, output, extract, config.chain_check, config.analytics, config.top_transfers)
    return Job(config, spec, settings, grid, description)


# The settings that shape the rows every writer appends: a live follower and a backfill writing
# one output must agree on these (the rest, such as the chain check or the export formats, must
# match only between runs of the same kind of writer).
SHARED_SETTINGS = ("layout", "network_passphrase", "tables", "partition_by", "events_from", "event_types",
                   "included_assets", "accounts", "analytics", "top_transfers")

# The settings that lay the output out (its tables' partitions, its files): fixed once it exists.
# The others decide which rows are made and what they hold: --reset-settings may change those
# while no ledger has been written with them.
LAYOUT_SETTINGS = ("layout", "partition_by", "formats", "compression", "max_rows_per_file")


def output_shape(settings: ChunkSettings, writer: str = "backfill") -> Shape:
    """The shape an output written with these settings records and checks."""
    from obsrvr_ray.table.tableset import Shape  # delta-rs loads only where tables are written

    return Shape(shape(settings), settings.output.partition_by, writer, SHARED_SETTINGS)


def shape(settings: ChunkSettings) -> dict:
    """The settings the output's files depend on: a rerun into the same output must match them."""
    out, ex = settings.output, settings.extract
    return {
        "layout": 2,  # 1: Parquet files and a manifest; 2: Delta tables
        "network_passphrase": ex.passphrase,
        "tables": list(settings.tables),
        "formats": list(out.formats),
        "compression": out.compression,
        "partition_by": list(out.partition_by),
        "max_rows_per_file": out.max_rows_per_file,
        "events_from": ex.events_from,
        "chain_check": settings.chain_check,
        "event_types": list(ex.filter.event_types),
        "included_assets": list(ex.filter.assets),
        "accounts": list(ex.filter.accounts),
        "analytics": settings.analytics,
        "top_transfers": settings.top_transfers,
    }
