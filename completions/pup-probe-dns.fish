complete -c pup-probe-dns -l server -d 'Name server to ask, as an IP address with an optional port (192.0.2.1, 192.0.2.1:5353, ::1, [::1]:5353; default port 53); repeatable: each server is checked on its own, or together with --consistent [default: the first nameserver in /etc/resolv.conf]' -r
complete -c pup-probe-dns -l expect -d 'The answer set must be exactly these values, in any order (repeatable; written as `dig +short` writes them: `192.0.2.1`, `10 mail.example.org.`, `"v=spf1 -all"`, `0 issue "ca.example"`)' -r
complete -c pup-probe-dns -l expect-any -d 'At least one of these values must be in the answer set (repeatable)' -r
complete -c pup-probe-dns -l rcode -d 'The rcode the reply must have: NOERROR, NXDOMAIN, SERVFAIL, REFUSED, … or a number' -r
complete -c pup-probe-dns -l min-ttl -d 'Every record in the answer set must have at least this TTL' -r
complete -c pup-probe-dns -l name -d 'Name of the check in events (default: the target)' -r
complete -c pup-probe-dns -l tag -d 'Add a tag to every event (repeatable)' -r
complete -c pup-probe-dns -l timeout -d 'Deadline for the whole check, every phase included' -r
complete -c pup-probe-dns -l degraded-over -d 'Report `degraded` when an otherwise good check takes longer than this' -r
complete -c pup-probe-dns -s j -l concurrency -d 'Checks in flight at once' -r
complete -c pup-probe-dns -l format -d 'Output: one JSON event per line, or one short human line per result' -r -f -a "json\t''
text\t''"
complete -c pup-probe-dns -l tcp -d 'Ask over TCP instead of UDP (UDP answers that come back truncated are asked again over TCP anyway)'
complete -c pup-probe-dns -l no-edns -d 'Send a plain query without EDNS(0) (UDP answers are then limited to 512 bytes)'
complete -c pup-probe-dns -l no-recurse -d 'Clear the RD (recursion desired) bit: ask the server about its own data only'
complete -c pup-probe-dns -l expect-empty -d 'The answer set must be empty (NODATA)'
complete -c pup-probe-dns -l authoritative -d 'The reply must have the AA (authoritative answer) bit set'
complete -c pup-probe-dns -l consistent -d 'Ask every --server at once (same deadline); all must give the same answer set (for SOA: the same serial); the result names the server that disagrees'
complete -c pup-probe-dns -s 4 -l ipv4 -d 'Use IPv4 addresses only'
complete -c pup-probe-dns -s 6 -l ipv6 -d 'Use IPv6 addresses only'
complete -c pup-probe-dns -l stdin -d 'Read checks from stdin, one per line: a bare target or a full argument list (shell quoting); the command line\'s flags apply to every line, and a line\'s own flags win'
complete -c pup-probe-dns -s h -l help -d 'Print help'
complete -c pup-probe-dns -s V -l version -d 'Print version'
