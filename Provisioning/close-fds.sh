#!/usr/bin/env bash
# close-fds.sh COMMAND [ARG…]: runs COMMAND (exec: same pid) with every file descriptor
# above 2 that it would inherit closed. For the long-lived processes that the scripts
# start (pcscd, kioskd, settlement-hub, virtual-card): without it they keep whatever the
# caller had open, e.g. a lock taken around the test command (`flock LOCK bash
# Provisioning/test.sh` stayed locked for as long as pcscd ran), a pipe a test runner
# waits on, or its sockets. Redirect 0, 1 and 2 yourself.
set -u
if [ $# -eq 0 ]; then echo "usage: close-fds.sh COMMAND [ARG…]" >&2; exit 2; fi
close_inherited() {
    local path fd flags key value
    for path in /proc/$BASHPID/fd/*; do
        fd=${path##*/}
        case $fd in ''|*[!0-9]*) continue ;; esac
        [ "$fd" -gt 2 ] || continue
        # Descriptors marked close-on-exec (O_CLOEXEC, 02000000 octal) go at exec anyway;
        # among them is the one bash reads this script from, which must stay open until then.
        flags=
        { while read -r key value; do [ "$key" = flags: ] && flags=$value; done <"/proc/$BASHPID/fdinfo/$fd"; } 2>/dev/null
        [ -n "$flags" ] || continue
        if (( (8#$flags & 8#2000000) == 0 )); then eval "exec $fd>&-"; fi
    done
}
close_inherited
exec "$@"
