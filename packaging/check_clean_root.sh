#!/usr/bin/env bash
# The installers on a clean system: `packaging/check.sh --clean-root [--release R]` (as root; needs
# debootstrap).
#
# A minimal root of a release the installers claim (debootstrap --variant=minbase, made once and kept
# in build/clean-root/<release>), then, each in a fresh copy of it:
#   .deb:    apt installs it (with what its Depends pull in), the installed `cnndesk --selftest` and
#            `cnndesk-cli selftest` run in an empty environment, the installed CLI trains, predicts,
#            exports every format and draws the dataset map, `dpkg -r` removes it and nothing of it is left;
#   tarball: apt installs only the libraries the .deb depends on (what a desktop system has), the
#            unpacked tarball runs the same, then `install.sh` and `install.sh --remove`.
# Unlike check.sh's own run, the build machine's libraries cannot hide a missing dependency here.
#   --release jammy     Ubuntu 22.04 LTS (glibc 2.35), the oldest release claimed: the default
#   --release bookworm  Debian 12 (glibc 2.36)
# The Ubuntu root's apt sources are a desktop install's (<release>, -updates, -security; main and
# universe: Qt's libxcb-cursor0 is in universe on 22.04). Debootstrap checks Ubuntu's Release file
# with /usr/share/keyrings/ubuntu-archive-keyring.gpg; a Debian host without it gets that keyring
# from Ubuntu's ubuntu-keyring package over HTTPS and checks its signing key's fingerprint.
#   CNNDESK_CLEAN_ROOT_MIRROR: the archive to use (default http://archive.ubuntu.com/ubuntu for
#   Ubuntu, http://deb.debian.org/debian for Debian)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
release=jammy
while [ $# -gt 0 ]; do
    case $1 in
        --release) release=${2:?--release needs a name: jammy or bookworm}; shift ;;
        --release=*) release=${1#--release=} ;;
        *) echo "check_clean_root.sh: unknown option $1" >&2; exit 2 ;;
    esac
    shift
done
# release -> distribution, archive, the apt sources of a desktop install
case $release in
    jammy)
        distro="Ubuntu 22.04 LTS"
        mirror=${CNNDESK_CLEAN_ROOT_MIRROR:-http://archive.ubuntu.com/ubuntu}
        security=http://security.ubuntu.com/ubuntu
        sources="deb $mirror $release main universe
deb $mirror $release-updates main universe
deb $security $release-security main universe"
        keyring=/usr/share/keyrings/ubuntu-archive-keyring.gpg
        # Ubuntu Archive Automatic Signing Key (2018) <ftpmaster@ubuntu.com>: signs 22.04's Release
        key_fpr=F6ECB3762474EDA9D21B7022871920D1991BC93C
        keyring_deb=https://archive.ubuntu.com/ubuntu/pool/main/u/ubuntu-keyring/ubuntu-keyring_2021.03.26_all.deb ;;
    bookworm)
        distro="Debian 12"
        mirror=${CNNDESK_CLEAN_ROOT_MIRROR:-http://deb.debian.org/debian}
        sources="deb $mirror $release main
deb $mirror $release-updates main
deb http://deb.debian.org/debian-security $release-security main"
        keyring=/usr/share/keyrings/debian-archive-keyring.gpg
        key_fpr= keyring_deb= ;;
    *) echo "check.sh --clean-root: --release jammy (Ubuntu 22.04) or bookworm (Debian 12), not $release" >&2; exit 2 ;;
esac
[ "$(id -u)" = 0 ] || { echo "check.sh --clean-root: run as root (debootstrap, chroot, mounts)" >&2; exit 2; }
command -v debootstrap >/dev/null || { echo "check.sh --clean-root: apt-get install -y debootstrap" >&2; exit 2; }
[ -e "/usr/share/debootstrap/scripts/$release" ] || { echo "check.sh --clean-root: this debootstrap does not know $release" >&2; exit 2; }
version=$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
arch=$(dpkg --print-architecture)
deb=$root/dist/cnndesk_${version}_${arch}.deb
tarball=$root/dist/cnndesk-${version}-linux-${arch/amd64/x86_64}.tar.gz
[ -f "$deb" ] && [ -f "$tarball" ] || { echo "check.sh --clean-root: build first (no $deb or $tarball)" >&2; exit 2; }
out=$root/dist/check-clean-root/$release
rm -rf "$out"; mkdir -p "$out"
pass() { printf '  ok   %s\n' "$*"; }
fail() { printf '  FAIL %s\n' "$*"; exit 1; }
secs() { echo $(( $(date +%s) - $1 )); }

pristine=$root/build/clean-root/$release
# the archive's signing keys: the host's keyring, or (Ubuntu on a Debian host) Ubuntu's own package
# over HTTPS, used only if it holds the key that signs the release
if [ ! -f "$keyring" ]; then
    keyring=$root/build/clean-root/$(basename "$keyring")
    if [ ! -f "$keyring" ]; then
        echo "== $(basename "$keyring") from $keyring_deb"
        kdir=$(mktemp -d)
        curl -fsS --proto =https -o "$kdir/keyring.deb" "$keyring_deb" && dpkg-deb -x "$kdir/keyring.deb" "$kdir/x" \
            || { rm -rf "$kdir"; fail "could not fetch $keyring_deb"; }
        gpg --no-default-keyring --keyring "$kdir/x/usr/share/keyrings/$(basename "$keyring")" --with-colons \
            --list-keys 2>/dev/null | grep -qx "fpr:::::::::$key_fpr:" \
            || { rm -rf "$kdir"; fail "the fetched keyring lacks the archive key $key_fpr"; }
        mkdir -p "$(dirname "$keyring")"
        cp "$kdir/x/usr/share/keyrings/$(basename "$keyring")" "$keyring"; rm -rf "$kdir"
        pass "keyring with the archive key $key_fpr"
    fi
fi
if [ ! -x "$pristine/bin/bash" ]; then
    echo "== debootstrap $release (minbase) from $mirror into $pristine"
    t=$(date +%s)
    rm -rf "$pristine.new"; mkdir -p "$(dirname "$pristine")"
    debootstrap --variant=minbase --keyring="$keyring" "$release" "$pristine.new" "$mirror" > "$out/debootstrap.log" 2>&1 \
        || { tail -20 "$out/debootstrap.log"; fail "debootstrap $release"; }
    # the apt sources a desktop install has (debootstrap writes only the release pocket of main)
    echo "$sources" > "$pristine.new/etc/apt/sources.list"
    mv "$pristine.new" "$pristine"
    pass "minimal $release root in $(secs $t) s"
fi
pass "$distro ($release) root: glibc $(chroot "$pristine" ldd --version | head -1 | grep -o '[0-9.]*$'), $(chroot "$pristine" dpkg-query -W | wc -l) packages"

sys=
mounted=()
cleanup() {
    for ((i=${#mounted[@]}-1; i>=0; i--)); do umount "${mounted[$i]}" 2>/dev/null || umount -l "${mounted[$i]}" || true; done
    mounted=()
    [ -n "$sys" ] || return 0
    # never delete through a mount that is still there (it would be the host's /dev, /proc or /sys)
    if grep -q " $sys/" /proc/mounts; then
        echo "check.sh --clean-root: $sys still has mounts; left in place" >&2
    else
        rm -rf "$sys"
    fi
    sys=
}
trap cleanup EXIT
# a fresh copy of the pristine root, with /proc, /sys, /dev and DNS as a booted system has them
fresh_root() {
    cleanup
    sys=$(mktemp -d /var/tmp/cnndesk-clean-root.XXXXXX)
    cp -a "$pristine"/. "$sys"/
    for m in proc sys dev dev/pts dev/shm; do
        mkdir -p "$sys/$m"; mount --bind "/$m" "$sys/$m"; mounted+=("$sys/$m")
    done
    cp /etc/resolv.conf "$sys/etc/resolv.conf"
    mkdir -p "$sys/tmp/home"
}
# a user's shell in the root: no Python environment, no checkout, a fresh home, cwd /
in_root() { chroot "$sys" env -i HOME=/tmp/home PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@"; }
apt_in_root() {
    chroot "$sys" env DEBIAN_FRONTEND=noninteractive PATH=/usr/sbin:/usr/bin:/sbin:/bin apt-get "$@"
}

# the installed programs' own tests: selftests, then the CLI's train, predict and every export
exercise() {  # $1: what (deb or tarball), $2: folder of cnndesk and cnndesk-cli in the root ("" = PATH)
    local what=$1 bin=${2:+$2/} t
    t=$(date +%s)
    in_root sh -c "cd / && ${bin}cnndesk --selftest" > "$out/$what-selftest-app.txt" 2>&1 \
        || { tail -30 "$out/$what-selftest-app.txt"; fail "$what: cnndesk --selftest"; }
    pass "$what: cnndesk --selftest: $(tail -1 "$out/$what-selftest-app.txt") ($(secs $t) s wall)"
    t=$(date +%s)
    in_root sh -c "cd / && ${bin}cnndesk-cli selftest" > "$out/$what-selftest-cli.txt" 2>&1 \
        || { tail -30 "$out/$what-selftest-cli.txt"; fail "$what: cnndesk-cli selftest"; }
    pass "$what: cnndesk-cli selftest: $(tail -1 "$out/$what-selftest-cli.txt") ($(secs $t) s wall)"
    t=$(date +%s)
    in_root sh -c "set -e; mkdir -p /tmp/work && cd /tmp/work
        ${bin}cnndesk-cli samples shapes --per-class 20 > /dev/null
        ${bin}cnndesk-cli train shapes --project proj --epochs 1 --json > train.jsonl
        ${bin}cnndesk-cli predict proj shapes/circle/circle_000.png
        ${bin}cnndesk-cli export proj --format keras --out model.keras > /dev/null
        ${bin}cnndesk-cli export proj --format saved_model --out saved > /dev/null
        ${bin}cnndesk-cli export proj --format litert --out model.tflite > /dev/null
        ${bin}cnndesk-cli export proj --format onnx --out model.onnx > /dev/null
        ${bin}cnndesk-cli predict model.keras shapes/cross/cross_000.png > /dev/null
        ${bin}cnndesk-cli map proj shapes --png map.png --csv map.csv > /dev/null
        ls -d model.keras saved model.tflite model.onnx map.png map.csv" > "$out/$what-cli.txt" 2>&1 \
        || { tail -30 "$out/$what-cli.txt"; fail "$what: train, predict, export or map from the CLI"; }
    pass "$what: CLI trained, predicted ($(head -1 "$out/$what-cli.txt")), exported .keras, SavedModel, LiteRT, ONNX and drew the dataset map (scikit-learn) ($(secs $t) s wall)"
    rm -rf "$sys/tmp/work" "$sys/tmp/home"; mkdir -p "$sys/tmp/home"
}

echo "== the .deb in a clean $release root"
fresh_root
before=$(cd "$sys" && find opt usr/bin usr/share/applications usr/share/icons usr/share/doc 2>/dev/null | sort || true)
cp "$deb" "$sys/tmp/"
t=$(date +%s)
chroot "$sys" dpkg-query -W -f='${Package}\n' | sort > "$out/packages-before.txt"
{ apt_in_root update -qq && apt_in_root install -y -qq "/tmp/$(basename "$deb")"; } > "$out/apt-deb.log" 2>&1 \
    || { tail -30 "$out/apt-deb.log"; fail "apt-get install the .deb"; }
chroot "$sys" dpkg-query -W -f='${Package}\n' | sort > "$out/packages-after.txt"
added=$(comm -13 "$out/packages-before.txt" "$out/packages-after.txt" | grep -vx cnndesk || true)
pass "apt installed the .deb and $(echo "$added" | grep -c .) packages it depends on in $(secs $t) s (list: $out/packages-added.txt)"
# which of them come from outside the archive's main component (Ubuntu: universe)
chroot "$sys" apt-cache show --no-all-versions $added 2>/dev/null \
    | awk '/^Package:/ {p=$2} /^Section:/ {print p, $2}' | sort -u > "$out/packages-added.txt"
outside=$(awk '$2 ~ /\// {print $1 " (" $2 ")"}' "$out/packages-added.txt" | paste -sd' ')
[ -z "$outside" ] || pass "of them outside main: $outside"
pass "glibc in the root after the install: $(chroot "$sys" ldd --version | head -1 | grep -o '[0-9.]*$')"
rm "$sys/tmp/$(basename "$deb")"
exercise deb ""
chroot "$sys" dpkg -r cnndesk > /dev/null 2>&1 || fail "dpkg -r cnndesk"
after=$(cd "$sys" && find opt usr/bin usr/share/applications usr/share/icons usr/share/doc 2>/dev/null | sort || true)
left=$(comm -13 <(echo "$before") <(echo "$after") | grep -i cnndesk || true)
[ -z "$left" ] && [ ! -e "$sys/opt/cnndesk" ] || { echo "$left"; fail "dpkg -r left files of cnndesk behind"; }
pass "dpkg -r removed it; nothing of cnndesk is left"

echo "== the tarball in a clean $release root"
fresh_root
# the libraries the .deb depends on, by name (a desktop system has them): what the tarball expects
needs=$(dpkg-deb -f "$deb" Depends | sed 's/([^)]*)//g; s/,/ /g')
t=$(date +%s)
{ apt_in_root update -qq && apt_in_root install -y -qq --no-install-recommends $needs; } > "$out/apt-tarball.log" 2>&1 \
    || { tail -30 "$out/apt-tarball.log"; fail "apt-get install the tarball's libraries"; }
pass "apt installed the libraries the .deb names ($(echo $needs | wc -w) packages) in $(secs $t) s"
mkdir -p "$sys/opt/unpacked"
tar -C "$sys/opt/unpacked" -xzf "$tarball"
dir=/opt/unpacked/$(ls "$sys/opt/unpacked")
exercise tarball "$dir"
in_root sh "$dir/install.sh" > /dev/null && [ -L "$sys/tmp/home/.local/bin/cnndesk" ] || fail "tarball: install.sh"
in_root sh "$dir/install.sh" --remove > /dev/null && [ ! -e "$sys/tmp/home/.local/bin/cnndesk" ] || fail "tarball: install.sh --remove"
pass "tarball: install.sh adds and --remove takes away the menu entry and PATH links"
echo "clean-root checks passed ($release)"
