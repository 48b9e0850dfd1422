"""The oldest Linux the installers run on, and the check that the bundle keeps to it.

The floor is the glibc and libstdc++ of Ubuntu 22.04 LTS (glibc 2.35, GCC 12's libstdc++:
GLIBCXX_3.4.30, CXXABI_1.3.13); Debian 12 has glibc 2.36 and the same libstdc++. Why not lower:
the bundle's Python (``libpython3.11.so``, built on the build machine) calls ``hypot@GLIBC_2.35``,
and PySide6 6.11's Qt libraries need glibc 2.34. The TensorFlow and NumPy wheels ask for less.

    python3 packaging/abi_floor.py dist/cnndesk     # every versioned symbol the bundle needs; exit 1 above the floor

``cnndesk.spec`` uses ``system_library_to_leave_out`` to keep the build machine's own copies of
libraries every target has (libstdc++, libgcc_s, libexpat, libcairo) out of the bundle, and any
other library from the build machine's system folders that needs more than the floor: the
target's own copy is loaded instead (the .deb names their packages in ``Depends:``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

#: the highest symbol version of each family the bundle may need (Ubuntu 22.04 LTS)
FLOOR = {"GLIBC": "2.35", "GLIBCXX": "3.4.30", "CXXABI": "1.3.13"}
#: the systems the floor reaches (for messages)
REACHES = "Ubuntu 22.04 LTS, Debian 12 and newer"

#: system libraries every target has in a good enough version: the target's copy is used, never
#: the build machine's (whose copy may need a newer glibc: libstdc++ and libexpat from Debian 12 need 2.36)
SYSTEM_LIBRARIES = ("libstdc++.so", "libgcc_s.so", "libexpat.so", "libcairo.so")

_VERSIONED = re.compile(r"\b(GLIBC|GLIBCXX|CXXABI)_([0-9][0-9.]*)\b")


def version_key(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".") if p)


def needed_versions(path: str | os.PathLike) -> dict[str, set[str]]:
    """The symbol versions one ELF file needs from glibc and libstdc++ ({"GLIBC": {"2.34", ...}, ...}).

    Only undefined symbols (``*UND*`` in ``objdump -T``) count: libstdc++ itself defines GLIBCXX_
    symbols, which it does not need. A file that is not ELF gives an empty dict.
    """
    try:
        out = subprocess.run(["objdump", "-T", str(path)], capture_output=True, text=True, check=False).stdout
    except FileNotFoundError:
        raise SystemExit("abi_floor: objdump not found (apt-get install binutils)") from None
    found: dict[str, set[str]] = defaultdict(set)
    for line in out.splitlines():
        if "*UND*" not in line:
            continue
        for family, version in _VERSIONED.findall(line):
            found[family].add(version)
    return dict(found)


def above_floor(versions: dict[str, set[str]]) -> dict[str, list[str]]:
    """The versions above FLOOR, by family (empty when the file keeps to the floor)."""
    over = {}
    for family, found in versions.items():
        high = sorted((v for v in found if version_key(v) > version_key(FLOOR[family])), key=version_key)
        if high:
            over[family] = high
    return over


def _from_build_machine_system(source: str) -> bool:
    """True for a library PyInstaller copied from the build machine's system folders (not from a wheel
    or from the build's Python installation)."""
    real = os.path.realpath(source)
    ours = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix)}
    if any(real.startswith(p + os.sep) for p in ours) or "site-packages" in real:
        return False
    return real.startswith(("/lib", "/usr/lib", "/usr/local/lib"))


def system_library_to_leave_out(name: str, source: str) -> str | None:
    """Why the bundle should not carry this library (None: carry it). For cnndesk.spec, Linux only."""
    if not sys.platform.startswith("linux") or not _from_build_machine_system(source):
        return None
    base = os.path.basename(name)
    if base.startswith(SYSTEM_LIBRARIES):
        return "every target has it"
    over = above_floor(needed_versions(source))
    if over:
        return "needs " + ", ".join(f"{f}_{v[-1]}" for f, v in over.items()) + " (above the floor)"
    return None


def _elf_files(folder: Path):
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not path.is_symlink():
            with open(path, "rb") as f:
                if f.read(4) == b"\x7fELF":
                    yield path


def check(folder: Path) -> int:
    """Print every versioned glibc/libstdc++ symbol the bundle needs, with how many files need it,
    and the files that need more than the floor; 0 when none does, else 1."""
    users: dict[tuple[str, str], list[Path]] = defaultdict(list)
    files = 0
    for path in _elf_files(folder):
        files += 1
        for family, versions in needed_versions(path).items():
            for v in versions:
                users[(family, v)].append(path)
    bad = 0
    print(f"versioned symbols needed by {files} ELF files in {folder} (floor: "
          + ", ".join(f"{f}_{v}" for f, v in FLOOR.items()) + f"; {REACHES})")
    for family in FLOOR:
        for (fam, v), paths in sorted(((k, p) for k, p in users.items() if k[0] == family),
                                      key=lambda kv: version_key(kv[0][1])):
            over = version_key(v) > version_key(FLOOR[family])
            bad += over
            print(f"  {'ABOVE' if over else 'ok   '} {family}_{v:<8} {len(paths):4d} files"
                  + ("" if not over else ": " + ", ".join(str(p.relative_to(folder)) for p in paths[:8])))
    if bad:
        print(f"abi_floor: {bad} symbol versions above the floor: the bundle would not start on {REACHES}")
        return 1
    highest = {f: max((v for (fam, v) in users if fam == f), key=version_key, default="-") for f in FLOOR}
    print("abi_floor: ok, highest needed: " + ", ".join(f"{f}_{v}" for f, v in highest.items()))
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2 or not Path(sys.argv[1]).is_dir():
        raise SystemExit("usage: python3 packaging/abi_floor.py BUNDLE_FOLDER")
    sys.exit(check(Path(sys.argv[1])))
