#!/bin/sh
# Add this unpacked cnndesk to your applications menu and PATH, for you only (no root):
#   ./install.sh            links ~/.local/bin/cnndesk and cnndesk-cli, adds the menu entry and icons
#   ./install.sh --remove   takes them away again (this folder stays; delete it yourself)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
bin=${XDG_BIN_HOME:-$HOME/.local/bin}
data=${XDG_DATA_HOME:-$HOME/.local/share}
if [ "${1:-}" = "--remove" ]; then
    rm -f "$bin/cnndesk" "$bin/cnndesk-cli" "$data/applications/cnndesk.desktop"
    find "$data/icons/hicolor" -name cnndesk.png -delete 2>/dev/null || true
    echo "cnndesk removed from your menu and PATH; delete $here to remove the program itself."
    exit 0
fi
mkdir -p "$bin" "$data/applications"
ln -sf "$here/cnndesk" "$bin/cnndesk"
ln -sf "$here/cnndesk-cli" "$bin/cnndesk-cli"
sed "s|^Exec=cnndesk|Exec=$here/cnndesk|" "$here/share/applications/cnndesk.desktop" > "$data/applications/cnndesk.desktop"
cp -R "$here/share/icons/hicolor" "$data/icons/" 2>/dev/null || { mkdir -p "$data/icons"; cp -R "$here/share/icons/hicolor" "$data/icons/"; }
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database -q "$data/applications" || true
echo "cnndesk is in your applications menu; from a terminal: $bin/cnndesk (add $bin to PATH if it is not)."
