#!/usr/bin/env python3
"""Samples the kernel's per-socket UDP receive drops (/proc/net/udp, "drops" column) until
SIGTERM, then prints the drops that happened while it ran, grouped by whose socket it is:
`listen` (the server's listening port), `relay` (the server process's other sockets: relay
ports), `peer` (the echo peers' sockets) and `load` (every other socket on 127.0.0.1: the
load generators'). Sockets are matched to processes through /proc/PID/fd.

Usage: udp_drops.py OUT_FILE LISTEN_PORT SERVER_PID PEER_PID[,PEER_PID…]"""
import os, signal, sys, time

out, listen_port, server_pid = sys.argv[1], int(sys.argv[2]), sys.argv[3]
peer_pids = sys.argv[4].split(",")
first, last, port_of, owner = {}, {}, {}, {}
started = False


def socket_inodes(pid):
    inodes = set()
    try:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inodes.add(target[8:-1])
    except OSError:
        pass
    return inodes


def sample():
    for inode in socket_inodes(server_pid):
        owner[inode] = "server"
    for pid in peer_pids:
        for inode in socket_inodes(pid):
            owner[inode] = "peer"
    try:
        lines = open("/proc/net/udp").read().splitlines()[1:]
    except OSError:
        return
    for line in lines:
        f = line.split()
        if len(f) < 13:
            continue
        ip, port = f[1].split(":")
        if ip != "0100007F":  # 127.0.0.1
            continue
        inode, drops = f[9], int(f[12])
        port_of[inode] = int(port, 16)
        # Sockets opened after the first sample start from zero drops.
        first.setdefault(inode, drops if not started else 0)
        last[inode] = drops


def report(*_):
    sample()
    groups = {"listen": 0, "relay": 0, "peer": 0, "load": 0}
    for inode, drops in last.items():
        grown = drops - first[inode]
        who = owner.get(inode)
        if who == "server":
            groups["listen" if port_of[inode] == listen_port else "relay"] += grown
        elif who == "peer":
            groups["peer"] += grown
        else:
            groups["load"] += grown
    with open(out, "w") as f:
        f.write(f"{groups['listen']} {groups['relay']} {groups['peer']} {groups['load']}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, report)
sample()
started = True
while True:
    sample()
    time.sleep(0.5)
