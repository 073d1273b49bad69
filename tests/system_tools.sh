#!/usr/bin/env bash
# What the suite needs from the system besides Python: Debian's chromium (browser tests), caddy and
# nginx (the production profile behind a real proxy) and ss from iproute2 (the live process's
# connection count). `make test` runs this first: missing tools are installed with apt-get when
# this runs as root or can use sudo without a password; otherwise it stops with one line saying
# what to install, instead of a suite full of failures.
set -euo pipefail

declare -A package=([/usr/bin/chromium]=chromium [caddy]=caddy [nginx]=nginx [ss]=iproute2)
missing=()
for tool in /usr/bin/chromium caddy nginx ss; do
  if [ "$tool" = /usr/bin/chromium ]; then
    [ -x "${CHROMIUM_PATH:-/usr/bin/chromium}" ] || missing+=("${package[$tool]}")
  else
    command -v "$tool" >/dev/null 2>&1 || [ -x "/usr/sbin/$tool" ] || missing+=("${package[$tool]}")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ]; then
  run=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  run=(sudo -n)
else
  echo "make test: the suite needs Debian packages that are not installed: sudo apt-get install ${missing[*]}" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "make test: the suite needs ${missing[*]} (Debian package names); install them with your system's packages" >&2
  exit 1
fi
echo "make test: installing ${missing[*]} with apt-get (the browser and proxy tests need them)"
"${run[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
