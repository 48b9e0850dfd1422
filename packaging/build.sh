#!/usr/bin/env bash
# Build cnndesk's Linux installers from a clean clone, without touching the developer's .venv:
#
#   bash packaging/build.sh            -> dist/cnndesk_<version>_amd64.deb
#                                         dist/cnndesk-<version>-linux-x86_64.tar.gz
#   bash packaging/build.sh --no-onnx  (leave ONNX export out of the bundle)
#   bash packaging/build.sh --package-only  (re-wrap the bundle already in dist/cnndesk)
#
# Needs: python3 >= 3.11 with venv, dpkg-deb, objdump (binutils), and the package registry; pigz is used if there.
# Steps: a build environment in build/pkg-venv (tensorflow-cpu instead of tensorflow: the same
# TensorFlow without CUDA kernels, ~450 MB smaller unpacked; PyInstaller; tf2onnx + onnx), the app
# icons, a PyInstaller one-folder bundle in dist/cnndesk/ (programs `cnndesk` and `cnndesk-cli`),
# a quick check of the bundle, then the .deb and the tarball. packaging/check.sh installs and tests them.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
onnx=1
package_only=0
for arg in "$@"; do
    case $arg in
        --no-onnx) onnx=0 ;;
        --package-only) package_only=1 ;;
        -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
    esac
done
started=$(date +%s)
step() { printf '\n== %s (%ss)\n' "$1" $(( $(date +%s) - started )); }

version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
mkdir -p build dist

bundle=dist/cnndesk
if [ $package_only = 0 ]; then
step "build environment"
# the project's own dependencies, read from pyproject.toml, with tensorflow -> tensorflow-cpu
python3 packaging/requirements.py --cpu $([ $onnx = 1 ] || echo --no-onnx) > build/pkg-requirements.txt
venv=build/pkg-venv
if ! cmp -s build/pkg-requirements.txt "$venv/requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -r build/pkg-requirements.txt
    cp build/pkg-requirements.txt "$venv/requirements.txt"
fi
# cnndesk itself (its dependencies are the ones above; --no-deps keeps pip from adding `tensorflow`)
"$venv/bin/pip" install --quiet --no-deps --force-reinstall .
"$venv/bin/pip" freeze > build/pkg-freeze.txt

step "icons"
rm -rf build/icons
"$venv/bin/python" packaging/make_icons.py build/icons

step "PyInstaller bundle"
rm -rf dist/cnndesk
"$venv/bin/pyinstaller" packaging/cnndesk.spec --noconfirm --log-level WARN --distpath dist --workpath build/pyinstaller
test -x "$bundle/cnndesk" && test -x "$bundle/cnndesk-cli"

step "check of the bundle"
# every library a bundled one needs from the bundle is there (the spec leaves some Qt parts out)
libdirs=$(find "$bundle" -name '*.so*' -type f -printf '%h\n' | sort -u | paste -sd:)
missing=$(find "$bundle" -name '*.so*' -type f -print0 | LD_LIBRARY_PATH=$libdirs xargs -0 ldd 2>/dev/null \
          | grep -E '(libQt6|libpyside|libshiboken|libtensorflow|libpython)[^ ]* => not found' | sort -u || true)
[ -z "$missing" ] || { echo "$missing"; echo "build.sh: a bundled library needs one that was left out" >&2; exit 1; }
env -i HOME="$(mktemp -d)" PATH=/usr/bin:/bin LANG=C.UTF-8 "$bundle/cnndesk" --version
env -i HOME="$(mktemp -d)" PATH=/usr/bin:/bin LANG=C.UTF-8 "$bundle/cnndesk-cli" selftest
fi
step "glibc floor"
# every versioned glibc/libstdc++ symbol the bundle needs, against the floor (Ubuntu 22.04: glibc 2.35)
python3 packaging/abi_floor.py "$bundle" | tee build/abi-floor.txt
test "${PIPESTATUS[0]}" = 0
test -x "$bundle/cnndesk-cli" && test -d build/icons || { echo "build.sh: no bundle in $bundle (or no build/icons): build it first" >&2; exit 1; }

step ".deb"
pkg=build/deb/cnndesk_${version}_${arch}
rm -rf build/deb
mkdir -p "$pkg/DEBIAN" "$pkg/opt" "$pkg/usr/bin" "$pkg/usr/share/applications" "$pkg/usr/share/doc/cnndesk" \
         "$pkg/usr/share/icons/hicolor/scalable/apps"
# the staging trees hold hard links to the bundle, not copies of its 1.4 GB (a copy where the two
# folders are on different file systems)
stage() { cp -al "$1" "$2" 2>/dev/null || { rm -rf "$2"; cp -a "$1" "$2"; }; }
stage "$bundle" "$pkg/opt/cnndesk"
ln -s /opt/cnndesk/cnndesk "$pkg/usr/bin/cnndesk"
ln -s /opt/cnndesk/cnndesk-cli "$pkg/usr/bin/cnndesk-cli"
cp resources/cnndesk.desktop "$pkg/usr/share/applications/cnndesk.desktop"
cp resources/cnndesk.svg "$pkg/usr/share/icons/hicolor/scalable/apps/cnndesk.svg"
cp -a build/icons/hicolor "$pkg/usr/share/icons/"
cp LICENSE "$pkg/usr/share/doc/cnndesk/copyright"
depends=$(bash packaging/deb_depends.sh "$pkg/opt/cnndesk")
installed_kb=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: cnndesk
Version: ${version}
Architecture: ${arch}
Maintainer: cnndesk developers <cnndesk@users.noreply.github.com>
Installed-Size: ${installed_kb}
Depends: ${depends}
Section: science
Priority: optional
Homepage: https://github.com/cnndesk/cnndesk
Description: train a convolutional image classifier by pointing and clicking
 cnndesk trains a CNN on your own image folders with Keras, shows the
 training live, and lets you drop an image in to see what the network
 predicts and why: the activation maps of every layer and a heat map.
 Offline; Python, TensorFlow and Qt are bundled in /opt/cnndesk.
CONTROL
# no maintainer scripts: Debian's desktop-file-utils and hicolor-icon-theme refresh the menu and icon
# caches through dpkg triggers, and a package without scripts leaves nothing behind after `dpkg -r`
deb=dist/cnndesk_${version}_${arch}.deb
# zstd (dpkg >= 1.21.18 and Ubuntu's dpkg since 18.04 read it): several times faster than xz -6 for a
# somewhat larger file; CNNDESK_DEB_COMPRESSION="xz 6" gives the smallest .deb
read -r deb_comp deb_level <<< "${CNNDESK_DEB_COMPRESSION:-zstd 9}"
dpkg-deb --root-owner-group -Z"$deb_comp" -z"$deb_level" --build "$pkg" "$deb" > /dev/null

step "tarball"
# the same bundle, for any distribution: unpack anywhere and run ./cnndesk-<version>/cnndesk,
# or ./cnndesk-<version>/install.sh to add it to your menu and PATH (per user, no root)
tarname=cnndesk-${version}-linux-${arch/amd64/x86_64}
rm -rf "build/$tarname"
stage "$bundle" "build/$tarname"
mkdir -p "build/$tarname/share/applications" "build/$tarname/share/icons"
cp resources/cnndesk.desktop "build/$tarname/share/applications/"
cp -a build/icons/hicolor "build/$tarname/share/icons/"
cp packaging/install-user.sh "build/$tarname/install.sh"
cp LICENSE "build/$tarname/LICENSE"
# pigz: gzip on every core (the same format and size), when installed
gz=$(command -v pigz || command -v gzip)
tar -C build -cf - "$tarname" | "$gz" -6 > "dist/$tarname.tar.gz"

step "done"
unpacked=$(du -sm "$bundle" | cut -f1)
printf 'bundle   %s (%s MB unpacked)\n' "$bundle" "$unpacked"
for f in "$deb" "dist/$tarname.tar.gz"; do
    printf '%-8s %s (%s MB)\n' "${f##*.}" "$f" $(( $(stat -c %s "$f") / 1024 / 1024 ))
done
echo "Depends: $depends"
echo "built in $(( $(date +%s) - started )) s; next: bash packaging/check.sh"
