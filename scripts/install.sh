#!/usr/bin/env bash
# Install bellad from this checkout as a systemd service on this machine.
#
#   sudo scripts/install.sh [--enable] [--models] [--now] [--jetson] [--config FILE] [--skip-apt]
#
# Run it again to upgrade: every step is idempotent, and an existing
# /etc/bellad/bellad.toml is never overwritten. See docs/systemd.md.
set -euo pipefail

readonly PREFIX=/opt/bellad
readonly CONFIG_DIR=/etc/bellad
readonly UNIT_DIR=/etc/systemd/system
readonly UNIT=bellad.service
readonly SERVICE_USER=bellad
readonly AUDIO_GROUP=audio
# Debian packages needed to build and run bellad's Python dependencies:
# a venv, a compiler and headers for PyAudio (PortAudio) and systemd-python.
readonly APT_PACKAGES=(
    python3-venv python3-dev gcc pkg-config
    libportaudio2 portaudio19-dev libsystemd-dev
)

usage() {
    cat <<'EOF'
Usage: scripts/install.sh [OPTIONS]

Install bellad from this checkout as the systemd service bellad.service.
Run as root. Running it again upgrades bellad in place.

What it does:
  - installs missing Debian packages (python3-venv, python3-dev, gcc,
    pkg-config, libportaudio2, portaudio19-dev, libsystemd-dev)
  - creates the system user 'bellad' (member of 'audio') if missing
  - creates the virtual environment /opt/bellad and installs bellad with
    the 'systemd' extra into it (PIP_* variables are honoured; with sudo,
    keep them with: sudo --preserve-env=PIP_CERT,PIP_FIND_LINKS ...)
  - copies config/bellad.toml to /etc/bellad/bellad.toml unless that exists
  - installs /etc/systemd/system/bellad.service and reloads systemd

Options:
  --enable         enable bellad.service (start at boot)
  --models         install the models the config names, as the bellad user, into
                   /var/lib/bellad/models (bellad models ensure; needs internet
                   unless they are there already)
  --now            start bellad.service now (restart it if it is running)
  --jetson         also install the Jetson/NVIDIA GPU drop-in
                   (/etc/systemd/system/bellad.service.d/jetson.conf)
  --config FILE    config to install when /etc/bellad/bellad.toml does not
                   exist (default: config/bellad.toml of this checkout)
  --skip-apt       do not check or install Debian packages
  -h, --help       show this help and exit

Uninstall with scripts/uninstall.sh.
EOF
}

log() { printf 'install.sh: %s\n' "$*"; }
die() {
    printf 'install.sh: error: %s\n' "$*" >&2
    exit 1
}

# True when systemd is the running init system (same test as sd_booted(3)).
systemd_running() { [[ -d /run/systemd/system ]]; }

checkout=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)
enable=0
now=0
models=0
jetson=0
skip_apt=0
config_src="$checkout/config/bellad.toml"

while (($# > 0)); do
    case "$1" in
    --enable) enable=1 ;;
    --now) now=1 ;;
    --models) models=1 ;;
    --jetson) jetson=1 ;;
    --skip-apt) skip_apt=1 ;;
    --config)
        (($# >= 2)) || die "--config needs a file"
        config_src=$2
        shift
        ;;
    --config=*) config_src=${1#--config=} ;;
    -h | --help)
        usage
        exit 0
        ;;
    *) die "unknown option '$1' (see --help)" ;;
    esac
    shift
done

((EUID == 0)) || die "run as root, e.g.: sudo $0"
[[ -f "$checkout/pyproject.toml" ]] || die "$checkout is not a bellad checkout (no pyproject.toml)"
for file in "systemd/$UNIT" systemd/jetson.conf scripts/apt-deps.sh; do
    [[ -f "$checkout/$file" ]] || die "missing $checkout/$file"
done

install_apt_packages() {
    if ((skip_apt)); then
        log "skipping Debian packages (--skip-apt)"
        return
    fi
    command -v dpkg-query >/dev/null || die "dpkg-query not found: this script supports Debian-based systems; install ${APT_PACKAGES[*]} yourself and pass --skip-apt"
    log "checking Debian packages: ${APT_PACKAGES[*]}"
    # installs only the missing ones
    "$checkout/scripts/apt-deps.sh" "${APT_PACKAGES[@]}"
}

create_user() {
    getent group "$AUDIO_GROUP" >/dev/null || groupadd --system "$AUDIO_GROUP"
    if getent passwd "$SERVICE_USER" >/dev/null; then
        log "user $SERVICE_USER: exists"
    else
        log "creating system user $SERVICE_USER"
        useradd --system --user-group --groups "$AUDIO_GROUP" \
            --home-dir /var/lib/bellad --no-create-home \
            --shell /usr/sbin/nologin --comment "bellad voice daemon" "$SERVICE_USER"
    fi
    # also for a user that existed before: idempotent
    usermod --append --groups "$AUDIO_GROUP" "$SERVICE_USER"
}

install_venv() {
    if [[ ! -x "$PREFIX/bin/python" ]] || ! "$PREFIX/bin/python" -c '' 2>/dev/null; then
        log "creating virtual environment $PREFIX"
        rm -rf -- "$PREFIX"
        python3 -m venv "$PREFIX"
    fi
    # Build from a private copy: the checkout may be read-only, and an
    # in-tree build as root would leave root-owned build/ and *.egg-info there.
    local stage
    stage=$(mktemp -d)
    # shellcheck disable=SC2064  # expand $stage now: it is local
    trap "rm -rf -- '$stage'" EXIT
    tar -C "$checkout" -cf - \
        --exclude=./.git --exclude=./.venv --exclude=./build --exclude=./dist \
        --exclude='*.egg-info' --exclude=__pycache__ --exclude=./.cache \
        --exclude=./.mypy_cache --exclude=./.ruff_cache --exclude=./.pytest_cache \
        --exclude=./models --exclude=./bench/out --exclude=./state . |
        tar -C "$stage" -xf -
    log "installing bellad into $PREFIX"
    # --use-pep517: build sdists (systemd-python) as wheels, which pip caches
    "$PREFIX/bin/pip" install --quiet --upgrade --use-pep517 "${stage}[systemd]"
    rm -rf -- "$stage"
    trap - EXIT
    [[ -x "$PREFIX/bin/bellad" ]] || die "$PREFIX/bin/bellad missing after pip install"
}

install_config() {
    install -d -m 0750 -o root -g "$SERVICE_USER" "$CONFIG_DIR"
    # where systemd looks up the MQTT password credential (see docs/systemd.md)
    install -d -m 0700 -o root -g root /etc/credstore
    if [[ -e "$CONFIG_DIR/bellad.toml" ]]; then
        log "$CONFIG_DIR/bellad.toml: exists, left as it is"
    elif [[ -f "$config_src" ]]; then
        log "installing $CONFIG_DIR/bellad.toml from $config_src"
        install -m 0640 -o root -g "$SERVICE_USER" "$config_src" "$CONFIG_DIR/bellad.toml"
    else
        log "warning: $config_src not found: write $CONFIG_DIR/bellad.toml before starting bellad"
    fi
}

install_unit() {
    log "installing $UNIT_DIR/$UNIT"
    install -m 0644 "$checkout/systemd/$UNIT" "$UNIT_DIR/$UNIT"
    if ((jetson)); then
        log "installing $UNIT_DIR/$UNIT.d/jetson.conf"
        install -d -m 0755 "$UNIT_DIR/$UNIT.d"
        install -m 0644 "$checkout/systemd/jetson.conf" "$UNIT_DIR/$UNIT.d/jetson.conf"
    elif [[ -e "$UNIT_DIR/$UNIT.d/jetson.conf" ]]; then
        log "note: keeping the existing Jetson drop-in $UNIT_DIR/$UNIT.d/jetson.conf"
    fi
    if systemd_running; then
        systemctl daemon-reload
    else
        log "systemd is not running: skipped daemon-reload"
    fi
}

install_models() {
    ((models)) || return 0
    # the unit's StateDirectory=, made now so models can go in before the first start
    install -d -m 0750 -o "$SERVICE_USER" -g "$SERVICE_USER" /var/lib/bellad
    log "installing the models $CONFIG_DIR/bellad.toml names (bellad models ensure)"
    runuser -u "$SERVICE_USER" -- env STATE_DIRECTORY=/var/lib/bellad HOME=/var/lib/bellad \
        "$PREFIX/bin/bellad" --config "$CONFIG_DIR/bellad.toml" models ensure
}

enable_and_start() {
    if ((enable)); then
        log "enabling $UNIT"
        systemctl enable --quiet "$UNIT"
    fi
    if ((now)); then
        systemd_running || die "--now needs a running systemd"
        log "starting $UNIT (waits until bellad is ready)"
        systemctl restart "$UNIT"
        systemctl --no-pager --lines=0 status "$UNIT" || true
    elif systemd_running && systemctl --quiet is-active "$UNIT"; then
        log "note: bellad is running the old code until: systemctl restart $UNIT"
    fi
}

install_apt_packages
create_user
install_venv
install_config
install_unit
install_models
enable_and_start
log "done"
