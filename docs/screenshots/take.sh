#!/usr/bin/env bash
# Takes the desktop app's screenshots under Xvfb, on the embedded local network, driving the
# real app with xdotool and three CLI users (bob, carol, dave).
#
#   cargo build -p app --bin peerphone && docs/screenshots/take.sh
#
# Needs: xvfb, xdotool, imagemagick (import). Clicks are window coordinates of the
# 980x660 window at the top-left corner of a 1280x800 screen; if the layout changes, look
# at the PNGs and adjust them.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=docs/screenshots
BIN=target/debug/peerphone
WORK=$(mktemp -d)
export DISPLAY=${SCREENSHOT_DISPLAY:-:97}

Xvfb "$DISPLAY" -screen 0 1280x800x24 >/dev/null 2>&1 &
XVFB=$!
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    sleep 5
    kill "$XVFB" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
sleep 1

shot() { # name: a 980x660 crop (the window)
    sleep "${2:-1}"
    import -window root -crop 980x660+0+0 +repage "$OUT/$1.png"
}
click() { xdotool mousemove "$1" "$2" click 1; sleep 0.6; }
typ() { # a trailing character then BackSpace: the last key of a burst can be lost
    xdotool type --delay 70 "$1 "
    sleep 0.3
    xdotool key BackSpace
    sleep 0.3
}

RUST_LOG=warn "$BIN" --profile "$WORK/alice" >"$WORK/alice.log" 2>&1 &
PIDS+=($!)
sleep 12
xdotool windowfocus --sync "$(xdotool search --name '^Peerphone' | head -1)"
click 516 284; typ alice
click 516 318; typ "Alice Liddell"
click 516 352; typ "correct horse battery"
shot login
xdotool key Return
sleep 10

ADDR=$(sed -n 's/^login-server = "\(.*\)"/\1/p' "$WORK/alice/profile.toml")
KEY=$(python3 -c "
import re, base64, sys
s = open(sys.argv[1]).read()
b = bytes(int(x) for x in re.search(r'authority-key = \[(.*?)\]', s, re.S).group(1).split(','))
print(base64.urlsafe_b64encode(b).decode().rstrip('='))" "$WORK/alice/profile.toml")
cli() { # user args...
    local user=$1
    shift
    PEERPHONE_PASSWORD="password of $user" "$BIN" --login-server "$ADDR" --authority-key "$KEY" \
        --profile "$WORK/$user" "$@"
}
cli bob register bob --display-name "Bob Builder" >/dev/null
cli carol register carol --display-name "Carol Danvers" >/dev/null
cli dave register dave --display-name "Dave Grohl" >/dev/null
for u in bob carol dave; do cli "$u" contacts add alice >/dev/null; done
sleep 8
click 157 123 # accept bob
sleep 3
click 157 123 # accept carol; dave stays pending
sleep 3
cli bob chat alice "Morning! Did the parcel arrive?" >/dev/null
cli bob online --auto-answer >"$WORK/bob.log" 2>&1 &
PIDS+=($!)
sleep 10
click 71 194 # open the chat with Bob
click 560 637
typ "Yes, thanks! Are you free for a quick call?"
xdotool key Return
sleep 4
click 336 19 # status message
typ "Working from home today"
xdotool key Return
cli carol chat alice "Lunch tomorrow at noon?" >/dev/null
shot chat 3

click 940 62 # call Bob (he answers by himself)
sleep 8
click 631 110 # mute
xdotool mousemove 600 500
shot call 1
click 914 110 # hang up
sleep 2

cli carol call alice --seconds 30 >/dev/null 2>&1 &
PIDS+=($!)
shot incoming 8
xdotool key Escape
sleep 2

click 936 19 # settings
click 144 360 # run network check
shot settings 8
