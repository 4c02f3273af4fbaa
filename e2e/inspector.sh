#!/usr/bin/env bash
# End-to-end check of the sessionplane MCP server with the MCP Inspector CLI
# (@modelcontextprotocol/inspector, pinned in e2e/package-lock.json): a client
# nobody in this repo wrote, driving the real binary over stdio.
#
# Usage: bash e2e/inspector.sh <bin> [<db>] [server args...]
#   <bin> defaults to $SESSIONPLANE_BIN; <db> to $SESSIONPLANE_DB, else a
#   file in a temporary directory. Server args go after --db <db>.
#   Needs e2e/node_modules (cd e2e && npm ci).
#
# Inspector 2.12.0 CLI syntax used here:
#   mcp-inspector --cli [--format json] [--protocol-era legacy|modern]
#       --method tools/list | tools/call --tool-name T [--tool-arg k=v ...]
#       | resources/list | resources/read --uri U
#       -- <server command> [server args...]
# The `--` matters: without it the Inspector takes server flags it also
# knows (--log-level, --config) for itself. Exit codes: 0 ok, 5 the tool
# returned isError:true (the result is still printed on stdout), 1 other
# errors (e.g. a structuredContent that fails the tool's outputSchema).
#
# Every check runs in both protocol eras the Inspector offers: legacy
# (2025-11-25 handshake) and modern (2026-07-28).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
inspector="$here/node_modules/.bin/mcp-inspector"
if [[ ! -x "$inspector" ]]; then
	echo "inspector.sh: $inspector not found: run (cd e2e && npm ci) first" >&2
	exit 2
fi
command -v node >/dev/null || { echo "inspector.sh: node not found (install Node 20 and npm)" >&2; exit 2; }

bin=${1:-${SESSIONPLANE_BIN:-}}
[[ $# -gt 0 ]] && shift
if [[ -z "$bin" ]]; then
	echo "usage: bash e2e/inspector.sh <bin> [<db>] [server args...]  (or set SESSIONPLANE_BIN)" >&2
	exit 2
fi
[[ "$bin" == */* ]] || bin=$(command -v "$bin" || echo "$bin")
[[ "$bin" == /* ]] || bin="$PWD/$bin"
[[ -x "$bin" ]] || { echo "inspector.sh: $bin is not an executable" >&2; exit 2; }

work=$(mktemp -d "${TMPDIR:-/tmp}/sessionplane-inspector.XXXXXX")
trap 'rm -rf "$work"' EXIT

if [[ $# -gt 0 && "$1" != -* ]]; then
	db=$1
	shift
else
	db=${SESSIONPLANE_DB:-$work/sessionplane.db}
fi
extra=("$@")

# Keep the Inspector's own files (server catalog, client config, OAuth
# state) out of the user's home directory.
export MCP_CATALOG_PATH="$work/inspector/mcp.json"
export MCP_CLIENT_CONFIG_PATH="$work/inspector/client.json"
export MCP_STORAGE_DIR="$work/inspector/storage"
export NO_COLOR=1
mkdir -p "$work/inspector"

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok - $1"; }
fail() {
	failed=$((failed + 1))
	echo "not ok - $1"
	[[ -n "${2:-}" ]] && printf '%s\n' "$2" | sed 's/^/#   /'
	return 0
}

# inspect NAME ARGS...: runs the Inspector CLI against the server; stdout goes
# to $work/NAME.out, stderr to $work/NAME.err, the exit code to $rc.
rc=0
inspect() {
	local name=$1
	shift
	set +e
	timeout 120 "$inspector" --cli --format json --protocol-era "$era" "$@" \
		-- "$bin" --db "$db" "${extra[@]}" >"$work/$era.$name.out" 2>"$work/$era.$name.err"
	rc=$?
	set -e
}

# start NAME ARGS...: inspect in the background; collect NAME (after wait)
# sets $rc. Every Inspector run of an era starts at once: each is a node
# process that mostly waits, so side by side they take the time of one.
start() {
	local name=$1
	shift
	(
		inspect "$name" "$@"
		echo "$rc" >"$work/$era.$name.rc"
	) &
}
collect() { rc=$(cat "$work/$era.$1.rc" 2>/dev/null || echo 255); }

# evidence NAME: the output of a run, shortened, for a failure report.
evidence() {
	printf 'exit %s\nstdout: %s\nstderr: %s' "$rc" "$(head -c 1500 "$work/$era.$1.out")" \
		"$(grep -v ' level=' "$work/$era.$1.err" | tail -n 15 | head -c 1500)"
}

# assert_json LABEL NAME EXPR: EXPR is a JavaScript expression over r (the
# parsed stdout of run NAME) and text(result) (its text content blocks). It
# must evaluate to true; a string result is the failure detail.
assert_json() {
	local label=$1 name=$2 expr=$3 why
	if why=$(node -e '
		const fs = require("fs");
		const [file, expr] = process.argv.slice(1);
		let r;
		try { r = JSON.parse(fs.readFileSync(file, "utf8")); }
		catch (e) { console.log("stdout is not one JSON document: " + e.message); process.exit(1); }
		const text = (res) => ((res && res.content) || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
		let v;
		try { v = new Function("r", "text", "return (" + expr + ");")(r, text); }
		catch (e) { console.log("assertion threw: " + e.message); process.exit(1); }
		if (v === true) process.exit(0);
		console.log(typeof v === "string" ? v : "expected: " + expr);
		process.exit(1);
	' "$work/$era.$name.out" "$expr" 2>&1); then
		pass "$label"
	else
		fail "$label" "$why
$(evidence "$name")"
	fi
}

read_tools=(sessions_list sessions_history sessions_search session_status agents_list)

echo "# sessionplane $bin --db $db ${extra[*]}"
echo "# inspector $("$inspector" --version 2>/dev/null | tail -n 1)"

# run_era ERA: every check in one protocol era; its counts go to
# $work/ERA.counts. The two eras run side by side (each Inspector run starts
# its own server; several processes share one database by design), which
# halves the wall time of the slowest part of the test suite.
run_era() {
	local era=$1
	local p="[$era]"
	passed=0
	failed=0

	start list --method tools/list
	for t in "${read_tools[@]}"; do
		args=()
		case $t in
		sessions_history) args=(--tool-arg key=main) ;;
		sessions_search) args=(--tool-arg query=anything) ;;
		esac
		start "call_$t" --method tools/call --tool-name "$t" "${args[@]}"
	done
	start reslist --method resources/list
	start read --method resources/read --uri session://agent:main:main
	bad_calls=(
		"limit|--tool-arg key=main limit=5000"
		"bogus|--tool-args-json {\"bogus\":1}"
		"agent:nope:main|--tool-arg key=agent:nope:main"
	)
	i=0
	for spec in "${bad_calls[@]}"; do
		i=$((i + 1))
		read -r -a args <<<"${spec#*|}"
		start "bad$i" --method tools/call --tool-name sessions_history "${args[@]}"
	done
	wait

	# tools/list
	collect list
	if [[ $rc -ne 0 ]]; then
		fail "$p tools/list exits 0" "$(evidence list)"
	else
		pass "$p tools/list exits 0"
		# One node process checks every read tool (a process per tool cost seconds).
		assert_json "$p tools/list has ${read_tools[*]} with inputSchema, outputSchema, description, readOnlyHint=true" list "
			(() => {
				const bad = [];
				for (const name of '${read_tools[*]}'.split(' ')) {
					const t = (r.result && r.result.tools || []).find((x) => x.name === name);
					if (!t) { bad.push(name + ' not listed'); continue; }
					if (!t.inputSchema || t.inputSchema.type !== 'object') bad.push(name + '.inputSchema');
					if (!t.outputSchema || t.outputSchema.type !== 'object') bad.push(name + '.outputSchema');
					if (typeof t.description !== 'string' || !t.description.trim()) bad.push(name + '.description');
					if (!t.annotations || t.annotations.readOnlyHint !== true) bad.push(name + '.annotations.readOnlyHint');
				}
				return bad.length === 0 || 'missing or wrong: ' + bad.join(', ');
			})()"
	fi

	# tools/call on each read tool
	for t in "${read_tools[@]}"; do
		args=()
		case $t in
		sessions_history) args=(--tool-arg key=main) ;;
		sessions_search) args=(--tool-arg query=anything) ;;
		esac
		collect "call_$t"
		if [[ $rc -ne 0 ]]; then
			fail "$p tools/call $t${args[*]:+ ${args[*]}} exits 0" "$(evidence "call_$t")"
		else
			assert_json "$p tools/call $t${args[*]:+ ${args[*]}} succeeds with structuredContent" "call_$t" "
				!r.result ? 'no result' :
				r.result.isError ? 'isError: ' + text(r.result) :
				(r.result.structuredContent && typeof r.result.structuredContent === 'object') || 'no structuredContent'"
		fi
	done

	# resources
	collect reslist
	if [[ $rc -ne 0 ]]; then
		fail "$p resources/list exits 0" "$(evidence reslist)"
	else
		assert_json "$p resources/list includes session://agent:main:main" reslist "
			(r.result.resources || []).some((x) => x.uri === 'session://agent:main:main') ||
			'uris: ' + (r.result.resources || []).map((x) => x.uri).join(', ')"
	fi
	collect read
	if [[ $rc -ne 0 ]]; then
		fail "$p resources/read session://agent:main:main exits 0" "$(evidence read)"
	else
		assert_json "$p resources/read session://agent:main:main is JSON with session.key agent:main:main" read "
			(() => {
				const c = (r.result.contents || []).find((x) => x.uri === 'session://agent:main:main');
				if (!c) return 'no contents for the uri';
				const doc = JSON.parse(c.text);
				return (doc.session && doc.session.key === 'agent:main:main') || 'session.key = ' + JSON.stringify(doc.session && doc.session.key);
			})()"
	fi

	# errors: a tool error is exit 5 with the isError result on stdout (or,
	# for a client that does not map it to an exit code, exit 0 and isError).
	i=0
	for spec in "${bad_calls[@]}"; do
		i=$((i + 1))
		needle=${spec%%|*}
		read -r -a args <<<"${spec#*|}"
		collect "bad$i"
		label="$p tools/call sessions_history ${args[*]} fails as a tool error (exit 5 or isError) naming \"$needle\""
		if [[ $rc -ne 5 && $rc -ne 0 ]]; then
			fail "$label" "expected exit 5 (tool returned isError:true), got exit $rc
$(evidence "bad$i")"
		else
			assert_json "$label" "bad$i" "
				!r.result ? 'no result' :
				r.result.isError !== true ? 'isError is ' + JSON.stringify(r.result.isError) :
				text(r.result).includes('$needle') || 'text does not mention $needle: ' + text(r.result)"
		fi
	done
	echo "$passed $failed" >"$work/$era.counts"
}

# The database is created before the eras race to it.
era=init inspect init --method tools/list || true
for era in legacy modern; do
	run_era "$era" >"$work/$era.log" 2>&1 &
done
wait
passed=0
failed=0
for era in legacy modern; do
	cat "$work/$era.log"
	if [[ -s "$work/$era.counts" ]]; then
		read -r ep ef <"$work/$era.counts"
		passed=$((passed + ep))
		failed=$((failed + ef))
	else
		fail "[$era] the era's checks ran to the end" "$(tail -n 20 "$work/$era.log")"
	fi
done

echo "inspector cli: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
