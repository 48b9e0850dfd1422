"""Crafted ``.keras`` files, built small and fast at test time.

A ``.keras`` file is a zip archive; these helpers write archives byte by byte
so that a member can declare any size, any name and any compression, and a
2 GB decompression bomb stays a 2 MB file written in a fraction of a second.
"""

from __future__ import annotations

import json
import struct
import zipfile
import zlib
from pathlib import Path

MiB = 1024 * 1024


def read_members(path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as zf:
        return {i.filename: zf.read(i) for i in zf.infolist()}


def raw_member(name: str, data: bytes, compress: bool = True) -> tuple:
    """A member from plain bytes: (name, stored bytes, method, crc, declared size)."""
    if compress:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(data) + c.flush()
        return name, payload, zipfile.ZIP_DEFLATED, zlib.crc32(data), len(data)
    return name, data, zipfile.ZIP_STORED, zlib.crc32(data), len(data)


def bomb_member(name: str, size: int, fill: bytes = b" ") -> tuple:
    """A member that inflates to ``size`` bytes of ``fill`` from about size/1000 stored bytes.

    A streaming deflate writer: one 1 MiB block compressed once after a full
    flush (which resets the compressor, so every such block compresses to the
    same bytes) and repeated. The CRC is left 0: the check must refuse the
    member without reading it.
    """
    chunk = fill * MiB
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    c.compress(chunk)
    c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(chunk) + c.flush(zlib.Z_FULL_FLUSH)
    full, rest = divmod(size, MiB)
    payload = block * full + c.compress(fill * rest) + c.flush()
    return name, payload, zipfile.ZIP_DEFLATED, 0, size


def write_zip(path, members) -> Path:
    """Write (name, stored bytes, method, crc, declared size[, declared stored size]) members as a zip archive."""
    path = Path(path)
    central = []
    with open(path, "wb") as f:
        for name, payload, method, crc, size, *stored in members:
            stored_size = stored[0] if stored else len(payload)
            offset = f.tell()
            n = name.encode("utf-8")
            f.write(struct.pack("<IHHHHHIIIHH", 0x04034B50, 20, 0x800, method, 0, 0x21, crc, stored_size, size,
                                len(n), 0))
            f.write(n)
            f.write(payload)
            central.append(struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 20, 20, 0x800, method, 0, 0x21, crc,
                                       stored_size, size, len(n), 0, 0, 0, 0, 0, offset) + n)
        start = f.tell()
        for c in central:
            f.write(c)
        f.write(struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(central), len(central), f.tell() - start, start, 0))
    return path


def rewrite(source, target, *, config=None, extra=(), drop=(), replace=None) -> Path:
    """A copy of the real model ``source`` with its config replaced and members added or replaced."""
    members = read_members(source)
    if config is not None:
        members["config.json"] = json.dumps(config).encode("utf-8") if not isinstance(config, bytes) else config
    out = [raw_member(n, d) for n, d in members.items() if n not in drop and n not in (replace or {})]
    out += [m if isinstance(m, tuple) else raw_member(*m) for m in (replace or {}).values()]
    out += list(extra)
    return write_zip(target, out)


def config_of(source) -> dict:
    return json.loads(read_members(source)["config.json"])
