#!/usr/bin/env bash
# test_python_sketch.sh - docs/PROTOCOL.md's Python blocks, run as written with Debian's
# python3: "A client in Python" (python3-cryptography) prints exactly the document's
# vector-frame-hex, and "Opening access details in Python" (python3-nacl) prints exactly its
# vector-access-plain. An implementer copies these sketches; they must work on the Debian the
# project targets. TAP output.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$SRC/scripts/lib/deps.sh"
echo "1..2"
if ! cpn_install_pkgs python3 python3-cryptography python3-nacl; then
    echo "not ok 1 - python3-cryptography and python3-nacl could not be installed"
    echo "not ok 2 - python3-cryptography and python3-nacl could not be installed"
    exit 1
fi
doc="$SRC/docs/PROTOCOL.md"
fail=0

# The python block under the heading $1.
block() {
    awk -v h="$1" '$0 == h {inside = 1} inside && /^```python/ {grab = 1; next}
                   grab && /^```/ {exit} grab {print}' "$doc"
}

# check N HEADING VECTOR HEX|TEXT: the block under HEADING prints vector VECTOR.
check() {
    local n=$1 heading=$2 vector=$3 kind=$4 sketch want got
    sketch=$(block "$heading")
    if [ "$kind" = hex ]; then
        want=$(awk -v v="vector-$vector:" '$0 == v {grab = 1; next}
                    grab && /^  / {gsub(/ /, ""); printf "%s", $0; next} grab {exit}' "$doc")
    else
        want=$(sed -n "s/^vector-$vector: //p" "$doc")
    fi
    got=$(printf '%s\n' "$sketch" | /usr/bin/python3 - 2>&1)
    if [ -n "$sketch" ] && [ -n "$want" ] && [ "$got" = "$want" ]; then
        echo "ok $n - the Python sketch \"${heading#\#\#\# }\" prints vector-$vector"
    else
        echo "not ok $n - the Python sketch \"${heading#\#\#\# }\" prints vector-$vector"
        echo "# want: $want"
        echo "# got:  $got"
        fail=1
    fi
}

check 1 "### A client in Python" frame-hex hex
check 2 "### Opening access details in Python" access-plain text
exit $fail
