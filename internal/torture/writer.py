# writer.py: one torture writer, a real NBD client (libnbd).
#
# usage: writer.py DISK_NAME DISK_INDEX WRITER WRITERS SLOTS FIRST_SEQ SEED FLUSH_EVERY PAUSE_MS
#
# It reads a unix socket path on stdin, connects to DISK_NAME there and
# writes one whole 4 KiB slot at a time (the slots i with i % WRITERS ==
# WRITER), one write in flight, FLUSHing every FLUSH_EVERY writes. Every
# event is one line on stdout:
#   C                 connected
#   W SEQ SLOT        write issued
#   R SEQ             write replied to with success
#   FA FROM TO        flush returned success: it covers the writes FROM..TO
#                     replied to on this connection
#   E MESSAGE         an error: the connection is dropped and the writer
#                     reads the next socket path from stdin
# The slot content must match SlotContent in content.go.
import hashlib
import random
import struct
import sys
import time

import nbd

SLOT = 4096
MAGIC = b"WEFTTORT"


def content(disk, writer, seq, slot):
    hdr = MAGIC + struct.pack("<IIQQ", disk, writer, seq, slot)
    return hdr + hashlib.sha256(hdr).digest() * 127


def say(*words):
    sys.stdout.write(" ".join(str(w) for w in words) + "\n")
    sys.stdout.flush()


def main():
    name = sys.argv[1]
    disk, writer, writers, slots, seq, seed, flush_every, pause_ms = map(int, sys.argv[2:10])
    rng = random.Random(seed)
    for line in sys.stdin:
        sock = line.strip()
        h = nbd.NBD()
        try:
            h.connect_uri("nbd+unix:///%s?socket=%s" % (name, sock))
        except nbd.Error as e:
            say("E", "connect:", str(e).replace("\n", " "))
            del h
            continue
        say("C")
        first = seq + 1
        try:
            while True:
                for _ in range(flush_every):
                    seq += 1
                    slot = rng.randrange(writer, slots, writers)
                    say("W", seq, slot)
                    h.pwrite(content(disk, writer, seq, slot), slot * SLOT)
                    say("R", seq)
                    time.sleep(pause_ms / 1000.0)
                h.flush()
                say("FA", first, seq)
                first = seq + 1
        except nbd.Error as e:
            say("E", str(e).replace("\n", " "))
        del h  # closes the connection


if __name__ == "__main__":
    main()
