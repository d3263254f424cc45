#!/usr/bin/env bash
# Install omaovi on a Raspberry Pi (Raspberry Pi OS / Debian), or into a directory.
#
#   sudo systemd/install.sh                    install on this machine
#   sudo systemd/install.sh --generate-key     also make a consortium key (testing only)
#   systemd/install.sh --prefix /tmp/root      everything under /tmp/root, for tests
#
# It can be run again at any time (after a git pull, say): it changes only what
# differs, never overwrites the configuration or the key, and never starts a
# service. What it does:
#   - apt: python3-venv, nginx (and python3-lgpio on a Raspberry Pi)          [prefix / only]
#   - the system user and group omaovi, in the groups gpio, spi, i2c, dialout,
#     input and audio where this machine has them                           [prefix / only]
#   - the groups omaovi-central and omaovi-sip2, one per secret: only the unit
#     that needs a secret gets its group (sync the token, the device the SIP2
#     password), never the staff page                                        [prefix / only]
#   - PREFIX/opt/omaovi/venv: a virtualenv with omaovi and its dependencies,
#     reinstalled only when the source changed (--no-venv skips it)
#   - PREFIX/usr/local/bin/omaovi: a link to the venv's omaovi command
#   - PREFIX/etc/omaovi/omaovi.toml from examples/omaovi.toml, only if missing
#     (mode 0640, owner root:omaovi)
#   - PREFIX/etc/omaovi/consortium.key, only with --generate-key and only if missing
#   - PREFIX/etc/omaovi/pin.pepper, the branch's own PIN pepper, only if missing
#   - PREFIX/etc/omaovi/central.token and sip2.password, when there: mode 0640,
#     owner root:omaovi-central and root:omaovi-sip2
#   - PREFIX/etc/omaovi/tls: a local CA (made once; its certificate also in
#     PREFIX/opt/omaovi/omaovi-ca.crt for staff devices to trust) and the staff
#     page's certificate for this machine's names and addresses, made again when
#     they change or it is within 30 days of expiring. A server.crt placed there
#     by hand (the municipality's) is kept as it is
#   - PREFIX/etc/nginx/sites-available/omaovi, the HTTPS proxy in front of the
#     staff page, enabled in place of Debian's default site
#   - PREFIX/var/lib/omaovi, the database directory (mode 0750, owner omaovi);
#     a database, -wal or -shm file in it that root left behind is given back to omaovi
#   - PREFIX/etc/systemd/system/omaovi-{device,web,sync}.service, with the
#     paths rewritten under PREFIX
#   - PREFIX/etc/systemd/system/omaovi-device.service.d/sip2.conf when the config
#     has a [sip2] section: the device may reach that server and nothing else
#     (omaovi sip2-dropin); removed when the section is gone. Run the installer
#     again after editing [sip2].
#   - systemctl daemon-reload and enable of each unit whose command this
#     version has                                                            [prefix / only]
# Steps marked [prefix / only] change the machine itself, so they run only when
# the prefix is /; ownership (chown) likewise.
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/
MAKE_VENV=yes
GENERATE_KEY=no
UNITS=(omaovi-device omaovi-web omaovi-sync)
GROUPS_WANTED=(gpio spi i2c dialout input audio)
# One group per secret. The omaovi user is a member of neither: a unit that needs
# the secret gets the group with SupplementaryGroups=, so the staff page, which
# runs as the same user, cannot read it.
SECRET_GROUPS=(omaovi-central omaovi-sip2)

usage() {
    sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: --prefix DIR  --no-venv  --generate-key  --help"
}

while [ $# -gt 0 ]; do
    case "$1" in
        --prefix) PREFIX=${2:?--prefix needs a directory}; shift 2 ;;
        --prefix=*) PREFIX=${1#--prefix=}; shift ;;
        --no-venv) MAKE_VENV=no; shift ;;
        --generate-key) GENERATE_KEY=yes; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done

# "--": a prefix beginning with "-" is a directory name, not an option of realpath.
PREFIX=$(realpath -m -- "$PREFIX")
ROOT=${PREFIX%/}              # "" when installing on this machine
SYSTEM=no
[ "$PREFIX" = / ] && SYSTEM=yes

OPT=$ROOT/opt/omaovi
VENV=$OPT/venv
ETC=$ROOT/etc/omaovi
STATE=$ROOT/var/lib/omaovi
UNIT_DIR=$ROOT/etc/systemd/system
BIN_LINK=$ROOT/usr/local/bin/omaovi

say() { echo "install.sh: $*"; }

if [ "$SYSTEM" = yes ] && [ "$(id -u)" -ne 0 ]; then
    echo "install.sh: installing on this machine needs root: sudo $0 $*" >&2
    exit 1
fi

MODEL=$(tr -d '\0' 2>/dev/null </proc/device-tree/model || true)
is_pi() { [[ "$MODEL" == Raspberry\ Pi* ]]; }
is_pi5() { [[ "$MODEL" == Raspberry\ Pi\ 5* ]]; }

# -- system packages, user and groups (this machine only) ---------------------
apt_install() {
    local missing=()
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    say "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

if [ "$SYSTEM" = yes ]; then
    # gcc and python3-dev build RPi.GPIO and evdev where no wheel exists.
    apt_install python3-venv python3-dev gcc
    # gpiozero's lgpio pin factory: the one that works on every Pi, and the only
    # one on a Pi 5. The venv sees it through --system-site-packages.
    if is_pi; then apt_install python3-lgpio; fi
    # The HTTPS proxy in front of the staff page (waitress speaks no TLS).
    apt_install nginx
    if ! getent group omaovi >/dev/null; then
        say "creating group omaovi"
        groupadd --system omaovi
    fi
    if ! id omaovi >/dev/null 2>&1; then
        say "creating system user omaovi"
        useradd --system --gid omaovi --home-dir /var/lib/omaovi --no-create-home \
            --shell /usr/sbin/nologin --comment "omaovi door controller" omaovi
    fi
    for group in "${SECRET_GROUPS[@]}"; do
        if ! getent group "$group" >/dev/null; then
            say "creating group $group"
            groupadd --system "$group"
        fi
    done
    for group in "${GROUPS_WANTED[@]}"; do
        if getent group "$group" >/dev/null && ! id -nG omaovi | tr ' ' '\n' | grep -qx "$group"; then
            say "adding omaovi to group $group"
            usermod -aG "$group" omaovi
        fi
    done
fi

# Only the groups this machine has: systemd refuses to start a unit whose
# SupplementaryGroups= names a missing group.
present_groups=()
for group in "${GROUPS_WANTED[@]}"; do
    getent group "$group" >/dev/null && present_groups+=("$group")
done

# Ownership is set only on this machine, where the omaovi user exists.
own() { if [ "$SYSTEM" = yes ]; then chown "$1" "${@:2}"; fi; }

# Write stdin to a file only when its content differs, so a second run leaves
# every file (and its modification time) as it was.
put() {
    local target=$1 mode=$2 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    if [ -f "$target" ] && cmp -s "$tmp" "$target"; then
        rm -f "$tmp"
    else
        mkdir -p "$(dirname "$target")"
        mv "$tmp" "$target"
        say "wrote $target"
    fi
    chmod "$mode" "$target"
}

# Paths in the shipped files are for prefix /; under another prefix they move with it.
# The new paths are escaped for sed: "&" or "#" in a directory name is a character, not sed syntax.
sed_text() { printf '%s' "$1" | sed -e 's/[\\&#]/\\&/g'; }
relocate() {
    sed -e "s#/opt/omaovi#$(sed_text "$OPT")#g" -e "s#/etc/omaovi#$(sed_text "$ETC")#g" \
        -e "s#/var/lib/omaovi#$(sed_text "$STATE")#g"
}

# -- the virtualenv -----------------------------------------------------------
source_hash() {
    (cd "$SRC" && find pyproject.toml README.md device admin_web sync central -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1
}

if [ "$MAKE_VENV" = yes ]; then
    PYTHON=${PYTHON:-python3}
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
        echo "install.sh: omaovi needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)" >&2
        exit 1
    fi
    if [ ! -x "$VENV/bin/python" ]; then
        say "creating $VENV"
        mkdir -p "$OPT"
        "$PYTHON" -m venv --system-site-packages "$VENV"
    fi
    wanted=$(source_hash)
    if [ "$(cat "$OPT/source.sha256" 2>/dev/null)" != "$wanted" ]; then
        say "installing omaovi into $VENV"
        # Build from a copy, so the checkout gets no build/ or egg-info litter.
        build=$(mktemp -d)
        trap 'rm -rf "$build"' EXIT
        (cd "$SRC" && tar -cf - --exclude=__pycache__ pyproject.toml README.md device admin_web sync central) | tar -xf - -C "$build"
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$build"
        if is_pi5; then
            # The mfrc522 package drives the RC522's reset pin through RPi.GPIO,
            # which cannot reach a Pi 5's GPIO; rpi-lgpio is a drop-in replacement.
            "$VENV/bin/python" -m pip uninstall -q -y RPi.GPIO || true
            "$VENV/bin/python" -m pip install -q --disable-pip-version-check rpi-lgpio
        fi
        echo "$wanted" >"$OPT/source.sha256"
    fi
    mkdir -p "$(dirname "$BIN_LINK")"
    [ "$(readlink "$BIN_LINK" 2>/dev/null)" = "$VENV/bin/omaovi" ] || ln -sfn "$VENV/bin/omaovi" "$BIN_LINK"
fi

# -- configuration, key and state ---------------------------------------------
mkdir -p "$ETC"
chmod 0750 "$ETC"
own root:omaovi "$ETC"
if [ ! -e "$ETC/omaovi.toml" ]; then
    relocate <"$SRC/examples/omaovi.toml" | put "$ETC/omaovi.toml" 0640
    say "edit $ETC/omaovi.toml for this branch, then: omaovi check-config $ETC/omaovi.toml"
fi
chmod 0640 "$ETC/omaovi.toml"
own root:omaovi "$ETC/omaovi.toml"

KEY=$ETC/consortium.key
if [ -e "$KEY" ]; then
    chmod 0640 "$KEY"
    own root:omaovi "$KEY"
elif [ "$GENERATE_KEY" = yes ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 >"$KEY")
    chmod 0640 "$KEY"
    own root:omaovi "$KEY"
    say "generated a NEW consortium key in $KEY."
    say "  Cards are stored as HMAC(key, number): a branch with its own key matches no"
    say "  card key of the central service. Use it for testing only, and replace it with"
    say "  the consortium's key before opening:"
    say "    sudo install -m 0640 -o root -g omaovi THE-KEY-FILE $KEY"
else
    say "no consortium key yet. Copy the consortium's key (one line, at least 16 bytes) with"
    say "    sudo install -m 0640 -o root -g omaovi THE-KEY-FILE $KEY"
    say "  or run again with --generate-key for a test key."
fi

# The PIN pepper, unlike the consortium key, is the branch's own secret: PIN verifiers
# are kept only as HMAC(pepper, verifier) in this branch's database, so any random
# value serves. The example config's [pin] reads it; without it doctor fails.
PEPPER=$ETC/pin.pepper
if [ ! -e "$PEPPER" ]; then
    (umask 077 && head -c 32 /dev/urandom | base64 >"$PEPPER")
    say "generated the branch's PIN pepper in $PEPPER; keep it with the backups, as a new one"
    say "  invalidates every cached PIN verifier until the next full sync or import."
fi
chmod 0640 "$PEPPER"
own root:omaovi "$PEPPER"

# The secrets, where the config's examples put them (see SECRET_GROUPS).
for secret in central.token:omaovi-central sip2.password:omaovi-sip2; do
    file=$ETC/${secret%%:*}
    if [ -e "$file" ]; then
        chmod 0640 "$file"
        own "root:${secret#*:}" "$file"
    fi
done

# -- the staff page's certificate ----------------------------------------------
TLS=$ETC/tls
CA_PUBLIC=$OPT/omaovi-ca.crt
mkdir -p "$TLS" "$OPT"
chmod 0700 "$TLS"
host=$(hostname)
if [ ! -e "$TLS/ca.key" ]; then
    # The CA may vouch only for this machine's names and private addresses, so a
    # staff device that trusts it trusts nothing else, even if its key were stolen.
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
        -keyout "$TLS/ca.key" -out "$TLS/ca.crt" -subj "/O=omaovi/CN=omaovi $host local CA" \
        -addext "basicConstraints=critical,CA:TRUE,pathlen:0" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -addext "nameConstraints=critical,permitted;DNS:$host,permitted;DNS:$host.local,permitted;DNS:localhost,permitted;IP:10.0.0.0/255.0.0.0,permitted;IP:172.16.0.0/255.240.0.0,permitted;IP:192.168.0.0/255.255.0.0,permitted;IP:127.0.0.0/255.0.0.0" \
        2>/dev/null
    chmod 0600 "$TLS/ca.key"
    say "made a local CA for the staff page: $TLS/ca.crt"
fi
put "$CA_PUBLIC" 0644 <"$TLS/ca.crt"
# This machine's names and its private IPv4 addresses (what the CA may vouch for).
names="DNS:$host,DNS:$host.local,DNS:localhost,IP:127.0.0.1"
for address in $(hostname -I 2>/dev/null || true); do
    case "$address" in
        10.*|192.168.*|172.1[6-9].*|172.2[0-9].*|172.3[01].*) names="$names,IP:$address" ;;
    esac
done
if [ -e "$TLS/server.crt" ] && [ ! -e "$TLS/server.names" ]; then
    : # a certificate placed by hand (the municipality's CA): kept as it is
elif [ "$(cat "$TLS/server.names" 2>/dev/null)" != "$names" ] \
        || ! openssl x509 -checkend $((30 * 86400)) -noout -in "$TLS/server.crt" >/dev/null 2>&1; then
    (
        umask 077
        openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$host" \
            -keyout "$TLS/server.key" -out "$TLS/server.csr" 2>/dev/null
        # 825 days: the longest any staff browser (Apple's) accepts.
        openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca.crt" -CAkey "$TLS/ca.key" -days 825 \
            -set_serial "0x$(openssl rand -hex 16)" -out "$TLS/server.crt" \
            -extfile <(printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName=%s\n' "$names") \
            2>/dev/null
        rm -f "$TLS/server.csr"
    )
    echo "$names" >"$TLS/server.names"
    chmod 0644 "$TLS/server.crt"
    shown=${names//DNS:/}
    say "made the staff page's certificate for ${shown//IP:/} ($TLS/server.crt)"
    say "  staff devices trust $CA_PUBLIC once (http://$host/omaovi-ca.crt); its SHA-256 fingerprint:"
    say "  $(openssl x509 -noout -fingerprint -sha256 -in "$TLS/ca.crt" | cut -d= -f2)"
fi

mkdir -p "$STATE"
chmod 0750 "$STATE"
own omaovi:omaovi "$STATE"
# Every file in it must be the service user's. `sudo omaovi ...` or `sudo sqlite3`
# leaves a root-owned database, -wal or -shm, which the device cannot write: it then
# runs in the storage-failed mode (only staff cards open). On this machine such
# files are given back to omaovi; under a prefix they are named.
if [ "$SYSTEM" = yes ]; then state_user=omaovi; else state_user=$(stat -c %U "$STATE"); fi
while IFS= read -r -d '' stray; do
    if [ "$SYSTEM" = yes ]; then
        say "giving $stray back to omaovi (it belonged to $(stat -c %U:%G "$stray"))"
        chown omaovi:omaovi "$stray"
    else
        say "$stray belongs to $(stat -c %U "$stray"), not to $state_user: the device cannot write it"
    fi
done < <(find "$STATE" -mindepth 1 -maxdepth 1 ! -user "$state_user" -print0)

# -- systemd units and the HTTPS proxy -----------------------------------------
for unit in "${UNITS[@]}"; do
    relocate <"$SRC/systemd/$unit.service" \
        | sed -e "s#^SupplementaryGroups=${GROUPS_WANTED[*]}\$#SupplementaryGroups=${present_groups[*]}#" \
        | put "$UNIT_DIR/$unit.service" 0644
done

# The SIP2 server is the one address the device may reach (docs/sip2.md). Without
# a venv there is no omaovi to read the config, so the drop-in is left as it is.
DROPIN=$UNIT_DIR/omaovi-device.service.d/sip2.conf
if [ -x "$VENV/bin/omaovi" ]; then
    # Only standard output is the drop-in: a warning on standard error must not end up in the unit.
    complaint=$(mktemp)
    if ! dropin=$("$VENV/bin/omaovi" sip2-dropin --config "$ETC/omaovi.toml" 2>"$complaint"); then
        say "cannot write $DROPIN: $(cat "$complaint")"
        say "  fix the [sip2] section (omaovi check-config $ETC/omaovi.toml) and run the installer again"
    elif [ -n "$dropin" ]; then
        printf '%s\n' "$dropin" | put "$DROPIN" 0644
    elif [ -e "$DROPIN" ]; then
        rm -f "$DROPIN"
        say "removed $DROPIN (no [sip2] section)"
    fi
    rm -f "$complaint"
fi

NGINX=$ROOT/etc/nginx
relocate <"$SRC/systemd/nginx-omaovi.conf" | put "$NGINX/sites-available/omaovi" 0644
mkdir -p "$NGINX/sites-enabled"
[ "$(readlink "$NGINX/sites-enabled/omaovi" 2>/dev/null)" = ../sites-available/omaovi ] \
    || ln -sfn ../sites-available/omaovi "$NGINX/sites-enabled/omaovi"
# Debian's default site (a welcome page) would take port 80 from the redirect to https://.
if [ -L "$NGINX/sites-enabled/default" ]; then
    rm "$NGINX/sites-enabled/default"
    say "disabled nginx's default site; http:// now leads to the staff page's https://"
fi

if [ "$SYSTEM" = yes ]; then
    systemctl daemon-reload
    if nginx -t -q; then
        systemctl is-enabled --quiet nginx || systemctl enable --quiet nginx
        if systemctl is-active --quiet nginx; then systemctl reload nginx; fi
    else
        say "nginx does not accept its configuration (nginx -t above); the staff page has no HTTPS until it does"
    fi
    for unit in "${UNITS[@]}"; do
        command=${unit#omaovi-}
        # Enable only what this version can run; a unit for a command that does
        # not exist yet would restart every few seconds for nothing.
        if "$VENV/bin/omaovi" "$command" --help >/dev/null 2>&1; then
            systemctl is-enabled --quiet "$unit.service" || systemctl enable --quiet "$unit.service"
        else
            say "$unit.service installed but not enabled: this version has no 'omaovi $command'"
        fi
    done
    say "done. Next: place the key, edit the config, then"
    say "    sudo -u omaovi omaovi doctor --config $ETC/omaovi.toml"
    say "    sudo systemctl start omaovi-device omaovi-web nginx"
    say "    sudo -u omaovi omaovi user add NAME --role admin --config $ETC/omaovi.toml   (the first staff user)"
fi
