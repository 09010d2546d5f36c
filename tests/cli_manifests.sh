#!/usr/bin/env bash
# caramba compile / run on manifests:
#  - every malformed manifest under tests/manifests/bad/ exits 1 with exactly one message
#    "error: FILE:LINE:COL: key.path: ..." containing its expectation (first line "# expect: ..."
#    or a NAME.expect sidecar), prints nothing on stdout, writes no file, and neither crashes nor
#    hangs;
#  - every preset compiles (exit 0, "compiled: NAME"), prints a plan, and `caramba run` reports it.
# Usage: tests/cli_manifests.sh path/to/caramba   (run from the repository root)
set -u
BIN=${1:?usage: $0 CARAMBA}
BIN=$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")
ROOT=${CARAMBA_SOURCE_DIR:-$(pwd)}
cd "$ROOT" || exit 1
BAD=tests/manifests/bad
fails=0
checked=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
    echo "FAIL: $*"
    fails=$((fails + 1))
}

before=$(ls -A "$BAD" | sort)
for f in "$BAD"/*; do
    name=$(basename "$f")
    case "$name" in *.expect) continue ;; esac
    if [ -f "$f.expect" ]; then
        expect=$(head -n 1 "$f.expect")
    else
        expect=$(head -n 1 "$f" | sed -n 's/^# expect: //p')
    fi
    if [ -z "$expect" ]; then
        fail "$name: no expectation (first line '# expect: ...' or $name.expect)"
        continue
    fi
    timeout 20 "$BIN" compile "$f" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    checked=$((checked + 1))
    if [ $rc -eq 124 ]; then
        fail "$name: hangs (killed after 20 s)"
        continue
    fi
    if [ $rc -ne 1 ]; then
        fail "$name: exit status $rc, want 1"
        sed 's/^/    /' "$tmp/err" | head -20
        continue
    fi
    if [ -s "$tmp/out" ]; then
        fail "$name: wrote to stdout"
        sed 's/^/    /' "$tmp/out" | head -5
    fi
    if grep -qE 'Sanitizer|runtime error|Segmentation|Aborted' "$tmp/err"; then
        fail "$name: sanitizer report"
        sed 's/^/    /' "$tmp/err" | head -30
        continue
    fi
    n=$(grep -c '^error: ' "$tmp/err")
    if [ "$n" -ne 1 ]; then
        fail "$name: $n error lines, want exactly one"
        sed 's/^/    /' "$tmp/err" | head -10
        continue
    fi
    line=$(grep '^error: ' "$tmp/err")
    if ! printf '%s\n' "$line" | grep -qE "^error: [^ ]*$name:[0-9]+:[0-9]+: [^ ]+: "; then
        fail "$name: message is not 'error: FILE:LINE:COL: key.path: ...': $line"
    fi
    if ! grep -qF -- "$expect" "$tmp/err"; then
        fail "$name: message does not contain the expectation"
        echo "    want: $expect"
        echo "    got:  $line"
    fi
done
after=$(ls -A "$BAD" | sort)
[ "$before" = "$after" ] || fail "compiling malformed manifests created files in $BAD"
[ "$checked" -ge 40 ] || fail "only $checked malformed manifests (want at least 40)"

# a missing file and a directory are errors with a position too
timeout 20 "$BIN" compile "$tmp/does_not_exist.yml" >/dev/null 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -qE '^error: .*does_not_exist.yml:1:1: \(root\): cannot open' "$tmp/err" ||
    fail "missing manifest: exit $rc, $(cat "$tmp/err")"
mkdir -p "$tmp/dir.yml"
timeout 20 "$BIN" compile "$tmp/dir.yml" >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q '^error: .*dir.yml:1:1:' "$tmp/err" || fail "directory as manifest: $(cat "$tmp/err")"

# every preset compiles, prints its plan and is reported by `run` (a dry run once `run` trains)
dry=""
"$BIN" run --help 2>/dev/null | grep -q -- '--dry-run' && dry="--dry-run"
npresets=0
for p in presets/*.yml; do
    name=$(basename "$p" .yml)
    npresets=$((npresets + 1))
    out=$(timeout 60 "$BIN" compile "$p" 2>&1)
    rc=$?
    [ $rc -eq 0 ] || fail "$p: exit status $rc: $out"
    [ "$out" = "compiled: $name" ] || fail "$p: printed '$out', want 'compiled: $name'"
    out=$(timeout 60 "$BIN" compile "$p" --print-plan --batch 2 --seq 16 2>&1)
    [ $? -eq 0 ] || fail "$p --print-plan failed"
    printf '%s\n' "$out" | grep -q '^total parameters: ' || fail "$p: plan has no parameter total"
    printf '%s\n' "$out" | grep -q "^compiled: $name\$" || fail "$p: plan run did not end compiled"
    if grep -q '^groups:' "$p"; then
        out=$(timeout 60 "$BIN" run "$p" $dry 2>&1)
        [ $? -eq 0 ] || fail "$p: caramba run failed: $out"
        printf '%s\n' "$out" | grep -q "^group '" || fail "$p: run did not report a group"
    fi
done
[ "$npresets" -ge 7 ] || fail "only $npresets presets"

# run: unknown group
timeout 20 "$BIN" run presets/tiny.yml --group nope $dry >/dev/null 2>"$tmp/err"
[ $? -eq 1 ] && grep -q "no group 'nope'" "$tmp/err" || fail "run --group nope: $(cat "$tmp/err")"
# help is accurate enough to mention the flags
"$BIN" compile --help | grep -q -- '--print-plan' || fail "compile --help lacks --print-plan"
"$BIN" run --help | grep -q -- '--group' || fail "run --help lacks --group"

echo "checked $checked malformed manifests and $npresets presets; $fails failure(s)"
[ $fails -eq 0 ]
