#!/bin/bash
# Write pgbouncer.ini and the userlist from the environment, then become pgbouncer.
# Passwords live only in this container's tmpfs, never in the image.
set -euo pipefail

: "${PGBOUNCER_DATABASE:?PGBOUNCER_DATABASE must name the database to pool}"
: "${PGBOUNCER_SERVER_HOST:?PGBOUNCER_SERVER_HOST must name the PostgreSQL host}"
: "${PGBOUNCER_USERS:?PGBOUNCER_USERS must list the roles, e.g. tenantkit_app,tenantkit}"

timeout_ms=${PGBOUNCER_STATEMENT_TIMEOUT_MS:-4000}
idle_ms=${PGBOUNCER_IDLE_IN_TRANSACTION_TIMEOUT_MS:-10000}
for setting in PGBOUNCER_STATEMENT_TIMEOUT_MS:"$timeout_ms" PGBOUNCER_IDLE_IN_TRANSACTION_TIMEOUT_MS:"$idle_ms"; do
    case "${setting#*:}" in
        '' | 0 | *[!0-9]*) echo "pgbouncer: invalid setting ${setting%%:*}: not a positive whole number of milliseconds" >&2; exit 2 ;;
    esac
done
# PgBouncer's own client-side bound is in whole seconds: round up.
idle_seconds=$(((idle_ms + 999) / 1000))

conf_dir=$(mktemp -d)
userlist="$conf_dir/userlist.txt"
: >"$userlist"
IFS=',' read -ra roles <<<"$PGBOUNCER_USERS"
for role in "${roles[@]}"; do
    # Each role's password comes from PGBOUNCER_PASSWORD_<ROLE> (upper case).
    var="PGBOUNCER_PASSWORD_${role^^}"
    password="${!var:?$var is not set (password of role $role)}"
    # Plain-text entries let PgBouncer do SCRAM with clients and with the server alike.
    printf '"%s" "%s"\n' "${role//\"/\"\"}" "${password//\"/\"\"}" >>"$userlist"
done

cat >"$conf_dir/pgbouncer.ini" <<INI
[databases]
${PGBOUNCER_DATABASE} = host=${PGBOUNCER_SERVER_HOST} port=${PGBOUNCER_SERVER_PORT:-5432} dbname=${PGBOUNCER_DATABASE} connect_query='SET statement_timeout = ${timeout_ms}; SET idle_in_transaction_session_timeout = ${idle_ms}'

[pgbouncer]
listen_addr = 0.0.0.0
listen_port = 6432
unix_socket_dir =
auth_type = scram-sha-256
auth_file = ${userlist}
; Transaction pooling: a server connection serves one transaction, then the next client.
; The services set the tenant with SET LOCAL, which ends with the transaction, so nothing
; of one tenant's context can ride along into another's (tests/compose prove it).
pool_mode = transaction
default_pool_size = ${PGBOUNCER_POOL_SIZE:-20}
min_pool_size = 0
reserve_pool_size = 0
max_client_conn = ${PGBOUNCER_MAX_CLIENT_CONN:-1000}
max_prepared_statements = 0
server_reset_query =
server_check_query = SELECT 1
; The services pass their statement timeout as a startup "options -c statement_timeout=N".
; PgBouncer cannot forward that (PostgreSQL never reports the value back, so it cannot be
; re-applied per client); it is ignored here and connect_query sets the timeout on every
; server connection instead (PGBOUNCER_STATEMENT_TIMEOUT_MS, the users service's 4 s).
ignore_startup_parameters = extra_float_digits,options
; A client that opens a transaction and goes quiet must not pin a server connection (nor
; the xmin horizon): PostgreSQL ends such a session after idle_in_transaction_session_timeout
; (connect_query above), and PgBouncer drops the client after the same time. A tenant's own
; SET LOCAL statement_timeout (the services send it with the tenant) is transaction-local,
; so it passes through transaction pooling and ends with the transaction.
idle_transaction_timeout = ${idle_seconds}
stats_users = ${PGBOUNCER_STATS_USERS:-}
admin_users =
logfile =
log_connections = 0
log_disconnections = 0
INI

exec pgbouncer "$conf_dir/pgbouncer.ini"
