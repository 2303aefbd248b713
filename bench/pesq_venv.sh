# Sourced by the PESQ scripts: sets VENV to a virtualenv with pesq, numpy, scipy and
# soundfile (created on first use; PESQ_VENV picks another place).
VENV="${PESQ_VENV:-$HOME/.cache/peerphone/pesq-venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet pesq numpy scipy soundfile
fi
