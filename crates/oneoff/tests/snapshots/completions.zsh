#compdef oneoff

autoload -U is-at-least

_oneoff() {
    typeset -A opt_args
    typeset -a _arguments_options
    local ret=1

    if is-at-least 5.2; then
        _arguments_options=(-s -S -C)
    else
        _arguments_options=(-s -C)
    fi

    local context curcontext="$curcontext" state line
    _arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'-V[Print version]' \
'--version[Print version]' \
":: :_oneoff_commands" \
"*::: :->oneoff" \
&& ret=0
    case $state in
    (oneoff)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oneoff-command-$line[1]:"
        case $line[1] in
            (jobs)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(run)
_arguments "${_arguments_options[@]}" : \
'*-p+[A parameter, as NAME=VALUE (split at the first \`=\`); repeat for several]:NAME=VALUE:_default' \
'*--param=[A parameter, as NAME=VALUE (split at the first \`=\`); repeat for several]:NAME=VALUE:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'-f[Stream the log until the run ends, then exit with the job'\''s exit code]' \
'--follow[Stream the log until the run ends, then exit with the job'\''s exit code]' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
':job -- The job to run, as listed by `oneoff jobs`:_default' \
&& ret=0
;;
(runs)
_arguments "${_arguments_options[@]}" : \
'--job=[Only runs of this job]:JOB:_default' \
'--status=[Only runs in this state (queued, running, succeeded, failed, cancelled, timed_out, lost)]:STATUS:_default' \
'--user=[Only runs this user requested (as the \`by\` column shows it, e.g. \`anonymous\`)]:USER:_default' \
'--limit=[At most this many runs]:N:_default' \
'--before=[Only runs older than this one (for paging)]:ID:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
':run -- The run, as `42` or `#42`:_default' \
&& ret=0
;;
(logs)
_arguments "${_arguments_options[@]}" : \
'--after=[Start after this log sequence number (0 is the beginning)]:SEQ:_default' \
'(--after)--tail=[Start with the last N log entries (0\: only what follows, with --follow), like \`kubectl logs --tail\`. A line stored in pieces (a progress bar) counts one per piece]:N:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'-f[Keep streaming new lines until the run ends]' \
'--follow[Keep streaming new lines until the run ends]' \
'--timestamps[Prefix each line with the time it was captured]' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
':run -- The run, as `42` or `#42`:_default' \
&& ret=0
;;
(cancel)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
':run -- The run, as `42` or `#42`:_default' \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--strict[Fail (exit 1) on warnings about this host too (a program or workdir that is missing here)\: for a check run on the host that runs the jobs, as the user that runs them]' \
'--no-env[Check the file alone\: ignore the ONEOFF_ variables that \`serve\` would read (as on a laptop or in CI, where the service'\''s environment is not)]' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
':file -- The config file to validate:_files' \
&& ret=0
;;
(serve)
_arguments "${_arguments_options[@]}" : \
'--config=[The config file with the server settings and the job catalog]:FILE:_files' \
'--listen=[The address to listen on, as IP\:PORT; wins over the config file]:IP:PORT:_default' \
'--data-dir=[Where runs and logs are kept; wins over the config file]:DIR:_files' \
'--database=[The database\: postgres\://USER\[\:PASSWORD\]@HOST/DATABASE (shared by several replicas) or sqlite\:PATH; wins over the config file. The password is never shown nor logged]:URL:_default' \
'--replica=[This replica'\''s name (default\: the hostname); wins over the config file]:NAME:_default' \
'--log-format=[The server log'\''s form on stderr\: \`text\`, or \`json\` (one object per line, for a log collector); wins over the config file]:FORMAT:_default' \
'--base-path=[The path prefix to serve under, e.g. /oneoff (behind a proxy that passes the path on unchanged); wins over the config file]:PATH:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(token)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
":: :_oneoff__subcmd__token_commands" \
"*::: :->token" \
&& ret=0

    case $state in
    (token)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oneoff-token-command-$line[1]:"
        case $line[1] in
            (create)
_arguments "${_arguments_options[@]}" : \
'--name=[What the token is for, e.g. \`ci\` or \`laptop\`]:NAME:_default' \
'--expires=[Lifetime such as 12h, 30d or 1y (default\: no expiry)]:DURATION:_default' \
'--user=[Administrators\: whom the token identifies]:USER:_default' \
'*--group=[Administrators\: a group of the token'\''s user; repeatable]:GROUP:_default' \
'--config=[Create the token directly in the server'\''s database (on the server'\''s host, no server needed)\: how the first administrator token is made]:FILE:_files' \
'--data-dir=[With --config\: the server'\''s data directory, if it is not the config file'\''s (as for \`oneoff serve\`)]:DIR:_files' \
'--database=[With --config\: the server'\''s database, if it is not the config file'\''s (as for \`oneoff serve\`)]:URL:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
':id:_default' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_oneoff__subcmd__token__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oneoff-token-help-command-$line[1]:"
        case $line[1] in
            (create)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
;;
(audit)
_arguments "${_arguments_options[@]}" : \
'--head=[With \`verify\`\: a checkpoint'\''s head hash (from the server log'\''s \`audit checkpoint\` lines, or an earlier \`verify\`); the chain must still hold it]:HEAD:_default' \
'--count=[With \`--head\`\: the record count the checkpoint was taken at]:COUNT:_default' \
'--mac=[With \`--head\` and \`--count\`\: the checkpoint'\''s MAC, checked against the server'\''s audit key]:MAC:_default' \
'--actor=[]:ACTOR:_default' \
'--action=[e.g. run.start, run.cancel, token.create, denied.run, denied.audit.read (docs/API.md)]:ACTION:_default' \
'--job=[]:JOB:_default' \
'--limit=[]:LIMIT:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
'::verify -- `verify` checks the hash chain instead of listing records:(verify)' \
&& ret=0
;;
(whoami)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(replicas)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(doctor)
_arguments "${_arguments_options[@]}" : \
'*-H+[A request header sent with every probe, as '\''Name\: value'\'' (a session cookie, a token); repeatable. Without an Authorization header, ONEOFF_TOKEN (or the token file) is sent as a Bearer token]:NAME: VALUE:_default' \
'*--header=[A request header sent with every probe, as '\''Name\: value'\'' (a session cookie, a token); repeatable. Without an Authorization header, ONEOFF_TOKEN (or the token file) is sent as a Bearer token]:NAME: VALUE:_default' \
'--origin=[The Origin a browser would send (default\: each URL'\''s own origin)]:ORIGIN:_default' \
'--run=[Probe this run'\''s WebSocket instead of /api/v1/probe/ws]:RUN:_default' \
'--idle-max=[The longest quiet period \`--idle\` tries, in seconds]:SECONDS:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--idle[Also measure the longest quiet period each transport survives (takes minutes)]' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
'*::urls -- The same oneoff deployment as reached at each hop, outermost first (e.g. the public name, the load balancer, the ingress, the pod):_default' \
&& ret=0
;;
(migrate-store)
_arguments "${_arguments_options[@]}" : \
'--from=[The store to copy\: sqlite\:PATH or postgres\://USER\[\:PASSWORD\]@HOST\[\:PORT\]/DATABASE]:URL:_default' \
'--to=[The new, empty store to copy into (same forms); its schema is created]:URL:_default' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--allow-live[Copy even though the source has queued or running runs (a server may still be using it)\: they are copied as they are, and the new store'\''s first start marks the running ones lost]' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help (see more with '\''--help'\'')]' \
'--help[Print help (see more with '\''--help'\'')]' \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
':shell -- The shell to complete for:(bash elvish fish powershell zsh)' \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
'--dir=[Write oneoff.1 and a page for each subcommand (oneoff-run.1, ...) into this directory instead of printing oneoff.1]:DIR:_files' \
'--server=[The oneoff server to talk to]:URL:_default' \
'--token=[The API token to send (else ONEOFF_TOKEN, else ~/.config/oneoff/token). A flag is visible to every local user in \`ps\`\: prefer the variable or the file]:TOKEN:_default' \
'-o+[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'--output=[How the commands that print data print it\: \`text\` (tables and sentences) or \`json\` (the API'\''s JSON; for logs, one entry per line)]:FORMAT:(text json)' \
'(-o --output)--json[The same as \`--output json\`]' \
'-h[Print help]' \
'--help[Print help]' \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
":: :_oneoff__subcmd__help_commands" \
"*::: :->help" \
&& ret=0

    case $state in
    (help)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oneoff-help-command-$line[1]:"
        case $line[1] in
            (jobs)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(run)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(runs)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(status)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(logs)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(cancel)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(check-config)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(serve)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(token)
_arguments "${_arguments_options[@]}" : \
":: :_oneoff__subcmd__help__subcmd__token_commands" \
"*::: :->token" \
&& ret=0

    case $state in
    (token)
        words=($line[1] "${words[@]}")
        (( CURRENT += 1 ))
        curcontext="${curcontext%:*:*}:oneoff-help-token-command-$line[1]:"
        case $line[1] in
            (create)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(list)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(revoke)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
(audit)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(whoami)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(replicas)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(doctor)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(migrate-store)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(completions)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(man)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
(help)
_arguments "${_arguments_options[@]}" : \
&& ret=0
;;
        esac
    ;;
esac
;;
        esac
    ;;
esac
}

(( $+functions[_oneoff_commands] )) ||
_oneoff_commands() {
    local commands; commands=(
'jobs:List the jobs the server can run' \
'run:Start a run of a job, and optionally follow its log until it ends' \
'runs:List runs, newest first' \
'status:Show everything known about one run' \
'logs:Print a run'\''s log' \
'cancel:Ask the server to stop a run' \
'check-config:Validate a config file without starting a server' \
'serve:Run the oneoff server' \
'token:Create, list and revoke API tokens' \
'audit:Read and verify the audit trail (administrators)' \
'whoami:Show who the server takes you for' \
'replicas:List the live replicas sharing the server'\''s store\: start, last heartbeat, running runs, draining' \
'doctor:Probe a deployment through each hop (outermost first) and name the one that breaks live logs' \
'migrate-store:Copy a whole store (runs, logs, tokens, the audit trail) into a new, empty one and verify the copy' \
'completions:Print a shell completion script\: \`oneoff completions bash > /etc/bash_completion.d/oneoff\`' \
'man:Print the man page (roff)\: \`oneoff man | man -l -\`; with --dir, write one page per command' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oneoff commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__audit_commands] )) ||
_oneoff__subcmd__audit_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff audit commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__cancel_commands] )) ||
_oneoff__subcmd__cancel_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff cancel commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__check-config_commands] )) ||
_oneoff__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff check-config commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__completions_commands] )) ||
_oneoff__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff completions commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__doctor_commands] )) ||
_oneoff__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff doctor commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help_commands] )) ||
_oneoff__subcmd__help_commands() {
    local commands; commands=(
'jobs:List the jobs the server can run' \
'run:Start a run of a job, and optionally follow its log until it ends' \
'runs:List runs, newest first' \
'status:Show everything known about one run' \
'logs:Print a run'\''s log' \
'cancel:Ask the server to stop a run' \
'check-config:Validate a config file without starting a server' \
'serve:Run the oneoff server' \
'token:Create, list and revoke API tokens' \
'audit:Read and verify the audit trail (administrators)' \
'whoami:Show who the server takes you for' \
'replicas:List the live replicas sharing the server'\''s store\: start, last heartbeat, running runs, draining' \
'doctor:Probe a deployment through each hop (outermost first) and name the one that breaks live logs' \
'migrate-store:Copy a whole store (runs, logs, tokens, the audit trail) into a new, empty one and verify the copy' \
'completions:Print a shell completion script\: \`oneoff completions bash > /etc/bash_completion.d/oneoff\`' \
'man:Print the man page (roff)\: \`oneoff man | man -l -\`; with --dir, write one page per command' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oneoff help commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__audit_commands] )) ||
_oneoff__subcmd__help__subcmd__audit_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help audit commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__cancel_commands] )) ||
_oneoff__subcmd__help__subcmd__cancel_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help cancel commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__check-config_commands] )) ||
_oneoff__subcmd__help__subcmd__check-config_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help check-config commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__completions_commands] )) ||
_oneoff__subcmd__help__subcmd__completions_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help completions commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__doctor_commands] )) ||
_oneoff__subcmd__help__subcmd__doctor_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help doctor commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__help_commands] )) ||
_oneoff__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help help commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__jobs_commands] )) ||
_oneoff__subcmd__help__subcmd__jobs_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help jobs commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__logs_commands] )) ||
_oneoff__subcmd__help__subcmd__logs_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help logs commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__man_commands] )) ||
_oneoff__subcmd__help__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help man commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__migrate-store_commands] )) ||
_oneoff__subcmd__help__subcmd__migrate-store_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help migrate-store commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__replicas_commands] )) ||
_oneoff__subcmd__help__subcmd__replicas_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help replicas commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__run_commands] )) ||
_oneoff__subcmd__help__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help run commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__runs_commands] )) ||
_oneoff__subcmd__help__subcmd__runs_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help runs commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__serve_commands] )) ||
_oneoff__subcmd__help__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help serve commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__status_commands] )) ||
_oneoff__subcmd__help__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help status commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__token_commands] )) ||
_oneoff__subcmd__help__subcmd__token_commands() {
    local commands; commands=(
'create:Create a token; it is printed once and stored only as a hash' \
'list:List tokens (yours, or all for an administrator)' \
'revoke:Revoke a token by id' \
    )
    _describe -t commands 'oneoff help token commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__token__subcmd__create_commands] )) ||
_oneoff__subcmd__help__subcmd__token__subcmd__create_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help token create commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__token__subcmd__list_commands] )) ||
_oneoff__subcmd__help__subcmd__token__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help token list commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__token__subcmd__revoke_commands] )) ||
_oneoff__subcmd__help__subcmd__token__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help token revoke commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__help__subcmd__whoami_commands] )) ||
_oneoff__subcmd__help__subcmd__whoami_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff help whoami commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__jobs_commands] )) ||
_oneoff__subcmd__jobs_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff jobs commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__logs_commands] )) ||
_oneoff__subcmd__logs_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff logs commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__man_commands] )) ||
_oneoff__subcmd__man_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff man commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__migrate-store_commands] )) ||
_oneoff__subcmd__migrate-store_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff migrate-store commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__replicas_commands] )) ||
_oneoff__subcmd__replicas_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff replicas commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__run_commands] )) ||
_oneoff__subcmd__run_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff run commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__runs_commands] )) ||
_oneoff__subcmd__runs_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff runs commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__serve_commands] )) ||
_oneoff__subcmd__serve_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff serve commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__status_commands] )) ||
_oneoff__subcmd__status_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff status commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token_commands] )) ||
_oneoff__subcmd__token_commands() {
    local commands; commands=(
'create:Create a token; it is printed once and stored only as a hash' \
'list:List tokens (yours, or all for an administrator)' \
'revoke:Revoke a token by id' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oneoff token commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__create_commands] )) ||
_oneoff__subcmd__token__subcmd__create_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff token create commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__help_commands] )) ||
_oneoff__subcmd__token__subcmd__help_commands() {
    local commands; commands=(
'create:Create a token; it is printed once and stored only as a hash' \
'list:List tokens (yours, or all for an administrator)' \
'revoke:Revoke a token by id' \
'help:Print this message or the help of the given subcommand(s)' \
    )
    _describe -t commands 'oneoff token help commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__help__subcmd__create_commands] )) ||
_oneoff__subcmd__token__subcmd__help__subcmd__create_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff token help create commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__help__subcmd__help_commands] )) ||
_oneoff__subcmd__token__subcmd__help__subcmd__help_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff token help help commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__help__subcmd__list_commands] )) ||
_oneoff__subcmd__token__subcmd__help__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff token help list commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__help__subcmd__revoke_commands] )) ||
_oneoff__subcmd__token__subcmd__help__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff token help revoke commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__list_commands] )) ||
_oneoff__subcmd__token__subcmd__list_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff token list commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__token__subcmd__revoke_commands] )) ||
_oneoff__subcmd__token__subcmd__revoke_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff token revoke commands' commands "$@"
}
(( $+functions[_oneoff__subcmd__whoami_commands] )) ||
_oneoff__subcmd__whoami_commands() {
    local commands; commands=()
    _describe -t commands 'oneoff whoami commands' commands "$@"
}

if [ "$funcstack[1]" = "_oneoff" ]; then
    _oneoff "$@"
else
    compdef _oneoff oneoff
fi
