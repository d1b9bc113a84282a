#!/usr/bin/env bash
# test_man.sh - every manual page in docs/man/ is installed: Makefile.am lists each in
# dist_man_MANS, and `make install-man DESTDIR=...` of this build (CPN_BUILDDIR, set by make
# check) puts each where man finds it. TAP output.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
echo "1..2"
# dist_man_MANS, with its continuation lines and += lines, as one list
listed=$(sed -n '/^dist_man_MANS[[:space:]]*+\{0,1\}=/{:a;/\\$/{N;ba};p}' "$SRC/Makefile.am" |
    sed 's/^dist_man_MANS[[:space:]]*+\{0,1\}=//; s/\\$//' | tr -s ' \t\n\\' '\n')
missing=""
for page in "$SRC"/docs/man/*.[1-8]; do
    rel=docs/man/$(basename "$page")
    printf '%s\n' "$listed" | grep -qxF "$rel" || missing="$missing $rel"
done
if [ -z "$missing" ]; then echo "ok 1 - dist_man_MANS lists every page of docs/man"; else
    echo "not ok 1 - not in dist_man_MANS:$missing"; fi

if [ -z "${CPN_BUILDDIR:-}" ]; then
    echo "ok 2 - # SKIP install: no build directory (run through make check)"
    exit 0
fi
dest=$(mktemp -d "${TMPDIR:-/tmp}/cpn-test-man.XXXXXX") || { echo "not ok 2 - mktemp"; exit 0; }
trap 'rm -rf "$dest"' EXIT
out=$(make -s -C "$CPN_BUILDDIR" install-man DESTDIR="$dest" 2>&1)
rc=$?
absent=""
for page in "$SRC"/docs/man/*.[1-8]; do
    name=$(basename "$page")
    [ -n "$(find "$dest" -type f -path "*/man${name##*.}/$name" 2>/dev/null)" ] ||
        absent="$absent $name"
done
if [ "$rc" = 0 ] && [ -z "$absent" ]; then echo "ok 2 - make install-man installs every page"; else
    echo "not ok 2 - make install-man (exit $rc) did not install:$absent"
    printf '%s\n' "$out" | sed 's/^/# /'
fi
