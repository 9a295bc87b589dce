#!/usr/bin/env bash
# Remove the bellad service installed by scripts/install.sh.
#
#   sudo scripts/uninstall.sh [--purge]
#
# Keeps the configuration (/etc/bellad), bellad's state (/var/lib/bellad) and
# the user bellad unless --purge is given. See docs/systemd.md.
set -euo pipefail

readonly PREFIX=/opt/bellad
readonly UNIT_DIR=/etc/systemd/system
readonly UNIT=bellad.service
readonly SERVICE_USER=bellad

usage() {
    cat <<'EOF'
Usage: scripts/uninstall.sh [--purge]

Stop and disable bellad.service, remove the unit (and its Jetson drop-in),
the virtual environment /opt/bellad and the model cache /var/cache/bellad.

Options:
  --purge      also remove /etc/bellad (configuration), /var/lib/bellad
               (state), the MQTT password /etc/credstore/bellad.mqtt-password
               and the system user bellad
  -h, --help   show this help and exit
EOF
}

log() { printf 'uninstall.sh: %s\n' "$*"; }
die() {
    printf 'uninstall.sh: error: %s\n' "$*" >&2
    exit 1
}

systemd_running() { [[ -d /run/systemd/system ]]; }

purge=0
while (($# > 0)); do
    case "$1" in
    --purge) purge=1 ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

((EUID == 0)) || die "run as root, e.g.: sudo $0"

if [[ -e "$UNIT_DIR/$UNIT" ]]; then
    if systemd_running; then
        log "stopping and disabling $UNIT"
        systemctl disable --now --quiet "$UNIT" || true
    else
        systemctl disable --quiet "$UNIT" || true
    fi
fi

log "removing $UNIT_DIR/$UNIT"
rm -f -- "$UNIT_DIR/$UNIT" "$UNIT_DIR/$UNIT.d/jetson.conf"
if [[ -d "$UNIT_DIR/$UNIT.d" ]]; then
    # other drop-ins (systemctl edit) are the administrator's: keep them
    rmdir --ignore-fail-on-non-empty -- "$UNIT_DIR/$UNIT.d"
    if [[ -d "$UNIT_DIR/$UNIT.d" ]]; then
        log "note: kept $UNIT_DIR/$UNIT.d (other drop-ins)"
    fi
fi
if systemd_running; then
    systemctl daemon-reload
    systemctl reset-failed "$UNIT" 2>/dev/null || true
fi

log "removing $PREFIX and /var/cache/bellad"
rm -rf -- "$PREFIX" /var/cache/bellad

if ((purge)); then
    log "purging /etc/bellad, /var/lib/bellad, /etc/credstore/bellad.mqtt-password"
    rm -rf -- /etc/bellad /var/lib/bellad
    rm -f -- /etc/credstore/bellad.mqtt-password
    if getent passwd "$SERVICE_USER" >/dev/null; then
        log "removing the user $SERVICE_USER"
        userdel "$SERVICE_USER"
    fi
    # the user's own group, if userdel left it
    if getent group "$SERVICE_USER" >/dev/null; then
        groupdel "$SERVICE_USER"
    fi
else
    log "kept /etc/bellad, /var/lib/bellad and the user $SERVICE_USER (--purge removes them)"
fi
log "done"
