complete -c pup-sched -l heartbeat -d 'Print a heartbeat event this often (and once at start)' -r
complete -c pup-sched -l grace -d 'On SIGTERM/SIGINT, wait this long for running checks before killing them' -r
complete -c pup-sched -l probe-jobs -d 'Checks in flight at once in each long-lived probe (its -j)' -r
complete -c pup-sched -l max-output -d 'Keep at most this much of what one command prints; the rest is read and dropped' -r
complete -c pup-sched -l check -d 'Validate the config, list its checks with their offsets, and exit 0 (valid) or 2'
complete -c pup-sched -l no-stream -d 'Run pup-probe-* commands one process per check too, like any other command'
complete -c pup-sched -s h -l help -d 'Print help'
complete -c pup-sched -s V -l version -d 'Print version'
