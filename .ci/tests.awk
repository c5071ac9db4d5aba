# Reads `go test -v` output and prints each package's result line, and each
# skipped or failed test with the last lines it logged (the reason).
function flush_pkg() { delete logs; delete n }
/^=== (RUN|CONT|NAME|PAUSE) / { cur = $3; next }
/^ *--- (SKIP|FAIL): / {
	name = $3
	print
	for (i = n[name] > 6 ? n[name] - 5 : 1; i <= n[name]; i++) print "    " logs[name, i]
	next
}
/^ *--- PASS: / { next }
# A panic (a test timeout is one) prints every goroutine: pass all of it
# on, up to the package's FAIL line.
/^panic: / { inpanic = 1 }
inpanic { print; if (/^FAIL/) { inpanic = 0; flush_pkg() } next }
/^(ok|FAIL|\?)[ \t]/ || /^FAIL$/ { print; flush_pkg(); next }
/^    / { if (cur != "") { n[cur]++; logs[cur, n[cur]] = $0 } }
