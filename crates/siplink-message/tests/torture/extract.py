#!/usr/bin/env python3
"""Rebuild the torture-test vectors in this directory from the RFC text.

Usage:
    python3 extract.py RFC4475_TEXT RFC5118_TEXT [--out DIR] [--check]

RFC4475_TEXT / RFC5118_TEXT are the published RFC documents (plain text as
issued by the RFC Editor; an HTML rendering of the same text also works, its
tags and entities are dropped first). The script writes

    DIR/rfc4475/<member>          every member of the RFC 4475 archive, unchanged
    DIR/rfc5118/<member>.dat      every member of the RFC 5118 archive, repaired

DIR defaults to the directory of this script. With --check nothing is written:
the script exits non-zero if any file on disk differs from what it would write.

How the archive is found (RFC 4475 / RFC 5118, Appendix A): the base64 text of
a gzip-compressed tar file sits between a line "-- BEGIN MESSAGE ARCHIVE --" and
a line "-- END MESSAGE ARCHIVE --". RFC 4475 also quotes both markers inside its
Perl decoder listing, on one line; only marker lines that hold nothing but the
marker count. Inside the block, page furniture is removed before decoding: form
feeds, the running header ("RFC 4475   SIP Torture Test Messages   May 2006",
"RFC 5118   SIP IPv6 Torture Tests   February 2008") and the footer
("Sparks, et al.   Informational   [Page 48]", "Gurbani, et al. ... [Page 20]").
Every remaining non-empty line must then be one base64 token; anything else is
an error rather than silently skipped.

RFC 5118 repairs (see README.md):
  * the archive members use bare LF: every LF becomes CRLF;
  * a member whose header section is not closed by an empty line gets one CRLF
    appended (expected: ipv6-bug-abnf-3-colons, ipv6-correct-abnf-2-colons);
  * a member whose Content-Length differs from the length of its (CRLF) body gets
    the real length written in (expected: ipv6-in-sdp, mult-ip-in-sdp,
    ipv4-mapped-ipv6).
The script prints every repair it makes and fails if the set of repaired members
is not the expected one, so a different archive cannot slip through unnoticed.
"""

import argparse
import base64
import binascii
import gzip
import html
import io
import os
import re
import sys
import tarfile
import zlib

BEGIN = "-- BEGIN MESSAGE ARCHIVE --"
END = "-- END MESSAGE ARCHIVE --"

# Running header of an RFC page: "RFC NNNN", a title and a date, separated by runs of spaces.
HEADER_RE = re.compile(r"^RFC \d{4} {2,}\S.*\S {2,}[A-Z][a-z]+ \d{4}$")
# Footer of an RFC page: author(s), category, "[Page N]".
FOOTER_RE = re.compile(r"^\S.*\s\[Page \d+\]$")
B64_RE = re.compile(r"^[A-Za-z0-9+/]+={0,2}$")

EXPECTED_5118_TERMINATED = {"ipv6-bug-abnf-3-colons", "ipv6-correct-abnf-2-colons"}
EXPECTED_5118_LENGTH_FIXED = {"ipv6-in-sdp", "mult-ip-in-sdp", "ipv4-mapped-ipv6"}


def read_rfc_text(path):
    with open(path, "rb") as f:
        text = f.read().decode("utf-8", errors="replace")
    if re.search(r"<html|<pre|<p[ >]", text, re.IGNORECASE):
        # An HTML rendering of the RFC: keep the text, drop the markup.
        text = re.sub(r"<[^>]*>", "", text)
        text = html.unescape(text)
    return text


def archive_base64(text, source):
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    starts = [i for i, l in enumerate(lines) if l.strip() == BEGIN]
    if len(starts) != 1:
        sys.exit(f"{source}: expected one '{BEGIN}' line, found {len(starts)}")
    start = starts[0]
    try:
        end = next(i for i in range(start + 1, len(lines)) if lines[i].strip() == END)
    except StopIteration:
        sys.exit(f"{source}: no '{END}' line after the archive start")
    chunks = []
    for n, raw in enumerate(lines[start + 1 : end], start=start + 2):
        line = raw.replace("\f", "").strip()
        if not line or HEADER_RE.match(line) or FOOTER_RE.match(line):
            continue
        if not B64_RE.match(line):
            sys.exit(f"{source}:{n}: unexpected line inside the archive: {raw!r}")
        chunks.append(line)
    return "".join(chunks)


def archive_members(text, source):
    try:
        packed = base64.b64decode(archive_base64(text, source), validate=True)
    except binascii.Error as e:
        sys.exit(f"{source}: bad base64: {e}")
    # gzip checks its CRC32 and length trailer: a corrupted transcription fails here.
    try:
        tar_bytes = gzip.decompress(packed)
    except (OSError, EOFError, zlib.error) as e:
        sys.exit(f"{source}: the archive does not decompress ({e}); the base64 text is damaged")
    members = {}
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        for m in tar.getmembers():
            if not m.isfile():
                continue
            name = os.path.basename(m.name)
            if not name or name in members:
                sys.exit(f"{source}: odd or duplicate archive member {m.name!r}")
            members[name] = tar.extractfile(m).read()
    return members


def fix_5118(name, data, log):
    """Returns the wire form of one RFC 5118 archive member and records what changed."""
    if b"\r" in data:
        sys.exit(f"rfc5118 {name}: expected bare LF line endings, found CR")
    data = data.replace(b"\n", b"\r\n")
    if b"\r\n\r\n" not in data:
        data += b"\r\n"
        log.setdefault("terminated", set()).add(name)
    head_end = data.index(b"\r\n\r\n") + 4
    body_len = len(data) - head_end
    head = data[:head_end]
    m = re.search(rb"(?im)^(content-length|l)[ \t]*:[ \t]*(\d+)[ \t]*\r$", head)
    if m and int(m.group(2)) != body_len:
        old = int(m.group(2))
        head = head[: m.start(2)] + str(body_len).encode() + head[m.end(2) :]
        log.setdefault("length", set()).add(name)
        print(f"  rfc5118/{name}.dat: Content-Length {old} -> {body_len} (CRLF body length)")
    elif not m and body_len:
        sys.exit(f"rfc5118 {name}: body without Content-Length")
    return head + data[head_end:]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("rfc4475")
    ap.add_argument("rfc5118")
    ap.add_argument("--out", default=here)
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()

    outputs = {}
    for name, data in archive_members(read_rfc_text(args.rfc4475), args.rfc4475).items():
        outputs[os.path.join("rfc4475", name)] = data

    log = {}
    for name, data in archive_members(read_rfc_text(args.rfc5118), args.rfc5118).items():
        outputs[os.path.join("rfc5118", name + ".dat")] = fix_5118(name, data, log)
    for name in sorted(log.get("terminated", ())):
        print(f"  rfc5118/{name}.dat: added the CRLF that closes the header section")
    if log.get("terminated", set()) != EXPECTED_5118_TERMINATED:
        sys.exit(f"unexpected set of unterminated RFC 5118 messages: {log.get('terminated')}")
    if log.get("length", set()) != EXPECTED_5118_LENGTH_FIXED:
        sys.exit(f"unexpected set of RFC 5118 Content-Length fixes: {log.get('length')}")

    differ = 0
    for rel, data in sorted(outputs.items()):
        path = os.path.join(args.out, rel)
        if args.check:
            try:
                with open(path, "rb") as f:
                    same = f.read() == data
            except FileNotFoundError:
                same = False
            if not same:
                print(f"DIFFERS: {rel}")
                differ += 1
        else:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
    if args.check:
        if differ:
            sys.exit(f"{differ} of {len(outputs)} files differ")
        print(f"all {len(outputs)} files match the RFC archives")
    else:
        print(f"wrote {len(outputs)} files under {args.out}")


if __name__ == "__main__":
    main()
