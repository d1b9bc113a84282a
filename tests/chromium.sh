#!/usr/bin/env bash
# chromium.sh - a page in a real headless Chromium (Debian's `chromium`, installed if missing).
#
#   chromium.sh dom URL OUT.html     the DOM after the page's scripts ran (--dump-dom), given
#                                    VIRTUAL_S seconds of virtual time for its fetches
#   chromium.sh shot URL OUT.png     a 1440x1000 screenshot, same wait
# As root, Chromium needs --no-sandbox. Its profile lives in a temporary directory removed at
# the end; a run longer than RUN_S is killed (its process group: timeout(1)).
set -uo pipefail
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
RUN_S=90
VIRTUAL_S=5

die() { echo "chromium.sh: $*" >&2; exit 1; }
[ $# -eq 3 ] || die "usage: chromium.sh dom|shot URL OUT"
mode=$1 url=$2 out=$3
if ! command -v chromium >/dev/null; then
    # shellcheck source=../scripts/lib/deps.sh
    . "$SRC/scripts/lib/deps.sh"
    cpn_install_pkgs chromium || die "cannot install the Debian package chromium"
fi
profile=$(mktemp -d "${TMPDIR:-/tmp}/cpn-chromium.XXXXXX") || die "no temporary directory"
trap 'rm -rf "$profile"' EXIT
args=(--headless --no-sandbox --disable-gpu --no-first-run --disable-extensions
      --disable-dev-shm-usage --user-data-dir="$profile" --hide-scrollbars
      --virtual-time-budget=$((VIRTUAL_S * 1000)))
case "$mode" in
dom) timeout -k 5 "$RUN_S" chromium "${args[@]}" --dump-dom "$url" >"$out" 2>"$profile/err" ;;
shot) timeout -k 5 "$RUN_S" chromium "${args[@]}" --window-size=1440,1000 \
          --screenshot="$out" "$url" >/dev/null 2>"$profile/err" ;;
*) die "mode is dom or shot" ;;
esac
rc=$?
if [ $rc != 0 ] || [ ! -s "$out" ]; then
    grep -v -e dbus -e 'Fontconfig' "$profile/err" | tail -20 >&2
    die "chromium $mode $url failed (exit $rc)"
fi
