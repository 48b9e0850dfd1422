#!/usr/bin/env bash
# Check the Linux installers as a user would meet them, on this (Debian/Ubuntu) machine, as root:
#
#   bash packaging/check.sh              build (packaging/build.sh), then check
#   bash packaging/check.sh --no-build   check what dist/ already holds
#   bash packaging/check.sh --clean-root [--release jammy|bookworm] [--no-build]   install and run
#        both installers in a minimal root made with debootstrap instead (packaging/check_clean_root.sh):
#        of the oldest release they claim, Ubuntu 22.04 (jammy), unless --release names Debian 12
#
# 0. lists every versioned glibc/libstdc++ symbol the bundle needs (packaging/abi_floor.py) and
#    fails if one is above the installers' floor (glibc 2.35: Ubuntu 22.04 LTS, Debian 12);
# 1. installs dist/cnndesk_<version>_<arch>.deb with apt (which brings its Depends);
# 2. runs the installed `cnndesk --selftest` and `cnndesk-cli selftest` with an empty environment
#    (no virtual environment, no PYTHONPATH, no checkout on any path, a fresh HOME, cwd /);
# 3. from the installed CLI: writes the sample, trains, predicts, and exports every format;
# 4. starts the menu entry's command for real under Xvfb, times it to a visible window and saves
#    a screenshot (dist/check/installed-window.png), then closes it;
# 5. removes the package with `dpkg -r` and checks that nothing of it is left behind;
# 6. unpacks the tarball elsewhere and runs its selftest too.
# Needs (Debian): xvfb xdotool imagemagick desktop-file-utils.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=1
clean_root=0
release=()
while [ $# -gt 0 ]; do
    case $1 in
        --no-build) build=0 ;;
        --clean-root) clean_root=1 ;;
        --release) release=(--release "${2:?--release needs a name: jammy or bookworm}"); shift ;;
        --release=*) release=("$1") ;;
        -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
        *) echo "check.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
[ ${#release[@]} = 0 ] || [ $clean_root = 1 ] || { echo "check.sh: --release goes with --clean-root" >&2; exit 2; }
[ "$(id -u)" = 0 ] || { echo "check.sh: run as root (it installs and removes the .deb)" >&2; exit 2; }
symbols() {
    echo "== glibc floor of the bundle"
    python3 packaging/abi_floor.py dist/cnndesk || { echo "  FAIL the bundle needs a newer glibc or libstdc++ than the floor"; exit 1; }
}
if [ $clean_root = 1 ]; then
    [ $build = 1 ] && bash packaging/build.sh
    symbols
    exec bash packaging/check_clean_root.sh "${release[@]}"
fi
for t in Xvfb xdotool import desktop-file-validate apt-get dpkg; do
    command -v $t >/dev/null || { echo "check.sh: missing $t: apt-get install -y xvfb xdotool imagemagick desktop-file-utils" >&2; exit 2; }
done
installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' cnndesk 2>/dev/null)" != "" ] && \
              [ "$(dpkg-query -W -f='${db:Status-Status}' cnndesk 2>/dev/null)" != not-installed ]; }
if installed; then
    echo "check.sh: a cnndesk package is already installed; remove it first (dpkg -r cnndesk)" >&2; exit 2
fi
[ $build = 1 ] && bash packaging/build.sh
symbols
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)
deb=$root/dist/cnndesk_${version}_${arch}.deb
tarball=$root/dist/cnndesk-${version}-linux-${arch/amd64/x86_64}.tar.gz
out=$root/dist/check
rm -rf "$out"; mkdir -p "$out"
scratch=$(mktemp -d /tmp/cnndesk-check.XXXXXX)
xvfb_pid=
cleanup() {
    [ -n "$xvfb_pid" ] && kill "$xvfb_pid" 2>/dev/null || true
    installed && dpkg -r cnndesk >/dev/null 2>&1 || true
    rm -rf "$scratch"
}
trap cleanup EXIT
pass() { printf '  ok   %s\n' "$*"; }
fail() { printf '  FAIL %s\n' "$*"; exit 1; }
# a user's shell: no Python environment, no checkout, a fresh home
clean_env() { env -i HOME="$scratch/home" PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"; }
mkdir -p "$scratch/home"
snapshot() { find /opt /usr/bin /usr/share/applications /usr/share/icons /usr/share/doc 2>/dev/null | sort; }

echo "== install $deb"
snapshot > "$scratch/before.txt"
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$deb" > "$scratch/apt.log" 2>&1 || { cat "$scratch/apt.log"; fail "apt-get install"; }
pass "installed: $(dpkg-query -W -f='${Package} ${Version}, ${Installed-Size} KB' cnndesk)"
[ "$(command -v cnndesk)" = /usr/bin/cnndesk ] || fail "cnndesk is not on the PATH"
[ "$(command -v cnndesk-cli)" = /usr/bin/cnndesk-cli ] || fail "cnndesk-cli is not on the PATH"
desktop-file-validate /usr/share/applications/cnndesk.desktop || fail "the desktop entry does not validate"
[ -f /usr/share/icons/hicolor/scalable/apps/cnndesk.svg ] && [ -f /usr/share/icons/hicolor/48x48/apps/cnndesk.png ] \
    || fail "the menu icon is missing"
pass "cnndesk and cnndesk-cli on the PATH, desktop entry valid, icons installed"

echo "== selftest of the installed app (empty environment, cwd /)"
(cd / && clean_env cnndesk --selftest) | tee "$out/selftest-app.txt" || fail "cnndesk --selftest"
(cd / && clean_env cnndesk-cli selftest) > "$out/selftest-cli.txt" || { cat "$out/selftest-cli.txt"; fail "cnndesk-cli selftest"; }
pass "cnndesk-cli selftest: $(tail -1 "$out/selftest-cli.txt")"

echo "== the installed command line: every export format"
cd "$scratch"
clean_env cnndesk-cli samples shapes --per-class 20 > /dev/null
clean_env cnndesk-cli train shapes --project proj --epochs 1 --json > "$out/train.jsonl" 2> "$scratch/train.err" \
    || { cat "$scratch/train.err"; fail "cnndesk-cli train"; }
pass "train: $(tail -1 "$out/train.jsonl" | cut -c1-100)"
clean_env cnndesk-cli predict proj shapes/circle/circle_000.png > "$scratch/predict.txt" || fail "cnndesk-cli predict"
pass "predict: $(cat "$scratch/predict.txt")"
clean_env cnndesk-cli inspect proj shapes/square/square_000.png --out maps > /dev/null 2>&1 || fail "cnndesk-cli inspect"
pass "inspect: $(ls maps | wc -l) PNGs"
for fmt in keras saved_model litert onnx; do
    case $fmt in keras) dest=model.keras ;; litert) dest=model.tflite ;; onnx) dest=model.onnx ;; *) dest=saved ;; esac
    if clean_env cnndesk-cli export proj --format $fmt --out "$dest" > "$scratch/export.txt" 2>&1; then
        pass "export $fmt: $(du -sh "$dest" | cut -f1)"
    else
        cat "$scratch/export.txt"; fail "export $fmt"
    fi
done
clean_env cnndesk-cli predict model.keras shapes/cross/cross_000.png > /dev/null || fail "predict with the exported .keras"
pass "the exported .keras opens in the installed app"
cd "$root"

echo "== the menu entry's command under a real X server"
exec_line=$(sed -n 's/^Exec=//p' /usr/share/applications/cnndesk.desktop | sed 's/ %[fFuU]//')
display=:$((90 + RANDOM % 9))
Xvfb $display -screen 0 1600x1000x24 -nolisten tcp > /dev/null 2>&1 & xvfb_pid=$!
sleep 1
for run in 1 2 3; do
    t0=$(date +%s.%N)
    (cd "$scratch" && clean_env DISPLAY=$display $exec_line > "$scratch/gui.log" 2>&1) & app_pid=$!
    DISPLAY=$display timeout 120 xdotool search --sync --onlyvisible --name 'cnndesk' > "$scratch/wid" \
        || { cat "$scratch/gui.log"; fail "no visible cnndesk window within 120 s"; }
    t1=$(date +%s.%N)
    printf '  ok   run %s: window visible %.2f s after the menu command\n' $run "$(echo "$t1 - $t0" | bc)"
    if [ $run = 3 ]; then
        sleep 12  # TensorFlow loads in the background; the sample is read
        DISPLAY=$display import -window root "$out/installed-window.png"
        pass "screenshot $out/installed-window.png"
    fi
    # focus it (there is no window manager) and press Ctrl+Q as a user would
    DISPLAY=$display xdotool windowfocus --sync "$(head -1 "$scratch/wid")" key ctrl+q 2>/dev/null || true
    for _ in $(seq 50); do kill -0 $app_pid 2>/dev/null || break; sleep 0.2; done
    if kill -0 $app_pid 2>/dev/null; then
        kill $app_pid; fail "the window did not close on Ctrl+Q"
    fi
done
pass "the window closes on Ctrl+Q"
kill $xvfb_pid 2>/dev/null || true; xvfb_pid=

echo "== remove"
dpkg-query -L cnndesk | sort > "$scratch/owned.txt"
dpkg -r cnndesk > /dev/null
snapshot > "$scratch/after.txt"
# nothing that was there before is gone, and what is new belongs to the libraries apt added for Depends
gone=$(comm -23 "$scratch/before.txt" "$scratch/after.txt")
[ -z "$gone" ] || { echo "$gone"; fail "dpkg -r removed files that were there before the install"; }
while read -r path; do
    [ -z "$path" ] && continue
    case $path in /opt/cnndesk*) fail "left behind: $path" ;; esac
    grep -qxF "$path" "$scratch/owned.txt" && fail "left behind: $path"
    owner=$(dpkg -S "$path" 2>/dev/null | cut -d: -f1 | head -1)
    [ -n "$owner" ] && [ "$owner" != cnndesk ] || fail "left behind, owned by no other package: $path"
done < <(comm -13 "$scratch/before.txt" "$scratch/after.txt")
[ ! -e /opt/cnndesk ] && ! command -v cnndesk >/dev/null || fail "cnndesk is still installed"
! installed || fail "dpkg still lists cnndesk after dpkg -r: $(dpkg-query -W -f='${db:Status-Abbrev}' cnndesk)"
! ls /var/lib/dpkg/info/cnndesk.* >/dev/null 2>&1 || fail "dpkg -r left cnndesk's records in /var/lib/dpkg/info"
pass "dpkg -r removed every file it installed ($(wc -l < "$scratch/owned.txt") paths); nothing of it is left"

echo "== the tarball"
mkdir -p "$scratch/unpacked"
tar -C "$scratch/unpacked" -xzf "$tarball"
dir=$(ls -d "$scratch"/unpacked/cnndesk-*)
(cd / && clean_env "$dir/cnndesk-cli" selftest) > "$out/selftest-tarball.txt" || { cat "$out/selftest-tarball.txt"; fail "tarball selftest"; }
pass "unpacked tarball selftest: $(tail -1 "$out/selftest-tarball.txt")"
clean_env sh "$dir/install.sh" > /dev/null && [ -x "$scratch/home/.local/bin/cnndesk" ] \
    && desktop-file-validate "$scratch/home/.local/share/applications/cnndesk.desktop" || fail "install.sh"
clean_env sh "$dir/install.sh" --remove > /dev/null && [ ! -e "$scratch/home/.local/bin/cnndesk" ] || fail "install.sh --remove"
pass "install.sh adds and removes the per-user menu entry and PATH links"
echo "all checks passed"
