#!/usr/bin/env bash
# Build a .deb from the PyInstaller one-folder bundle (Debian/Ubuntu, x86_64).
#   bash packaging/build_deb.sh            -> dist/cnndesk_<version>_amd64.deb
# Needs: the project installed in the active Python (pip install .), pyinstaller, dpkg-deb.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(python -c "import cnndesk; print(cnndesk.__version__)")
pyinstaller packaging/cnndesk.spec --noconfirm --distpath dist --workpath build/pyinstaller
pkg=build/deb/cnndesk_${version}_amd64
rm -rf "$pkg"
mkdir -p "$pkg/DEBIAN" "$pkg/opt" "$pkg/usr/bin" "$pkg/usr/share/applications" "$pkg/usr/share/icons/hicolor/scalable/apps"
cp -a dist/cnndesk "$pkg/opt/cnndesk"
ln -s /opt/cnndesk/cnndesk "$pkg/usr/bin/cnndesk"
printf '#!/bin/sh\nexec /opt/cnndesk/cnndesk cli "$@"\n' > "$pkg/usr/bin/cnndesk-cli"
chmod 755 "$pkg/usr/bin/cnndesk-cli"
cp resources/cnndesk.desktop "$pkg/usr/share/applications/"
cp resources/cnndesk.svg "$pkg/usr/share/icons/hicolor/scalable/apps/cnndesk.svg"
cat > "$pkg/DEBIAN/control" <<CONTROL
Package: cnndesk
Version: ${version}
Architecture: amd64
Maintainer: cnndesk developers
Depends: libxcb-cursor0, libxcb-icccm4, libxcb-keysyms1, libxcb-image0, libxcb-render-util0, libxcb-xkb1, libxkbcommon-x11-0, libxcb-shape0
Description: Train a convolutional image classifier by pointing and clicking
 Train a CNN on your own image folders with Keras, watch it learn,
 and see what each layer sees. Offline.
CONTROL
dpkg-deb --build -Zzstd "$pkg" dist/
