complete -c pup-probe-redis -l password-file -d 'Read the password from the first line of FILE (used when the URL has none; before REDISCLI_AUTH)' -r
complete -c pup-probe-redis -l ca-file -d 'Trust only the CA certificates in FILE (PEM) for rediss://, instead of the system store' -r -F
complete -c pup-probe-redis -l role -d 'Assert the server\'s role; another role is down (role_mismatch)' -r -f -a "master\t''
replica\t''"
complete -c pup-probe-redis -l max-lag -d 'Degraded (replication_lag) when replication lags more than DUR: on a replica, the time since its master last spoke; on a master, the largest lag any connected replica reports' -r
complete -c pup-probe-redis -l max-memory-pct -d 'Degraded (memory_high) when used_memory is above N percent of maxmemory (of total_system_memory when maxmemory is 0)' -r
complete -c pup-probe-redis -l name -d 'Name of the check in events (default: the target)' -r
complete -c pup-probe-redis -l tag -d 'Add a tag to every event (repeatable)' -r
complete -c pup-probe-redis -l timeout -d 'Deadline for the whole check, every phase included' -r
complete -c pup-probe-redis -l degraded-over -d 'Report `degraded` when an otherwise good check takes longer than this' -r
complete -c pup-probe-redis -s j -l concurrency -d 'Checks in flight at once' -r
complete -c pup-probe-redis -l format -d 'Output: one JSON event per line, or one short human line per result' -r -f -a "json\t''
text\t''"
complete -c pup-probe-redis -l insecure -d 'rediss:// without verifying the certificate or its name'
complete -c pup-probe-redis -l write-check -d 'Also write: SET a unique canary key (pup:canary:*, 10 s TTL), GET it back, DEL it. Catches read-only and out-of-memory servers'
complete -c pup-probe-redis -s 4 -l ipv4 -d 'Use IPv4 addresses only'
complete -c pup-probe-redis -s 6 -l ipv6 -d 'Use IPv6 addresses only'
complete -c pup-probe-redis -l stdin -d 'Read checks from stdin, one per line: a bare target or a full argument list (shell quoting); the command line\'s flags apply to every line, and a line\'s own flags win'
complete -c pup-probe-redis -s h -l help -d 'Print help'
complete -c pup-probe-redis -s V -l version -d 'Print version'
