#!/usr/bin/env bash
# test_structure.sh - the house keeps its shape (STYLE rules 1, 14, 15). TAP output.
#  1. per-file include allow-lists: each directory's .may_include says, for each file, which
#     quoted headers it may include (Tor's .may_include), so a pure core (book, match, batch,
#     window, policy, ratelimit, grant, inventory, resource, units) never includes a header of a
#     module that does I/O (SQLite, sockets, the clock);
#  2. no source file over CPN_MAX_LINES lines (default 1500): a file that big does several jobs;
#  3. no circles: within each directory, no file calls a function of a file that, directly or
#     round a loop, calls back into it (the calls are read as text: a global function's name
#     followed by "(" in another file of the directory).
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
MAX_LINES=${CPN_MAX_LINES:-1500}
DIRS="common peer broker ctl"
n=0
tap() { # ok? text [detail]
    n=$((n + 1))
    if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; [ -n "$3" ] && printf '# %s\n' "$3"; fi
}
dirs=""
for d in $DIRS; do [ -d "$SRC/$d" ] && dirs="$dirs $d"; done
set -- $dirs
echo "1..$(( $# * 3 ))"

# The allowed include patterns for file $2 in directory $1 (first matching line of .may_include).
allowed() {
    local rules="$SRC/$1/.may_include" name=$2 line pats p
    [ -f "$rules" ] || { echo '*'; return; }
    while IFS= read -r line; do
        line=${line%%#*}
        [[ $line == *:* ]] || continue
        set -f
        for p in ${line%%:*}; do
            # shellcheck disable=SC2053
            if [[ $name == $p ]]; then echo "${line#*:}"; set +f; return; fi
        done
        set +f
    done <"$rules"
    echo ""
}

for d in "$@"; do
    bad=""
    for f in "$SRC/$d"/*.[ch]; do
        [ -e "$f" ] || continue
        name=$(basename "$f")
        pats=$(allowed "$d" "$name")
        set -f # the patterns are globs to match names with, not to expand
        for inc in $(sed -n 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"\([^"]*\)".*/\1/p' "$f"); do
            ok=1
            for p in $pats; do
                # shellcheck disable=SC2053
                [[ $inc == $p ]] && ok=0
            done
            [ $ok = 0 ] || bad="$bad $name:$inc"
        done
        set +f
    done
    tap "$([ -z "$bad" ]; echo $?)" "$d: every include allowed by $d/.may_include" "not allowed:$bad"

    big=""
    for f in "$SRC/$d"/*.[ch]; do
        [ -e "$f" ] || continue
        l=$(wc -l <"$f")
        [ "$l" -le "$MAX_LINES" ] || big="$big $(basename "$f")($l)"
    done
    tap "$([ -z "$big" ]; echo $?)" "$d: no file over $MAX_LINES lines" "too big:$big"

    # Global functions defined per file: a definition starts at column 0, is not static, and
    # its name is lower case (macro-generated definitions and _Static_assert are not read).
    tmp=$(mktemp -d)
    for f in "$SRC/$d"/*.c; do
        [ -e "$f" ] || continue
        awk '/^[A-Za-z_]/ && !/^static/ && !/^typedef/ && !/;[[:space:]]*$/ && /\(/ {
                 s = $0; sub(/\(.*/, "", s); n = split(s, w, /[^A-Za-z0-9_]+/);
                 if (w[n] ~ /^[a-z][a-z0-9_]*$/ && w[n] != "main") print w[n] }' "$f" | sort -u >"$tmp/$(basename "$f").defs"
        # the text with comments and strings blanked, for finding calls
        sed -e 's://.*$::' -e 's:"[^"]*"::g' "$f" | awk 'BEGIN{c=0} {
                 out=""; s=$0
                 while (length(s)) {
                     if (c) { i = index(s, "*/"); if (!i) { s = ""; break } s = substr(s, i + 2); c = 0 }
                     else { i = index(s, "/*"); if (!i) { out = out s; s = ""; break }
                            out = out substr(s, 1, i - 1); s = substr(s, i + 2); c = 1 } }
                 print out }' >"$tmp/$(basename "$f").text"
    done
    : >"$tmp/edges"
    for a in "$tmp"/*.text; do
        fa=$(basename "$a" .text)
        for b in "$tmp"/*.defs; do
            fb=$(basename "$b" .defs)
            [ "$fa" = "$fb" ] && continue
            [ -s "$b" ] || continue
            if grep -qE "(^|[^A-Za-z0-9_])($(paste -sd'|' "$b"))[[:space:]]*\(" "$a"; then
                echo "$fa $fb" >>"$tmp/edges"
            fi
        done
    done
    loop=$(tsort "$tmp/edges" 2>&1 >/dev/null | grep -v 'input contains a loop' | sed 's/^tsort: //' | sort -u | tr '\n' ' ')
    rm -rf "$tmp"
    tap "$([ -z "$loop" ]; echo $?)" "$d: no file calls round a loop back into itself" "a loop through:$loop"
done
