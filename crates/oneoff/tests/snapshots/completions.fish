# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_oneoff_global_optspecs
    string join \n server= token= o/output= json h/help V/version
end

function __fish_oneoff_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_oneoff_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_oneoff_using_subcommand
    set -l cmd (__fish_oneoff_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c oneoff -n "__fish_oneoff_needs_command" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_needs_command" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_needs_command" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_needs_command" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_needs_command" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c oneoff -n "__fish_oneoff_needs_command" -s V -l version -d 'Print version'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "jobs" -d 'List the jobs the server can run'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "run" -d 'Start a run of a job, and optionally follow its log until it ends'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "runs" -d 'List runs, newest first'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "status" -d 'Show everything known about one run'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "logs" -d 'Print a run\'s log'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "cancel" -d 'Ask the server to stop a run'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "check-config" -d 'Validate a config file without starting a server'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "serve" -d 'Run the oneoff server'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "token" -d 'Create, list and revoke API tokens'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "audit" -d 'Read and verify the audit trail (administrators)'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "whoami" -d 'Show who the server takes you for'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "replicas" -d 'List the live replicas sharing the server\'s store: start, last heartbeat, running runs, draining'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "doctor" -d 'Probe a deployment through each hop (outermost first) and name the one that breaks live logs'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "migrate-store" -d 'Copy a whole store (runs, logs, tokens, the audit trail) into a new, empty one and verify the copy'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "completions" -d 'Print a shell completion script: `oneoff completions bash > /etc/bash_completion.d/oneoff`'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "man" -d 'Print the man page (roff): `oneoff man | man -l -`; with --dir, write one page per command'
complete -c oneoff -n "__fish_oneoff_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oneoff -n "__fish_oneoff_using_subcommand jobs" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand jobs" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand jobs" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand jobs" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand jobs" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand run" -s p -l param -d 'A parameter, as NAME=VALUE (split at the first `=`); repeat for several' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand run" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand run" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand run" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand run" -s f -l follow -d 'Stream the log until the run ends, then exit with the job\'s exit code'
complete -c oneoff -n "__fish_oneoff_using_subcommand run" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand run" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l job -d 'Only runs of this job' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l status -d 'Only runs in this state (queued, running, succeeded, failed, cancelled, timed_out, lost)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l user -d 'Only runs this user requested (as the `by` column shows it, e.g. `anonymous`)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l limit -d 'At most this many runs' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l before -d 'Only runs older than this one (for paging)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand runs" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand status" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand status" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand status" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand status" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand status" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -l after -d 'Start after this log sequence number (0 is the beginning)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -l tail -d 'Start with the last N log entries (0: only what follows, with --follow), like `kubectl logs --tail`. A line stored in pieces (a progress bar) counts one per piece' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -s f -l follow -d 'Keep streaming new lines until the run ends'
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -l timestamps -d 'Prefix each line with the time it was captured'
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand logs" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand cancel" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand cancel" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand cancel" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand cancel" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand cancel" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand check-config" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand check-config" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand check-config" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand check-config" -l strict -d 'Fail (exit 1) on warnings about this host too (a program or workdir that is missing here): for a check run on the host that runs the jobs, as the user that runs them'
complete -c oneoff -n "__fish_oneoff_using_subcommand check-config" -l no-env -d 'Check the file alone: ignore the ONEOFF_ variables that `serve` would read (as on a laptop or in CI, where the service\'s environment is not)'
complete -c oneoff -n "__fish_oneoff_using_subcommand check-config" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand check-config" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l config -d 'The config file with the server settings and the job catalog' -r -F
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l listen -d 'The address to listen on, as IP:PORT; wins over the config file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l data-dir -d 'Where runs and logs are kept; wins over the config file' -r -F
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l database -d 'The database: postgres://USER[:PASSWORD]@HOST/DATABASE (shared by several replicas) or sqlite:PATH; wins over the config file. The password is never shown nor logged' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l replica -d 'This replica\'s name (default: the hostname); wins over the config file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l log-format -d 'The server log\'s form on stderr: `text`, or `json` (one object per line, for a log collector); wins over the config file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l base-path -d 'The path prefix to serve under, e.g. /oneoff (behind a proxy that passes the path on unchanged); wins over the config file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand serve" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -f -a "create" -d 'Create a token; it is printed once and stored only as a hash'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -f -a "list" -d 'List tokens (yours, or all for an administrator)'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -f -a "revoke" -d 'Revoke a token by id'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and not __fish_seen_subcommand_from create list revoke help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l name -d 'What the token is for, e.g. `ci` or `laptop`' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l expires -d 'Lifetime such as 12h, 30d or 1y (default: no expiry)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l user -d 'Administrators: whom the token identifies' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l group -d 'Administrators: a group of the token\'s user; repeatable' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l config -d 'Create the token directly in the server\'s database (on the server\'s host, no server needed): how the first administrator token is made' -r -F
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l data-dir -d 'With --config: the server\'s data directory, if it is not the config file\'s (as for `oneoff serve`)' -r -F
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l database -d 'With --config: the server\'s database, if it is not the config file\'s (as for `oneoff serve`)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from create" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from list" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from list" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from list" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from list" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from list" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from revoke" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from revoke" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from revoke" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from revoke" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from revoke" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "create" -d 'Create a token; it is printed once and stored only as a hash'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "list" -d 'List tokens (yours, or all for an administrator)'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "revoke" -d 'Revoke a token by id'
complete -c oneoff -n "__fish_oneoff_using_subcommand token; and __fish_seen_subcommand_from help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l head -d 'With `verify`: a checkpoint\'s head hash (from the server log\'s `audit checkpoint` lines, or an earlier `verify`); the chain must still hold it' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l count -d 'With `--head`: the record count the checkpoint was taken at' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l mac -d 'With `--head` and `--count`: the checkpoint\'s MAC, checked against the server\'s audit key' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l actor -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l action -d 'e.g. run.start, run.cancel, token.create, denied.run, denied.audit.read (docs/API.md)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l job -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l limit -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand audit" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand whoami" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand whoami" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand whoami" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand whoami" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand whoami" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand replicas" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand replicas" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand replicas" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand replicas" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand replicas" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -s H -l header -d 'A request header sent with every probe, as \'Name: value\' (a session cookie, a token); repeatable. Without an Authorization header, ONEOFF_TOKEN (or the token file) is sent as a Bearer token' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -l origin -d 'The Origin a browser would send (default: each URL\'s own origin)' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -l run -d 'Probe this run\'s WebSocket instead of /api/v1/probe/ws' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -l idle-max -d 'The longest quiet period `--idle` tries, in seconds' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -l idle -d 'Also measure the longest quiet period each transport survives (takes minutes)'
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -l from -d 'The store to copy: sqlite:PATH or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -l to -d 'The new, empty store to copy into (same forms); its schema is created' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -l allow-live -d 'Copy even though the source has queued or running runs (a server may still be using it): they are copied as they are, and the new store\'s first start marks the running ones lost'
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand migrate-store" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c oneoff -n "__fish_oneoff_using_subcommand completions" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand completions" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand completions" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand completions" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand completions" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand man" -l dir -d 'Write oneoff.1 and a page for each subcommand (oneoff-run.1, ...) into this directory instead of printing oneoff.1' -r -F
complete -c oneoff -n "__fish_oneoff_using_subcommand man" -l server -d 'The oneoff server to talk to' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand man" -l token -d 'The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in `ps`: prefer the variable or the file' -r
complete -c oneoff -n "__fish_oneoff_using_subcommand man" -s o -l output -d 'How the commands that print data print it: `text` (tables and sentences) or `json` (the API\'s JSON; for logs, one entry per line)' -r -f -a "text\t''
json\t''"
complete -c oneoff -n "__fish_oneoff_using_subcommand man" -l json -d 'The same as `--output json`'
complete -c oneoff -n "__fish_oneoff_using_subcommand man" -s h -l help -d 'Print help'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "jobs" -d 'List the jobs the server can run'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "run" -d 'Start a run of a job, and optionally follow its log until it ends'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "runs" -d 'List runs, newest first'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "status" -d 'Show everything known about one run'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "logs" -d 'Print a run\'s log'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "cancel" -d 'Ask the server to stop a run'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "check-config" -d 'Validate a config file without starting a server'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "serve" -d 'Run the oneoff server'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "token" -d 'Create, list and revoke API tokens'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "audit" -d 'Read and verify the audit trail (administrators)'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "whoami" -d 'Show who the server takes you for'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "replicas" -d 'List the live replicas sharing the server\'s store: start, last heartbeat, running runs, draining'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "doctor" -d 'Probe a deployment through each hop (outermost first) and name the one that breaks live logs'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "migrate-store" -d 'Copy a whole store (runs, logs, tokens, the audit trail) into a new, empty one and verify the copy'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "completions" -d 'Print a shell completion script: `oneoff completions bash > /etc/bash_completion.d/oneoff`'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "man" -d 'Print the man page (roff): `oneoff man | man -l -`; with --dir, write one page per command'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and not __fish_seen_subcommand_from jobs run runs status logs cancel check-config serve token audit whoami replicas doctor migrate-store completions man help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "create" -d 'Create a token; it is printed once and stored only as a hash'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "list" -d 'List tokens (yours, or all for an administrator)'
complete -c oneoff -n "__fish_oneoff_using_subcommand help; and __fish_seen_subcommand_from token" -f -a "revoke" -d 'Revoke a token by id'
