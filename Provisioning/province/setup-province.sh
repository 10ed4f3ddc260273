#!/usr/bin/env bash
# A province's hub set-up (issue 12), as root, on Debian:
#   setup-province.sh database            on the PostgreSQL machine: roles and database
#   setup-province.sh hub                 on each hub machine, after apt-get install ./benefit-hub_….deb: folders, province.env
#   setup-province.sh schema              once, on a machine with settlement-hub: the tables,
#                                         created by their owner, and the hubs' privileges
#   setup-province.sh keys AUTH CA        on each publisher machine: the key files
# Three PostgreSQL roles (issue 21: a hub can delay but never forge). benefit_owner owns the
# database and every table; only root reaches it (peer map) and only migrations use it.
# benefit_hub is what the hub processes log in as (system user settlement-hub): it reads the
# roster, devices and cards, inserts records, answers, certificate requests and roster changes
# into an inbox, and nothing else: never an edit or delete of a record, never the roster.
# benefit_publisher is what the publisher logs in as (system user hub-publisher, a group of
# its own): it reads everything, writes the roster, certificates, shelf index and its own
# tables, never a record. Neither owns a table, so neither can alter one or disable the
# refusal triggers. The publisher also keeps every roster change it applied, as signed, in
# /var/lib/hub-publisher/archive (0700, its own): before it signs, it checks the database
# against them. Peer authentication over the unix socket, no password anywhere. Across
# machines, use TCP URLs with passwords (province.env, 0640) and TLS instead; OWNER_URL then
# names the owner's URL for `schema`.
# Run `schema` again after an upgrade that adds tables (the hubs never run DDL themselves).
set -euo pipefail
ROLE=${ROLE:-benefit_hub}
PUBLISHER_ROLE=${PUBLISHER_ROLE:-benefit_publisher}
OWNER=${OWNER:-benefit_owner}
DB=${DB:-benefit_hub}
case "${1:-}" in
database)
    command -v psql >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q <<SQL
DO \$\$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$OWNER') THEN CREATE ROLE $OWNER LOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$ROLE') THEN CREATE ROLE $ROLE LOGIN; END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PUBLISHER_ROLE') THEN CREATE ROLE $PUBLISHER_ROLE LOGIN; END IF;
END \$\$;
SQL
    runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'" | grep -q 1 \
        || runuser -u postgres -- createdb -O "$OWNER" -E UTF8 --locale=C.UTF-8 -T template0 "$DB"
    # Nobody but the owner creates anything in the database's schema.
    runuser -u postgres -- psql -v ON_ERROR_STOP=1 -q -d "$DB" -c "REVOKE CREATE ON SCHEMA public FROM PUBLIC; ALTER SCHEMA public OWNER TO $OWNER"
    conf=$(runuser -u postgres -- psql -tAc "SHOW config_file" | xargs dirname)
    grep -q "^benefit " "$conf/pg_ident.conf" || cat >>"$conf/pg_ident.conf" <<IDENT
benefit settlement-hub $ROLE
benefit hub-publisher  $PUBLISHER_ROLE
benefit root           $OWNER
IDENT
    grep -q "map=benefit" "$conf/pg_hba.conf" || sed -i "1i local $DB $ROLE,$PUBLISHER_ROLE,$OWNER peer map=benefit" "$conf/pg_hba.conf"
    runuser -u postgres -- psql -qc "SELECT pg_reload_conf()" >/dev/null
    echo "database $DB (owner $OWNER), the hubs' role $ROLE and the publisher's role $PUBLISHER_ROLE ready (peer map 'benefit'); next: setup-province.sh schema"
    ;;
schema)
    url=${OWNER_URL:-postgres://$OWNER@/$DB?host=/var/run/postgresql}
    settlement-hub migrate --postgres "$url" --shelf /srv/settlement-hub/shelf --grant-to "$ROLE" --grant-publisher "$PUBLISHER_ROLE"
    ;;
hub)
    # The users, the programs and the units come from the benefit-hub package (sysusers.d,
    # /usr/bin, /usr/lib/systemd/system): install it first (Provisioning/package.sh makes it).
    dpkg-query -W -f='${Status}' benefit-hub 2>/dev/null | grep -q "install ok installed" \
        || { echo "install the benefit-hub package first: apt-get install ./benefit-hub_VERSION_amd64.deb" >&2; exit 69; }
    id settlement-hub >/dev/null 2>&1 && id hub-publisher >/dev/null 2>&1 || { echo "the package's users are missing: systemd-sysusers benefit-hub.conf" >&2; exit 69; }
    install -d -o root -g settlement-hub -m 0750 /etc/settlement-hub /etc/settlement-hub/tls
    install -d -o hub-publisher -g hub-publisher -m 0700 /etc/hub-publisher
    # The publisher's archive of verified roster changes: its user's alone (issue 21).
    install -d -o hub-publisher -g hub-publisher -m 0700 /var/lib/hub-publisher /var/lib/hub-publisher/archive
    # The shared shelf: the publisher writes, the hub processes read.
    install -d -o hub-publisher -g settlement-hub -m 2750 /srv/settlement-hub/shelf
    [ -f /etc/settlement-hub/province.env ] || install -o root -g settlement-hub -m 0640 /etc/benefit-hub/province.env.example /etc/settlement-hub/province.env
    systemctl daemon-reload 2>/dev/null || true
    echo "edit /etc/settlement-hub/province.env, put the TLS chain and key in /etc/settlement-hub/tls/, then:"
    echo "  systemctl enable --now settlement-hub@8471 settlement-hub@8472 hub-publisher-province"
    ;;
keys)
    [ $# -eq 3 ] || { echo "usage: $0 keys AUTHORITY_KEY_FILE DEVICE_CA_KEY_FILE" >&2; exit 2; }
    # 0600, owned by the publisher's user: the only process that signs. The hub never reads them.
    install -o hub-publisher -g hub-publisher -m 0600 "$2" /etc/hub-publisher/authority.key
    install -o hub-publisher -g hub-publisher -m 0600 "$3" /etc/hub-publisher/device-ca.key
    echo "keys installed in /etc/hub-publisher (0600, hub-publisher)"
    ;;
*)
    sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
