#!/usr/bin/env bash
# Builds xds-peer, the go-control-plane test ADS server (main.go beside this script), into
#
#   ${WEFT_XDS_PEER_CACHE:-${XDG_CACHE_HOME:-~/.cache}/weft/xds-peer}/<hash>/xds-peer
#
# where <hash> covers go.mod, go.sum and main.go. A no-op when that binary exists. Prints the
# binary's path as the last line of its standard output (the Rust harness reads it).
#
# Usage: build.sh [--force] [--update]
#   --force   rebuild even when the binary exists
#   --update  `go mod tidy` first (needs the Go module proxy), then build; commit go.mod/go.sum
#
# Environment: GO (the go binary; default `go` on PATH, else /usr/local/go/bin/go),
# WEFT_XDS_PEER_CACHE, GOCACHE (Go's own default unless set).
set -euo pipefail
trap 'echo "build.sh: failed at line $LINENO: $BASH_COMMAND" >&2' ERR

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
FORCE=0
UPDATE=0
for arg in "$@"; do
	case "$arg" in
	--force) FORCE=1 ;;
	--update) UPDATE=1 ;;
	-h | --help)
		sed -n '2,/^set -e/p' "$0" | sed '$d; s/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build.sh: unknown argument $arg" >&2
		exit 2
		;;
	esac
done

if [[ -z ${GO:-} ]]; then
	if command -v go >/dev/null; then
		GO=go
	elif [[ -x /usr/local/go/bin/go ]]; then
		GO=/usr/local/go/bin/go
	else
		echo "build.sh: no Go toolchain (set GO=/path/to/go)" >&2
		exit 1
	fi
fi
export GOTOOLCHAIN=local # never download a toolchain
export CGO_ENABLED=0

if [[ $UPDATE == 1 ]]; then
	(cd "$HERE" && GOFLAGS=-mod=mod "$GO" mod tidy)
fi

CACHE_ROOT="${WEFT_XDS_PEER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/weft/xds-peer}"
HASH="$(cd "$HERE" && cat go.mod go.sum main.go | sha256sum | cut -c1-16)"
OUT="$CACHE_ROOT/$HASH"
BIN="$OUT/xds-peer"

if [[ $FORCE == 0 && -x $BIN ]]; then
	echo "$BIN"
	exit 0
fi

mkdir -p "$OUT"
# One build at a time per cache (test processes started in parallel).
exec 9>"$CACHE_ROOT/build.lock"
if command -v flock >/dev/null; then
	flock 9
	if [[ $FORCE == 0 && -x $BIN ]]; then
		echo "$BIN"
		exit 0
	fi
fi

T0=$(date +%s)
echo "building xds-peer into $OUT ($("$GO" version))" >&2
# -mod=readonly: go.sum is committed and complete; a build never edits it.
(cd "$HERE" && "$GO" build -mod=readonly -trimpath -ldflags "-s -w" -o "$BIN.tmp" .)
mv -f "$BIN.tmp" "$BIN"
echo "built xds-peer in $(($(date +%s) - T0))s" >&2
echo "$BIN"
