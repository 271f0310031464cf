"""Command-line front end (DESIGN.md "Command-line contract"). No business logic lives here.

Exit codes: 0 done, 1 failed (or ``check`` found an error/warning), 2 usage error.
Errors go to stderr, one line each, naming the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from app import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


# C0 and C1 controls (and DEL), except newline and tab: a hostile disc can put terminal escape
# sequences (window title, clipboard writes, colours) into names and File IDs.
_CONTROLS = {c: f"\\x{c:02x}" for c in [*range(0x20), *range(0x7F, 0xA0)] if c not in (9, 10)}


def safe_text(text: str) -> str:
    """Text for a terminal: control characters shown escaped (``\\x1b``), never raw."""
    return text.translate(_CONTROLS)


def _err(msg: str) -> None:
    print(f"discbridge: {safe_text(msg)}", file=sys.stderr)


def _yyyymmdd(value: str) -> str:
    import datetime as _dt

    try:
        _dt.datetime.strptime(value, "%Y%m%d")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{value!r} is not a date YYYYMMDD") from exc
    return value


def _fileset_id(value: str) -> str:
    """File-set ID (0004,1130): at most 16 of A–Z 0–9 _ (PS3.10 §8.2; STANDARDS.md §1)."""
    import re

    if not re.fullmatch(r"[A-Z0-9_]{1,16}", value):
        raise argparse.ArgumentTypeError(
            f"{value!r}: a File-set ID is 1 to 16 of A-Z, 0-9 and _ (it is the disc label)")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="discbridge",
        description="Read any DICOM CD, DVD, USB stick or .iso; write conformant DICOM media.",
    )
    p.add_argument("--version", action="version", version=f"DiscBridge {__version__}")
    p.add_argument("--self-test", action="store_true",
                   help="end-to-end check of this installed or frozen build (offscreen)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    o = sub.add_parser("open", help="open the GUI on a medium")
    o.add_argument("path", metavar="PATH")
    o.add_argument("--screenshot", metavar="PNG", type=Path,
                   help="load, wait for the tree and thumbnails, save a PNG of the window, exit")
    d = sub.add_parser("demo", help="the GUI on the built-in sample disc")
    d.add_argument("--screenshot", metavar="PNG", type=Path)

    ls = sub.add_parser("ls", help="the patient/study/series/instance tree (no image file opened)")
    ls.add_argument("path", metavar="PATH")
    ls.add_argument("--json", action="store_true", help="machine-readable output")

    c = sub.add_parser("check", help="deep validation: every file's header is read")
    c.add_argument("path", metavar="PATH")
    c.add_argument("--json", action="store_true")
    c.add_argument("--profile", metavar="P", help="application profile to check against")

    e = sub.add_parser("export", help="write a conformant medium from one or more sources")
    e.add_argument("sources", nargs="+", metavar="SRC", type=Path)
    e.add_argument("--to", dest="dest", metavar="DEST", type=Path)
    e.add_argument("--media", choices=["cd", "dvd", "dvd-dl", "bd", "usb"])
    e.add_argument("--profile", metavar="P")
    e.add_argument("--icons", action="store_true")
    e.add_argument("--fileset-id", metavar="ID", type=_fileset_id)
    e.add_argument("--institution", metavar="TEXT")
    e.add_argument("--contact", metavar="TEXT")
    e.add_argument("--span", action="store_true")
    e.add_argument("--force", action="store_true")
    e.add_argument("--on-id-clash", choices=["error", "separate"], default="error")
    e.add_argument("--study-date", metavar="YYYYMMDD", type=_yyyymmdd)
    e.add_argument("--iso", metavar="FILE", type=Path)
    e.add_argument("--burn", metavar="DEVICE")
    e.add_argument("--no-verify", action="store_true")
    e.add_argument("--report", metavar="FILE", type=Path)
    return p


def _write_json(obj: object) -> None:
    """Write JSON as UTF-8 bytes (RFC 8259), whatever the console's encoding.

    One write: json.dump() would make a call per token (600,000 on a 20,000-image disc).
    File names that are not valid UTF-8 reach us as lone surrogates (PEP 383); they are written
    as JSON ``\\udcXX`` escapes, which ``os.fsencode`` maps back to the bytes on the medium.
    """
    data = json.dumps(obj, ensure_ascii=False).encode("utf-8", "backslashreplace") + b"\n"
    sys.stdout.flush()
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()



def cmd_ls(args: argparse.Namespace) -> int:
    from app.core.errors import DiscBridgeError
    from app.core.medium.reader import open_medium
    from app.core.medium.tree_text import format_tree

    try:
        medium = open_medium(args.path)
    except DiscBridgeError as exc:
        _err(str(exc))
        return EXIT_FAIL
    if args.json:
        _write_json(medium.to_dict())
    else:
        print(safe_text(format_tree(medium)))
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    from app.core.errors import DiscBridgeError
    from app.core.medium.check import check_medium
    from app.core.medium.reader import open_medium

    try:
        medium = open_medium(args.path)
        problems = check_medium(medium, profile=args.profile)
    except DiscBridgeError as exc:
        _err(str(exc))
        return EXIT_FAIL
    except ValueError as exc:  # unknown profile
        _err(str(exc))
        return EXIT_USAGE
    if args.json:
        out = medium.to_dict()
        out["problems"] = [p.to_dict() for p in problems]
        out["profile"] = args.profile
        _write_json(out)
    else:
        n = sum(1 for _ in medium.instances())
        print(safe_text(f"{medium.root}: {len(medium.patients)} patient(s), {n} instance(s)"))
        for p in problems:
            print(safe_text(f"  {p}"))
        if not problems:
            print("  conformant: no errors, no warnings")
    bad = any(p.severity in ("error", "warning") for p in problems)
    return EXIT_FAIL if bad else EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from app.core.errors import DiscBridgeError
    from app.core.export.engine import run_export
    from app.core.export.options import ExportOptions
    from app.core.jobs import Cancelled, CancelToken, Progress

    if args.dest is None and args.iso is None and args.burn is None:
        _err("export needs a destination: --to DEST, --iso FILE or --burn DEVICE")
        return EXIT_USAGE
    opts = ExportOptions(
        sources=list(args.sources), dest=args.dest, media=args.media, profile=args.profile,
        icons=args.icons, fileset_id=args.fileset_id, institution=args.institution,
        contact=args.contact, span=args.span, force=args.force, on_id_clash=args.on_id_clash,
        study_date=args.study_date, iso=args.iso, burn=args.burn, verify=not args.no_verify,
        report=args.report,
    )
    token = CancelToken()
    tty = sys.stderr.isatty()
    last_phase = [""]

    def progress(p: Progress) -> None:
        if p.phase != last_phase[0]:
            if tty and last_phase[0]:
                sys.stderr.write("\n")
            last_phase[0] = p.phase
            if not tty:
                print(safe_text(f"[{p.phase}] {p.message}").rstrip(), file=sys.stderr)
        if tty:
            frac = p.fraction
            pct = f"{frac * 100:5.1f}%" if frac is not None else "  ...  "
            sys.stderr.write(f"\r[{p.phase}] {pct} {p.done_files}/{p.total_files} files"
                             f" {safe_text(p.message)[:40]:40s}")
            sys.stderr.flush()

    result: dict[str, object] = {}
    done = threading.Event()

    def work() -> None:
        try:
            result["report"] = run_export(opts, progress=progress, cancel=token)
        except BaseException as exc:  # handed to the main thread below
            result["error"] = exc
        finally:
            done.set()

    threading.Thread(target=work, name="export", daemon=True).start()
    # Wait on an Event, never on Thread.join()/is_alive(): after a join interrupted by Ctrl-C,
    # CPython 3.11/3.12 may report a running thread as stopped, and we would exit mid-write.
    interrupted = False
    while not done.is_set():
        try:
            done.wait(0.2)
        except KeyboardInterrupt:
            if interrupted:
                _err("still cleaning up; the destination will be left as it was")
            elif token.cancel():
                _err("cancelling: removing what was written ...")
            else:
                _err("the burn has started and cannot be cancelled without ruining the disc")
            interrupted = True
    if tty and last_phase[0]:
        sys.stderr.write("\n")
    err = result.get("error")
    if isinstance(err, Cancelled):
        _err("export cancelled; the destination was left as it was")
        return EXIT_FAIL
    if isinstance(err, DiscBridgeError):
        _err(str(err))
        return EXIT_FAIL
    if err is not None:
        raise err  # type: ignore[misc]
    report = result["report"]
    for line in report.summary_lines():  # type: ignore[attr-defined]
        print(safe_text(line))
    return EXIT_OK if report.ok else EXIT_FAIL  # type: ignore[attr-defined]


def cmd_gui(args: argparse.Namespace) -> int:
    from app.gui.application import run_gui

    path = getattr(args, "path", None)
    demo = args.command == "demo"
    return run_gui(path=path, demo=demo, screenshot=getattr(args, "screenshot", None))


def _tolerant_console() -> None:
    """Never die on a name the console cannot encode (Windows cp1252, an ASCII pipe)."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            try:
                reconfigure(errors="backslashreplace")
            except (ValueError, OSError):
                pass


def _quiet_libraries() -> None:
    """pydicom warns (stderr) about every odd value on a disc: the reader reports problems itself.

    DISCBRIDGE_DEBUG=1 keeps the libraries' warnings and logs.
    """
    import logging
    import os
    import warnings

    if os.environ.get("DISCBRIDGE_DEBUG"):
        return
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    warnings.filterwarnings("ignore", module=r"pylibjpeg|openjpeg|libjpeg|rle|pycdlib")
    logging.getLogger("pydicom").setLevel(logging.CRITICAL)


def main(argv: Sequence[str] | None = None) -> int:
    _tolerant_console()
    _quiet_libraries()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 2 on usage errors, 0 for --help/--version
        return int(exc.code or 0)
    if args.self_test:
        from app.selftest import run_self_test

        return run_self_test()
    if args.command is None:
        args.command = "gui"
    handlers = {"ls": cmd_ls, "check": cmd_check, "export": cmd_export,
                "open": cmd_gui, "demo": cmd_gui, "gui": cmd_gui}
    try:
        return handlers[args.command](args)
    except KeyboardInterrupt:
        _err("interrupted")
        return EXIT_FAIL
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a bug of ours: one line for the user, the traceback in the log
        _err(f"unexpected error: {type(exc).__name__}: {exc} (details: {_log_traceback()})")
        return EXIT_FAIL


def _log_traceback() -> str:
    """Append the current exception's traceback to the log folder; return the log's path."""
    import datetime
    import traceback

    from app.core.appdirs import user_log_dir

    try:
        folder = user_log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "cli-errors.log"
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"--- {datetime.datetime.now().isoformat()} DiscBridge {__version__} "
                     f"argv={sys.argv!r}\n{traceback.format_exc()}\n")
        return str(path)
    except OSError:
        return "the log folder is not writable"
