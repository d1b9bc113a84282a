#!/usr/bin/env bash
# test_python_sketch.sh - docs/PROTOCOL.md's "A client in Python" block, run as written with
# Debian's python3 and python3-cryptography, prints exactly the document's vector-frame-hex.
# An implementer copies that sketch; it must work on the Debian the project targets. TAP output.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
. "$SRC/scripts/lib/deps.sh"
echo "1..1"
if ! cpn_install_pkgs python3 python3-cryptography; then
    echo "not ok 1 - python3-cryptography could not be installed"
    exit 1
fi
doc="$SRC/docs/PROTOCOL.md"
sketch=$(awk '/^### A client in Python/ {inside = 1} inside && /^```python/ {grab = 1; next}
              grab && /^```/ {exit} grab {print}' "$doc")
want=$(awk '/^vector-frame-hex:/ {grab = 1; next} grab && /^  / {gsub(/ /, ""); printf "%s", $0; next}
            grab {exit}' "$doc")
got=$(printf '%s\n' "$sketch" | /usr/bin/python3 - 2>&1)
if [ -n "$sketch" ] && [ -n "$want" ] && [ "$got" = "$want" ]; then
    echo "ok 1 - the Python sketch prints vector-frame-hex"
else
    echo "not ok 1 - the Python sketch prints vector-frame-hex"
    echo "# want: $want"
    echo "# got:  $got"
    exit 1
fi
