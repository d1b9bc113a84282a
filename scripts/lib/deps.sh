# deps.sh - install the Debian packages cpn needs, only those missing (idempotent).
# Sourced by scripts/check, scripts/demo and the benchmarks.

CPN_BUILD_PKGS="build-essential autoconf automake libtool pkg-config \
libzmq3-dev libsodium-dev libmsgpack-dev libyaml-dev libcmocka-dev libsqlite3-dev libjansson-dev \
clang libclang-rt-14-dev sqlite3 libmicrohttpd-dev libsystemd-dev"

cpn_install_pkgs() {
    local need="" p
    for p in $CPN_BUILD_PKGS "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
    done
    [ -z "$need" ] && return 0
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages:$need (run as root, or: sudo apt-get install$need)" >&2
        return 1
    fi
    echo "installing:$need" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null || return 1
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $need >/dev/null || return 1
}

# Configure and build into $1 with extra CFLAGS $2 and LDFLAGS $3.
cpn_build() {
    local dir=$1 cflags=$2 ldflags=$3 root
    root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
    [ -x "$root/configure" ] || (cd "$root" && autoreconf -fi >/dev/null 2>&1) || return 1
    mkdir -p "$dir"
    (cd "$dir" && [ -f Makefile ] || "$root/configure" --enable-werror CFLAGS="$cflags" \
        LDFLAGS="$ldflags" >configure.out 2>&1) || { cat "$dir/configure.out" >&2; return 1; }
    make -C "$dir" -j"$(nproc)" >"$dir/make.out" 2>&1 || { tail -50 "$dir/make.out" >&2; return 1; }
}
