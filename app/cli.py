"""Command-line front end (DESIGN.md "Command-line contract"). No business logic lives here.

Exit codes: 0 done, 1 failed (or ``check`` found an error/warning), 2 usage error.
Errors go to stderr, one line each, naming the file.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from app import __version__

EXIT_OK, EXIT_FAIL, EXIT_USAGE, EXIT_SKIPPED = 0, 1, 2, 3


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


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be a function, called only when the help is shown.

    The profile list comes from the profile table, which imports pydicom: ``--version`` or a
    usage error should not wait for that.
    """

    def format_help(self) -> str:
        if callable(self.epilog):
            self.epilog = self.epilog()
        return super().format_help()


def _examples(*commands: str) -> str:
    return "examples:\n" + "\n".join(f"  {c}" for c in commands)


def _size(nbytes: int) -> str:
    return f"{nbytes / 1e6:.1f} MB" if nbytes < 1e9 else f"{nbytes / 1e9:.3g} GB"


def _media_help(choices: Sequence[str]) -> str:
    """``--media`` help from the capacities the export checks against (devices/capacity.py)."""
    from app.core.devices.capacity import CAPACITY

    sizes = ", ".join(f"{m} {_size(CAPACITY[m])}" for m in choices if m in CAPACITY)
    free = " or ".join([*(m for m in choices if m not in CAPACITY), "no --media"])
    return f"must fit on: {sizes}; {free}: the free space"


def _profiles_epilog(command: str, examples: str) -> Callable[[], str]:
    """The "profiles:" section (then ``examples``), made from the profile table when shown."""

    def epilog() -> str:
        from app.core.dicomdir.profiles import PROFILES
        from app.core.export.options import DEFAULT_PROFILE

        width = max(map(len, PROFILES)) + 2
        lines = ["profiles (--profile NAME, in upper or lower case):"]
        lines += [f"  {name:<{width}}{p.description}" for name, p in PROFILES.items()]
        icons = [p for p in PROFILES.values() if p.icon_required]
        if command in ("export", "open"):
            if icons:
                lines.append("  always written with icons, as with --icons: " + ", ".join(
                    f"{p.name} ({p.icon_size or 64}x{p.icon_size or 64})" for p in icons))
            by_profile: dict[str, list[str]] = {}
            for media, name in DEFAULT_PROFILE.items():
                by_profile.setdefault(name, []).append("no --media" if media == "folder"
                                                       else media)
            labels = {name: ", ".join(media) for name, media in by_profile.items()}
            col = max(map(len, labels.values())) + 2
            lines += ["", "default profile by --media:"]
            lines += [f"  {label:<{col}}{name}" for name, label in labels.items()]
        else:
            if icons:
                lines.append("  an image record without an icon is a warning for: "
                             + ", ".join(p.name for p in icons))
            lines += ["  without --profile: only the keys every DICOMDIR needs are checked"]
        return "\n".join(lines) + "\n\n" + examples

    return epilog


_PATH_HELP = ("a disc's mount point (e.g. /media/cdrom), a USB stick, folder, DICOMDIR file or "
              ".iso image")
_SCREENSHOT_HELP = ("load, wait for the tree and thumbnails, save a picture of the window as PNG,"
                    " exit")


def build_parser() -> argparse.ArgumentParser:
    raw = argparse.RawDescriptionHelpFormatter
    p = _Parser(
        prog="discbridge", formatter_class=raw,
        description="Read any DICOM CD, DVD, USB stick or .iso; write conformant DICOM media.\n"
                    "Without a command, the DiscBridge window opens.",
        epilog="PATH and SRC may be a disc's mount point, a USB stick, a folder, a DICOMDIR file"
               "\nor an .iso image. Each command explains its options: discbridge COMMAND --help"
               "\n\nexit codes:\n  0  done\n  1  failed (check: an error or a warning was found)"
               "\n  2  wrong command line\n  3  export: done, with files left out as asked"
               " (--skip-unexportable)\n\n"
               + _examples("discbridge ls /media/cdrom",
                           "discbridge check patient.iso --profile STD-GEN-CD",
                           "discbridge export /media/cdrom --to /media/usb --media usb",
                           "discbridge open patient.iso"),
    )
    p.add_argument("--version", action="version", version=f"DiscBridge {__version__}",
                   help="print the DiscBridge version and exit")
    p.add_argument("--self-test", action="store_true",
                   help="check that this installation works (sample disc, decoding, window, "
                        "export), then exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands",
                           help="what to do (without one, the DiscBridge window opens)")

    o = sub.add_parser(
        "open", help="open a disc, USB stick, folder or .iso in the DiscBridge window",
        formatter_class=raw,
        description="Open the DiscBridge window on one or more media: browse their patients,\n"
                    "studies and series, view the images, export them to a new medium.\n"
                    "With --wizard-export the export wizard is driven headless (for scripts):\n"
                    "everything checked, defaults otherwise, Write; it prints 'written N files,\n"
                    "M MB, verified, T s' and exits 0 only when written and verified, else 1.",
        epilog=_profiles_epilog("open", _examples(
            "discbridge open /media/cdrom",
            "discbridge open patient.iso --screenshot patient.png",
            "discbridge open /media/cdrom /data/ct --wizard-export /media/usb --icons",
            "discbridge open /media/cdrom --wizard-export - --iso disc.iso")))
    o.add_argument("paths", nargs="+", metavar="PATH", help=_PATH_HELP)
    o.add_argument("--screenshot", metavar="PNG", type=Path,
                   help="save the window as PNG once loaded (with --wizard-export: the result page)")
    w = o.add_argument_group("headless export through the wizard")
    w.add_argument("--wizard-export", metavar="DEST",
                   help="export everything opened through the real wizard into the folder DEST")
    w.add_argument("--iso", metavar="FILE", type=Path,
                   help="with --wizard-export: write the disc image FILE instead (DEST: -)")
    w.add_argument("--media", choices=["cd", "dvd", "dvd-dl", "bd", "usb", "folder"],
                   help="with --wizard-export: the Options page's medium (default: cd)")
    w.add_argument("--profile", metavar="PROFILE",
                   help="with --wizard-export: the Options page's profile (default: by medium)")
    w.add_argument("--icons", action="store_true",
                   help="with --wizard-export: tick 'Add icons' on the Options page")
    w.add_argument("--study-date", metavar="YYYYMMDD", type=_yyyymmdd,
                   help="with --wizard-export: type this date where the summary asks for one")
    w.add_argument("--skip-unexportable", action="store_true",
                   help="with --wizard-export: tick 'Leave these files out' where offered"),
    d = sub.add_parser(
        "demo", help="open the DiscBridge window on the built-in sample disc",
        formatter_class=raw,
        description="Open the DiscBridge window on the built-in sample disc (demonstration data,\n"
                    "no real patient): try DiscBridge without a disc at hand.",
        epilog=_examples("discbridge demo", "discbridge demo --screenshot demo.png"))
    d.add_argument("--screenshot", metavar="PNG", type=Path, help=_SCREENSHOT_HELP)

    ls = sub.add_parser(
        "ls", help="list the patients, studies, series and images on a medium (quick)",
        formatter_class=raw,
        description="List what a medium holds: patients, studies, series and images, and the\n"
                    "problems found. Quick: the DICOMDIR and the file listings are read, not the\n"
                    "images (a medium without a DICOMDIR is scanned).\n"
                    "Exit code 0 when the medium could be read, even with problems; 1 when not.",
        epilog=_examples("discbridge ls /media/cdrom",
                         "discbridge ls patient.iso --json > tree.json",
                         "discbridge ls /media/usb/DICOMDIR"))
    ls.add_argument("path", metavar="PATH", help=_PATH_HELP)
    ls.add_argument("--json", action="store_true",
                    help="print the tree as JSON (UTF-8) for scripts, instead of indented text")

    c = sub.add_parser(
        "check", help="check a medium thoroughly: every file is read and matched to the DICOMDIR",
        formatter_class=raw,
        description="Check a medium deeply: every file's header is read and compared with its\n"
                    "DICOMDIR record; unreadable files, missing keys and bad icons are reported.\n"
                    "Exit code 0: no error and no warning; 1: an error or a warning was found,\n"
                    "or the medium could not be read; 2: unknown profile or wrong command line.",
        epilog=_profiles_epilog("check", _examples(
            "discbridge check /media/cdrom",
            "discbridge check patient.iso --profile STD-GEN-CD",
            "discbridge check /media/usb --profile std-gen-usb-jpeg --json > check.json")))
    c.add_argument("path", metavar="PATH", help=_PATH_HELP)
    c.add_argument("--json", action="store_true",
                   help="print the tree and the problems found as JSON (UTF-8) for scripts")
    c.add_argument("--profile", metavar="PROFILE",
                   help="also check the DICOMDIR keys and icons this profile requires (see below)")

    e = sub.add_parser(
        "export", help="write a standard DICOM disc, USB stick or .iso from one or more sources",
        formatter_class=raw,
        description="Write a standard DICOM medium (DICOMDIR, README.TXT, PAnnn folders) from one\n"
                    "or more sources: into a folder or USB stick (--to), an .iso image (--iso)\n"
                    "or onto a disc (--burn); at least one of them. Sources are never changed.\n"
                    "On an error or Ctrl-C nothing is left behind (until a burn starts). All\n"
                    "that was written is read back and compared, unless --no-verify.\n"
                    "Exit code 0: written and verified; 1: failed; 2: wrong command line;\n"
                    "3: written and verified, with files left out (--skip-unexportable).",
        epilog=_profiles_epilog("export", _examples(
            "discbridge export /media/cdrom --to /media/usb --media usb --icons \\\n"
            "      --institution \"St. Elsewhere Radiology\" --contact \"+1 555 0100\"",
            "discbridge export /data/mri --iso mri.iso --media dvd",
            "discbridge export /data/mri --burn /dev/sr0 --media dvd",
            "discbridge export /data/archive /media/cdrom --to /srv/out --media cd --span")))
    e.add_argument("sources", nargs="+", metavar="SRC", type=Path,
                   help="what to copy: one or more discs, folders, DICOMDIR files or .iso images")
    e.add_argument("--to", dest="dest", metavar="DEST", type=Path,
                   help="folder or USB stick to write into; optional with --iso or --burn")
    media = ["cd", "dvd", "dvd-dl", "bd", "usb"]
    e.add_argument("--media", choices=media, help=_media_help(media))
    e.add_argument("--profile", metavar="PROFILE",
                   help="DICOM rules the medium follows (see profiles: below); default: by --media")
    e.add_argument("--icons", action="store_true",
                   help="put small preview pictures (icons) of images and series in the DICOMDIR")
    e.add_argument("--fileset-id", metavar="ID", type=_fileset_id,
                   help="disc label (File-set ID), 1-16 of A-Z 0-9 _; default DByyyymmdd (today)")
    e.add_argument("--institution", metavar="TEXT",
                   help="your hospital or practice, printed in the medium's README.TXT")
    e.add_argument("--contact", metavar="TEXT",
                   help="phone number or e-mail for questions, printed in the medium's README.TXT")
    e.add_argument("--span", action="store_true",
                   help="if too big, spread the studies over volumes VOL01, VOL02, ... "
                        "(else: stop)")
    e.add_argument("--force", action="store_true",
                   help="replace a medium already in DEST or the --iso FILE (other files are kept)")
    e.add_argument("--on-id-clash", choices=["error", "separate"], default="error",
                   help="one Patient ID, two patients: error stops (default); separate: a new ID")
    e.add_argument("--study-date", metavar="YYYYMMDD", type=_yyyymmdd,
                   help="date for a study with no date in any of its files (else the export stops)")
    e.add_argument("--iso", metavar="FILE", type=Path,
                   help="write a disc image to FILE, to burn later (ISO 9660; UDF with --media bd)")
    e.add_argument("--burn", metavar="DEVICE",
                   help="burn onto the blank disc in this drive (e.g. /dev/sr0), then read it back")
    e.add_argument("--no-verify", action="store_true",
                   help="do not read the files and .iso back to check them (a burned disc "
                        "still is)")
    e.add_argument("--report", metavar="FILE", type=Path,
                   help="save the JSON report here (default: reports/ in DiscBridge's data folder)")
    e.add_argument("--skip-unexportable", action="store_true",
                   help="leave out what cannot go on this medium, naming each file (exit 3)")
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
    if args.profile is not None:  # an unknown profile is a usage error, as for check
        from app.core.dicomdir.profiles import get_profile

        try:
            get_profile(args.profile)
        except ValueError as exc:
            _err(str(exc))
            return EXIT_USAGE
    opts = ExportOptions(
        sources=list(args.sources), dest=args.dest, media=args.media, profile=args.profile,
        icons=args.icons, fileset_id=args.fileset_id, institution=args.institution,
        contact=args.contact, span=args.span, force=args.force, on_id_clash=args.on_id_clash,
        study_date=args.study_date, iso=args.iso, burn=args.burn, verify=not args.no_verify,
        report=args.report, skip_unexportable=args.skip_unexportable,
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
    if not report.ok:  # type: ignore[attr-defined]
        return EXIT_FAIL
    return EXIT_SKIPPED if report.skipped else EXIT_OK  # type: ignore[attr-defined]


def cmd_gui(args: argparse.Namespace) -> int:
    from app.gui.application import run_gui

    paths = list(getattr(args, "paths", None) or [])
    demo = args.command == "demo"
    wizard = None
    if getattr(args, "wizard_export", None) is not None:
        from app.gui.wizard.headless import WizardRequest

        wizard = WizardRequest(
            dest=None if args.wizard_export == "-" else Path(args.wizard_export), iso=args.iso,
            media=args.media, profile=args.profile, icons=args.icons,
            study_date=args.study_date, skip_unexportable=args.skip_unexportable,
            screenshot=args.screenshot)
        if wizard.dest is None and wizard.iso is None:
            _err("--wizard-export -: give --iso FILE (or a folder DEST)")
            return EXIT_USAGE
    elif command_uses_wizard_flags(args):
        _err("--iso, --media, --profile, --icons, --study-date and --skip-unexportable go with "
             "--wizard-export")
        return EXIT_USAGE
    return run_gui(paths=paths, demo=demo, screenshot=getattr(args, "screenshot", None),
                   wizard=wizard)


def command_uses_wizard_flags(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) not in (None, False)
               for name in ("iso", "media", "profile", "icons", "study_date",
                            "skip_unexportable"))


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
