#!/usr/bin/env bash
# Sets up a fresh machine for peft-wgsl: the Node packages, and on Debian/Ubuntu without a usable
# WebGPU adapter, Mesa's lavapipe Vulkan driver (a CPU implementation Dawn can run WGSL on), plus
# Chromium for the in-browser end-to-end test. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

say() { printf '\n== %s\n' "$*"; }

if ! command -v node >/dev/null || [ "$(node -p 'process.versions.node.split(".")[0]')" -lt 20 ]; then
  echo "peft-wgsl needs Node.js 20 or newer (https://nodejs.org); found: $(node --version 2>/dev/null || echo none)" >&2
  exit 1
fi

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then $SUDO apt-get update -qq; apt_updated=1; fi
  $SUDO apt-get install -y -qq "$@"
}

say "npm ci (installs the packages and builds dist/)"
npm ci --no-audit --no-fund

if ! node scripts/check-webgpu.mjs --quiet 2>/dev/null; then
  if [ -r /etc/os-release ] && command -v apt-get >/dev/null; then
    . /etc/os-release
    if [ "${VERSION_CODENAME:-}" = "bookworm" ]; then
      # Bookworm's Mesa 22.3 is too old for Dawn; Mesa 25 comes from bookworm-backports. The
      # suite gets its own deb822 file, with the mirror copied from the system's own sources.
      src=/etc/apt/sources.list.d/debian.sources
      uri=""
      if [ -r "$src" ]; then uri=$(awk '/^URIs:/ {print $2; exit}' "$src"); fi
      if [ -z "$uri" ] && [ -r /etc/apt/sources.list ]; then
        uri=$(awk '$1 == "deb" && $3 ~ /^bookworm/ {print $2; exit}' /etc/apt/sources.list)
      fi
      if [ -z "$uri" ]; then echo "cannot find the Debian mirror in $src or /etc/apt/sources.list" >&2; exit 1; fi
      say "adding bookworm-backports ($uri) for Mesa's lavapipe"
      printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" \
        | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.sources >/dev/null
      apt_install -t bookworm-backports mesa-vulkan-drivers
    else
      say "installing Mesa's Vulkan drivers (lavapipe)"
      apt_install mesa-vulkan-drivers
    fi
  else
    echo "No WebGPU adapter and no apt-get here: install a Vulkan/Metal/D3D12 driver Dawn accepts (see DEVELOPERS.md)." >&2
  fi
  node scripts/check-webgpu.mjs
else
  node scripts/check-webgpu.mjs
fi

# The end-to-end test drives Debian's Chromium (WebGPU on its bundled SwiftShader).
if [ ! -x /usr/bin/chromium ] && command -v apt-get >/dev/null; then
  say "installing Chromium for the in-browser test"
  apt_install chromium
fi

say "set-up done"
