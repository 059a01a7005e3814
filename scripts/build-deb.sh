#!/usr/bin/env bash
# Builds the Debian package of temu-sync: target/debian/temu-sync_<version>_<arch>.deb.
#
#   scripts/build-deb.sh                      # cargo build --release, then package it
#   scripts/build-deb.sh --binary PATH        # package an already-built temu-sync binary
#   options: --out DIR (default target/debian), --fast (no compression: for tests)
#
# Needs dpkg-deb and dpkg-shlibdeps (package dpkg-dev); no cargo subcommand. The last line on
# stdout is the path of the .deb. What goes where (also docs/OPERATIONS.md):
#   /usr/bin/temu-sync                         the daemon
#   /lib/systemd/system/temu-sync.service      deploy/temu-sync.service (installed, not enabled)
#   /usr/lib/sysusers.d/temu-sync.conf         the static system user (packaging/temu-sync.sysusers)
#   /etc/temu-sync/config.yaml                 config.yaml, a conffile, 0640 root:temu-sync
#   /usr/share/temu-sync/prometheus/           alert rules and the scrape job
#   /usr/share/doc/temu-sync/                  README, OPERATIONS, CONFIGURATION, changelog, the
#                                              credentials drop-in example
# The version is Cargo.toml's; packaging/changelog must have an entry for it (its top one).
set -euo pipefail
cd "$(dirname "$0")/.."
umask 022

die() {
    echo "build-deb: $*" >&2
    exit 1
}

binary=""
out="target/debian"
compress=(-Zxz)
while [ $# -gt 0 ]; do
    case "$1" in
    --binary) binary=${2:?--binary needs a path}; shift 2 ;;
    --out) out=${2:?--out needs a directory}; shift 2 ;;
    --fast) compress=(-Znone); shift ;;
    -h | --help) sed -n '2,18p' "$0"; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
    esac
done
for tool in dpkg-deb dpkg-shlibdeps; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool is missing: apt-get install dpkg-dev"
done

# The [package] table's own keys (the first `version = ` would do, but say what is meant).
cargo_key() {
    sed -n '/^\[package\]/,/^\[/{s/^'"$1"' *= *"\(.*\)"$/\1/p}' Cargo.toml | head -n 1
}
version=$(cargo_key version)
summary=$(cargo_key description)
[ -n "$version" ] || die "no version in Cargo.toml's [package]"
# "temu-sync (0.1.0-1) bookworm; urgency=medium" -> 0.1.0-1
deb_version=$(sed -n '1s/^temu-sync (\([^)]*\)).*/\1/p' packaging/changelog)
[ "${deb_version%-*}" = "$version" ] ||
    die "packaging/changelog starts with '${deb_version:-nothing}', Cargo.toml says $version: add an entry 'temu-sync ($version-1)' on top"

if [ -z "$binary" ]; then
    cargo build --release --locked --bin temu-sync >&2
    binary=target/release/temu-sync
fi
[ -x "$binary" ] || die "$binary is not an executable"
built=$("$binary" --version) || die "$binary --version failed"
[ "$built" = "temu-sync $version" ] || die "$binary says '$built', Cargo.toml says $version: rebuild it"

arch=$(dpkg --print-architecture)
mkdir -p "$out"
work=$(mktemp -d "$out/.build.XXXXXX")
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
root="$work/debian/temu-sync"
doc="$root/usr/share/doc/temu-sync"

install -D -m 0755 "$binary" "$root/usr/bin/temu-sync"
install -D -m 0644 deploy/temu-sync.service "$root/lib/systemd/system/temu-sync.service"
install -D -m 0644 packaging/temu-sync.sysusers "$root/usr/lib/sysusers.d/temu-sync.conf"
# 0640 here too: until postinst gives it to the group, only root reads it.
install -D -m 0640 config.yaml "$root/etc/temu-sync/config.yaml"
install -D -m 0644 -t "$root/usr/share/temu-sync/prometheus" \
    deploy/prometheus/alerts.yml deploy/prometheus/scrape.yml
install -D -m 0644 -t "$doc" README.md docs/OPERATIONS.md docs/CONFIGURATION.md packaging/copyright
install -D -m 0644 packaging/credentials.conf "$doc/examples/credentials.conf"
gzip -9n -c packaging/changelog >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"

# Shared-library dependencies as Debian names them (libc6 (>= 2.34), …), plus what the scripts
# and the unit call: adduser (postinst), procps (/bin/kill in ExecReload=), and ca-certificates
# (without root certificates the daemon cannot build its HTTPS client and exits 78 at start).
install -d -m 0755 "$root/DEBIAN"
printf 'Source: temu-sync\n\nPackage: temu-sync\nArchitecture: any\n' >"$work/debian/control"
# (Its warning that the binary is not in a package directory is noise here: it is.)
if ! (cd "$work" && dpkg-shlibdeps -O -e debian/temu-sync/usr/bin/temu-sync >shlibs 2>shlibs.err); then
    cat "$work/shlibs.err" >&2
    die "dpkg-shlibdeps failed"
fi
grep -v "should already be installed in their package's directory" "$work/shlibs.err" >&2 || true
shlibs=$(cat "$work/shlibs")
shlibs=${shlibs#shlibs:Depends=}
depends="adduser, ca-certificates, procps, $shlibs"
rm "$work/debian/control" "$work/shlibs" "$work/shlibs.err"

install -m 0755 -t "$root/DEBIAN" packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm
install -m 0644 packaging/debian/conffiles "$root/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
sed -e "s|@VERSION@|$deb_version|" -e "s|@ARCH@|$arch|" -e "s|@INSTALLED_SIZE@|$size|" \
    -e "s|@DEPENDS@|$depends|" -e "s|@SUMMARY@|$summary|" \
    packaging/debian/control >"$root/DEBIAN/control"
# Conffiles (all of /etc) are left out, as dh_md5sums does: dpkg tracks them in conffiles.
(cd "$root" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' | sort -z |
    xargs -0 md5sum) >"$root/DEBIAN/md5sums"
chmod 0644 "$root/DEBIAN/md5sums"

deb="$out/temu-sync_${deb_version}_${arch}.deb"
dpkg-deb --root-owner-group "${compress[@]}" --build "$root" "$deb" >&2
echo "$deb"
