complete -c pup-route -l fail-after -d 'Failing results in a row before down (or degraded): one lost packet pages no one' -r
complete -c pup-route -l recover-after -d 'Good results in a row before up' -r
complete -c pup-route -l remind -d 'Emit a reminder every DUR while a check stays down (0s: never)' -r
complete -c pup-route -l stale-after -d 'A check is stale after N of its intervals (interval_ms) without a result; pup-sched after N heartbeat intervals' -r
complete -c pup-route -l heartbeat -d 'Heartbeat interval assumed when a heartbeat event carries no interval_ms' -r
complete -c pup-route -l flap-high -d 'Flapping starts when the weighted share of status changes over the last 21 results reaches PCT (above 100: never)' -r
complete -c pup-route -l flap-low -d 'Flapping stops when that share falls under PCT' -r
complete -c pup-route -l state -d 'Keep per-check state in FILE across restarts (rewritten atomically at most once a second), with a synced write-ahead journal in FILE.journal of check changes and hook runs: a restart repeats no down, and hook runs cut off by a crash are redone' -r -F
complete -c pup-route -l hook-timeout -d 'Kill a hook\'s whole process group after DUR (SIGTERM, SIGKILL 1s later)' -r
complete -c pup-route -s j -l jobs -d 'Hooks run at once (hooks of one check always run one at a time, in event order)' -r
complete -c pup-route -l hook-user -d 'Run hooks as this user and its group (pup-route must be root)' -r
complete -c pup-route -l replay -d 'Take the time from the events\' ts instead of the clock: the same input gives the same output'
complete -c pup-route -l dry-run -d 'Do not run hooks: print a hook event with dry_run:true for each one that would run'
complete -c pup-route -s q -l derived-only -d 'Print only pup-route\'s own events, not the input passed through'
complete -c pup-route -s h -l help -d 'Print help'
complete -c pup-route -s V -l version -d 'Print version'
