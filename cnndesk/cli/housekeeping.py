"""The ``cnndesk-cli`` commands about the installation rather than a model: samples, clear-cache, selftest."""

from __future__ import annotations

from pathlib import Path

from ..selftest import run_selftest
from .support import positive


def add_parsers(sub) -> None:
    """The ``samples``, ``clear-cache`` and ``selftest`` commands."""
    s = sub.add_parser("samples", help="write the built-in sample dataset")
    s.add_argument("out_dir")
    s.add_argument("--per-class", type=positive, default=400)

    cc = sub.add_parser("clear-cache", help="delete the on-disk caches of datasets larger than the memory limit")
    cc.add_argument("--cache-dir", metavar="DIR", help="the cache folder, if not the default")

    st = sub.add_parser("selftest", help="check this installation headless: train, save, reopen, predict, "
                                         "inspect and export in a temporary folder")
    st.add_argument("--keep", metavar="DIR", help="work in DIR and leave its files there")


def cmd_samples(args) -> int:
    from ..core.data.samples import write_sample_dataset

    out = write_sample_dataset(args.out_dir, per_class=args.per_class)
    print(out)
    return 0


def cmd_clear_cache(args) -> int:
    from ..core.data.cache_plan import CacheSettings, format_bytes
    from ..core.data.disk_cache import clear_caches

    settings = CacheSettings(folder=Path(args.cache_dir) if args.cache_dir else None)
    freed = clear_caches(settings)
    print(f"freed {format_bytes(freed)} in {settings.root()}")
    return 0


def cmd_selftest(args) -> int:
    return run_selftest(keep=args.keep)
