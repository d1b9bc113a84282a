#!/usr/bin/env bash
# test_exec_example.sh - the example exec driver conf/drivers/local-user, run for real: it
# creates, renews, lists and removes real Unix accounts. The test runs it in a mount
# namespace of its own over a copy of /etc (so useradd edits the copy, not this machine's
# accounts) with homes in a temporary directory, and checks the driver contract of
# docs/PROVISIONING.md verb by verb. Needs root, unshare, useradd and jq (installed with
# apt-get if missing, scripts/lib/deps.sh). TAP output.
SRC=${CPN_SRCDIR:-$(cd "$(dirname "$0")/.." && pwd)}
DRV=$SRC/conf/drivers/local-user
if [ "${1:-}" != --inside ]; then
    # shellcheck source=../scripts/lib/deps.sh
    . "$SRC/scripts/lib/deps.sh"
    cpn_install_pkgs jq passwd util-linux >&2 || { echo "1..1"; echo "not ok 1 - cannot install jq, passwd, util-linux"; exit 0; }
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/cpn-test-exec-example.XXXXXX") || exit 1
    trap 'rm -rf "$tmp"' EXIT
    unshare --mount --propagation private "$0" --inside "$tmp"
    exit $?
fi
tmp=$2
cp -a /etc "$tmp/etc" && mount --bind "$tmp/etc" /etc || { echo "1..1"; echo "not ok 1 - private /etc"; exit 0; }
mkdir -p "$tmp/home"
export CPN_LOCAL_USER_HOME=$tmp/home CPN_LOCAL_USER_HOST=login.test
n=0
ok() { n=$((n + 1)); if [ "$1" = 0 ]; then echo "ok $n - $2"; else echo "not ok $n - $2"; [ -n "${3:-}" ] && printf '# %s\n' "$3"; fi; }
echo "1..12"
now=$(($(date +%s) * 1000))
key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIExampleKeyForTheTest0000000000000000000 alice@test"
call() { # lease_id end_ms [ssh_key]
    jq -cn --arg l "$1" --argjson e "$2" --arg k "${3:-}" \
        '{verb: "x", lease_id: $l, tenant: "T", tenant_kid: "kid", package: "vm", units: 1,
          start_ms: 0, end_ms: $e, access: (if $k == "" then null else {ssh_key: $k} end)}'
}
user=cpn$(printf '%s' L1234567890abcdef | sha256sum | cut -c1-12)

out=$(call L1234567890abcdef $((now + 3600000)) "$key" | "$DRV" grant)
ok "$([ "$(jq -r .ok <<<"$out")" = true ] && [ "$(jq -r .access.user <<<"$out")" = "$user" ] &&
    [ "$(jq -r .access.host <<<"$out")" = login.test ]; echo $?)" "grant: ok, access names the account and host" "$out"
ok "$(getent passwd "$user" | grep -q "cpn lease L1234567890abcdef"; echo $?)" "grant: the account exists"
ok "$([ "$(cat "$tmp/home/$user/.ssh/authorized_keys")" = "$key" ] &&
    [ "$(stat -c %U "$tmp/home/$user/.ssh/authorized_keys")" = "$user" ]; echo $?)" "grant: authorized_keys holds the tenant's key, owned by the account"
out2=$(call L1234567890abcdef $((now + 3600000)) "$key" | "$DRV" grant)
ok "$([ "$(jq -c .access <<<"$out2")" = "$(jq -c .access <<<"$out")" ]; echo $?)" "grant again: the same account (idempotent)" "$out2"
out=$(call L1234567890abcdef 0 | "$DRV" status)
ok "$([ "$(jq -c . <<<"$out")" = '{"ok":true,"present":true}' ]; echo $?)" "status: present" "$out"
out=$(call L1234567890abcdef 0 | "$DRV" list)
ok "$(jq -e '.ok and (.leases | index("L1234567890abcdef"))' <<<"$out" >/dev/null; echo $?)" "list: names the lease" "$out"
out=$(call L1234567890abcdef $((now + 10 * 86400000)) | "$DRV" renew)
want=$(date -u -d "@$((now / 1000 + 11 * 86400))" +%Y-%m-%d)
ok "$([ "$(jq -r .ok <<<"$out")" = true ] &&
    [ "$(date -u -d "@$(( $(getent shadow "$user" | cut -d: -f8) * 86400 ))" +%Y-%m-%d)" = "$want" ]; echo $?)" "renew: the account expires the day after the new end" "$out"
out=$(call L1234567890abcdef 0 | "$DRV" release)
ok "$([ "$(jq -r .ok <<<"$out")" = true ] && ! getent passwd "$user" >/dev/null && [ ! -d "$tmp/home/$user" ]; echo $?)" "release: account and home gone" "$out"
out=$(call L1234567890abcdef 0 | "$DRV" release)
ok "$([ "$(jq -r .ok <<<"$out")" = true ]; echo $?)" "release again: ok (idempotent)" "$out"
out=$(call L1234567890abcdef 0 | "$DRV" status)
ok "$([ "$(jq -c . <<<"$out")" = '{"ok":true,"present":false}' ]; echo $?)" "status: gone" "$out"
out=$(call L2 $((now + 3600000)) | "$DRV" grant)
ok "$([ "$(jq -r .ok <<<"$out")" = false ] && jq -r .error <<<"$out" | grep -q ssh_key; echo $?)" "grant without an ssh_key hint: an error saying so" "$out"
out=$(printf 'not json\001' | "$DRV" grant)
ok "$([ "$(jq -r .ok <<<"$out")" = false ]; echo $?)" "garbage on stdin: an error, not a crash" "$out"
