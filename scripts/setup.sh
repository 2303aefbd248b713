#!/usr/bin/env bash
# Installs what Peerphone needs on a Debian or Ubuntu machine: the system packages its build
# and tests use, and a Rust toolchain when none is present. Safe to run again: it only
# installs what is missing. Sourced by scripts/run.sh, scripts/test.sh and .ci/run.
set -euo pipefail

# Packages: cmake/pkg-config/libasound2-dev build opus and cpal; postgresql for the storage
# tests; nftables/iproute2 for the NAT lab; xvfb/xauth to run the desktop app headless;
# coturn as a reference TURN relay; python3-venv, sox and espeak-ng for the audio benchmarks;
# Mesa (software OpenGL/EGL) and the X11 libraries winit loads at run time, for the desktop
# app and its rendered UI tests; imagemagick and xdotool to take screenshots.
PEERPHONE_APT_PACKAGES=(
  build-essential cmake pkg-config libasound2-dev
  postgresql nftables iproute2
  xvfb xauth coturn
  python3-venv sox espeak-ng
  libegl1 libgl1 libegl-mesa0 libgl1-mesa-dri
  libx11-6 libx11-xcb1 libxcursor1 libxrandr2 libxi6 libxkbcommon0 libxkbcommon-x11-0
  fonts-dejavu-core imagemagick xdotool
)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "error: need root (or sudo) to run: $*" >&2
    return 1
  fi
}

install_system_packages() {
  local missing=()
  for pkg in "${PEERPHONE_APT_PACKAGES[@]}" "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing system packages: ${missing[*]}" >&2
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >&2
  fi
}

ensure_rust() {
  if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    echo "==> installing the Rust toolchain with rustup" >&2
    if ! command -v curl >/dev/null 2>&1; then install_system_packages curl ca-certificates; fi
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --default-toolchain 1.95.0 -c clippy -c rustfmt
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
}

# Starts the machine's PostgreSQL (if not running) and exports PEERPHONE_TEST_POSTGRES, a
# database URL the storage tests use. Creates the role and database on first use.
start_postgres() {
  local url="postgres://peerphone:peerphone@127.0.0.1:5432/peerphone_test"
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "==> starting PostgreSQL" >&2
    local cluster
    cluster=$(pg_lsclusters -h 2>/dev/null | awk 'NR==1 {print $1" "$2}')
    if [ -z "$cluster" ]; then
      local version
      version=$(ls /usr/lib/postgresql | sort -V | tail -n1)
      as_root pg_createcluster "$version" main >&2
      cluster="$version main"
    fi
    # shellcheck disable=SC2086
    as_root pg_ctlcluster $cluster start >&2
    for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
  fi
  as_root runuser -u postgres -- psql -q -v ON_ERROR_STOP=1 >/dev/null 2>&1 <<'SQL' || true
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'peerphone') THEN
    CREATE ROLE peerphone LOGIN PASSWORD 'peerphone' CREATEDB;
  END IF;
END $$;
SQL
  if ! as_root runuser -u postgres -- psql -tAc "SELECT 1 FROM pg_database WHERE datname='peerphone_test'" 2>/dev/null | grep -q 1; then
    as_root runuser -u postgres -- createdb -O peerphone peerphone_test >&2
  fi
  export PEERPHONE_TEST_POSTGRES="$url"
}
