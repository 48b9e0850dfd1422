#!/usr/bin/env bash
# Print the Debian "Depends:" value for a PyInstaller bundle folder: the packages holding the
# system libraries its binaries link to (resolved on this machine with ldd and dpkg -S), plus the
# X11/xcb libraries Qt's xcb platform plugin loads, which a build machine may not have installed.
#   bash packaging/deb_depends.sh dist/cnndesk
set -euo pipefail
bundle=$(cd "$1" && pwd)
# every folder of the bundle that holds shared libraries, as the bootloader makes them visible
libdirs=$(find "$bundle" -name '*.so*' -type f -printf '%h\n' | sort -u | paste -sd:)
declare -A pkgs=()
while read -r lib; do
    [ -z "$lib" ] && continue
    case $lib in "$bundle"/*) continue ;; esac
    real=$(readlink -f "$lib")
    owner=$(dpkg -S "$real" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true)
    owner=${owner%%:*}
    [ -n "$owner" ] && pkgs[$owner]=1
done < <(find "$bundle" -name '*.so*' -type f -print0 \
         | LD_LIBRARY_PATH=$libdirs xargs -0 ldd 2>/dev/null \
         | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
# Qt's xcb plugin and its friends (Qt documents these for X11); named here since a headless build
# machine usually lacks them, and ldd cannot resolve what is not installed
for p in libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-image0 libxcb-render-util0 libxcb-xkb1 \
         libxkbcommon-x11-0 libxcb-shape0 libxcb-randr0 libxcb-xfixes0 libxcb-sync1 libxcb-shm0 \
         libxcb-render0 libxcb-xinerama0 libx11-xcb1 libxkbcommon0 libfontconfig1 libfreetype6 libdbus-1-3 \
         libegl1 libgl1 libglib2.0-0; do
    pkgs[$p]=1
done
# the oldest glibc the bundle's binaries accept
glibc=$(find "$bundle" -type f \( -name '*.so*' -o -perm -u+x \) -print0 \
        | xargs -0 objdump -T 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
unset 'pkgs[libc6]'
out="libc6 (>= ${glibc:-2.28})"
for p in $(printf '%s\n' "${!pkgs[@]}" | sort); do out+=", $p"; done
echo "$out"
