complete -c pup-probe-http -s X -l method -d 'Request method [default: GET, or POST with --data]' -r
complete -c pup-probe-http -s H -l header -d 'Add a request header (repeatable); replaces a default header of the same name (Host, User-Agent, Accept)' -r
complete -c pup-probe-http -l data -d 'Request body, or @FILE to send a file\'s contents (at most 16 MiB)' -r
complete -c pup-probe-http -l user -d 'Basic auth user; the password comes from the PUP_PASSWORD environment variable or --password-file, never the command line' -r
complete -c pup-probe-http -l password-file -d 'Read the --user password from the first line of FILE' -r
complete -c pup-probe-http -l follow -d 'Follow up to N redirects; with 0 a 3xx is judged as it is, and a redirect still left after N hops is `too_many_redirects`' -r
complete -c pup-probe-http -l resolve -d 'Connect to ADDR (or a comma list) for HOST:PORT instead of resolving it, as curl does; Host header and TLS name stay HOST (repeatable)' -r
complete -c pup-probe-http -l expect-status -d 'Status codes that count as up: codes, ranges and classes, like 200,204,300-399 or 2xx' -r
complete -c pup-probe-http -l contains -d 'The body must contain TEXT (repeatable)' -r
complete -c pup-probe-http -l not-contains -d 'The body must not contain TEXT (repeatable)' -r
complete -c pup-probe-http -l regex -d 'The body must match the regular expression RE (repeatable)' -r
complete -c pup-probe-http -l json-pointer -d 'The JSON body\'s field at POINTER (RFC 6901) must equal VALUE, read as JSON when it parses (true, 3, "x", null) and as a string otherwise (repeatable)' -r
complete -c pup-probe-http -l header-contains -d 'A response header K must be present with a value containing V (name case-insensitive; repeatable)' -r
complete -c pup-probe-http -l max-body -d 'Read at most SIZE bytes of body; an assertion that needs more is `body_too_large`' -r
complete -c pup-probe-http -l ca-file -d 'Trust only the CA certificates in this PEM file, instead of the system store (as curl\'s --cacert)' -r
complete -c pup-probe-http -l cert-warn -d 'A certificate expiring within DUR makes the check degraded' -r
complete -c pup-probe-http -l cert-crit -d 'A certificate expiring within DUR makes the check down' -r
complete -c pup-probe-http -l name -d 'Name of the check in events (default: the target)' -r
complete -c pup-probe-http -l tag -d 'Add a tag to every event (repeatable)' -r
complete -c pup-probe-http -l timeout -d 'Deadline for the whole check, every phase included' -r
complete -c pup-probe-http -l degraded-over -d 'Report `degraded` when an otherwise good check takes longer than this' -r
complete -c pup-probe-http -s j -l concurrency -d 'Checks in flight at once' -r
complete -c pup-probe-http -l format -d 'Output: one JSON event per line, or one short human line per result' -r -f -a "json\t''
text\t''"
complete -c pup-probe-http -l insecure -d 'Do not verify the certificate chain or name (the certificate is still read and its expiry still judged)'
complete -c pup-probe-http -s 4 -l ipv4 -d 'Use IPv4 addresses only'
complete -c pup-probe-http -s 6 -l ipv6 -d 'Use IPv6 addresses only'
complete -c pup-probe-http -l stdin -d 'Read checks from stdin, one per line: a bare target or a full argument list (shell quoting); the command line\'s flags apply to every line, and a line\'s own flags win'
complete -c pup-probe-http -s h -l help -d 'Print help'
complete -c pup-probe-http -s V -l version -d 'Print version'
