#!/bin/sh
# agent/tests/mutants/refresh.sh NAME... (or no name: every patch)
# Re-bases mutant patches on the current agent sources after an edit moved or
# changed the code around their hunks: applies each with patch's default fuzz
# to a copy of agent/ and rewrites it as the diff from the clean copy (its
# comment header kept). Read the result before committing it: a hunk that
# applied with fuzz may need a look; one that does not apply is left to you
# (the .rej is printed) and the patch is not touched.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
agent=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
[ $# -gt 0 ] || set -- $(cd "$here" && ls *.patch | sed 's/\.patch$//')
status=0
for name in "$@"; do
    p="$here/$name.patch"
    rm -rf "$tmp/a" "$tmp/b"
    mkdir -p "$tmp/a" "$tmp/b"
    cp -r "$agent/src" "$agent/include" "$agent/main.c" "$tmp/a/"
    cp -r "$agent/src" "$agent/include" "$agent/main.c" "$tmp/b/"
    if ! patch -p1 --batch --forward --no-backup-if-mismatch -d "$tmp/b" -i "$p" >"$tmp/log" 2>&1; then
        echo "$name: does not apply:" >&2
        cat "$tmp/log" >&2
        find "$tmp/b" -name '*.rej' -exec cat {} + >&2
        status=1
        continue
    fi
    sed -n '/^--- /q;p' "$p" >"$tmp/new"
    (cd "$tmp" && diff -ruN a b | grep -v '^diff ' |
        sed -e 's|^--- a/\([^	]*\).*|--- a/\1|' -e 's|^+++ b/\([^	]*\).*|+++ b/\1|') >>"$tmp/new" || true
    if cmp -s "$tmp/new" "$p"; then
        echo "$name: up to date"
    else
        cp "$tmp/new" "$p"
        echo "$name: rewritten"
    fi
done
exit $status
