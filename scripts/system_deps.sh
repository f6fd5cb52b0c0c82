#!/usr/bin/env bash
# Debian packages that headless napari tests and screenshots need (Xvfb and Qt's xcb libraries).
# Installs the missing ones when we are root; otherwise prints the apt command and carries on.
set -euo pipefail
pkgs=(xvfb xauth libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon-x11-0
      libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-render-util0 libxcb-shape0)
command -v dpkg >/dev/null 2>&1 || { echo "system_deps: not a Debian system; install Xvfb and Qt's xcb libraries yourself"; exit 0; }
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
[ ${#missing[@]} -eq 0 ] && exit 0
cmd="apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" = 0 ]; then
  echo "system_deps: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "system_deps: missing Debian packages for the napari tests; run as root:"
  echo "  sudo sh -c '$cmd'"
fi
