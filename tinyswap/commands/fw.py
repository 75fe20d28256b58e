"""`tinyswap firmware` and `tinyswap fw apply`: the device install code, as files and run on the host.

`firmware -o DIR [--bundle B]` writes the static C sources (tinyswap_fw.h/.c) and, for a bundle,
its slot layout (tinyswap_layout.h/.c). `fw apply BUNDLE PACKAGE --key PUB.pem --slot N --image
IN -o OUT` installs a package into a model image offline by running the bundle's C code on the
host (tinyswap.export.fw_host): OUT equals the image the Python swap manager writes. A refused
package exits with the C status name and writes nothing.

The compiler and the host harness are imported inside the commands only (the command line's
layer rule).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinyswap.errors import InputFileError, TinySwapError
from tinyswap.files import read_bytes


def _slotmap(bundle: str):  # -> SlotMap
    from tinyswap.slotmap import SlotMap, SlotMapError

    path = Path(bundle) / "slotmap.json"
    if not path.is_file():
        raise InputFileError(bundle, "not a bundle directory (no slotmap.json)", "bundle")
    try:
        return SlotMap.load(path)
    except SlotMapError as exc:
        raise TinySwapError(f"{path}: {exc}") from None


def cmd_firmware(args: argparse.Namespace) -> int:
    from tinyswap.export.firmware import write_firmware

    smap = _slotmap(args.bundle) if args.bundle else None
    if smap is not None and not smap.slots:
        raise TinySwapError(f"{args.bundle}: the bundle has no slots; there is nothing to install into")
    files = write_firmware(args.out, smap)
    for path in (files.header, files.source, files.layout_header, files.layout_source):
        if path is not None:
            print(f"wrote {path}")
    return 0


def cmd_fw_apply(args: argparse.Namespace) -> int:
    from tinyswap.export.fw_host import FwError, apply_offline
    from tinyswap.keys import KeyAlgorithm, load_public_key

    smap = _slotmap(args.bundle)
    key = load_public_key(args.key, KeyAlgorithm.ED25519, "signer public key")
    package = read_bytes(args.package, "adapter package")
    image = read_bytes(args.image, "model image")
    if not 0 <= args.slot < smap.num_slots:
        raise TinySwapError(f"--slot {args.slot}: the bundle has slots 0..{smap.num_slots - 1}")
    try:
        out = apply_offline(smap, image, package, [key], args.slot)  # type: ignore[list-item]
    except FwError as exc:
        raise TinySwapError(f"{args.package}: {exc}") from None
    Path(args.out).write_bytes(out)
    print(f"wrote {args.out} (slot {args.slot})")
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """`firmware` and `fw apply` (called by `tinyswap.cli.build_parser`)."""
    fwsrc = sub.add_parser("firmware", help="write the device install code (tinyswap_fw.h/.c) and, with --bundle, "
                           "the bundle's slot layout (tinyswap_layout.h/.c)")
    fwsrc.add_argument("-o", "--out", required=True, metavar="DIR")
    fwsrc.add_argument("--bundle", metavar="BUNDLE_DIR", help="also write this bundle's tinyswap_layout.h/.c")
    fwsrc.set_defaults(func=cmd_firmware)

    fw = sub.add_parser("fw", help="run the bundle's device install code on the host")
    fw_sub = fw.add_subparsers(dest="fw_command", required=True)
    apply = fw_sub.add_parser("apply", help="install a package into a model image offline through the device C "
                              "code (needs a C compiler and cffi); OUT equals the Python swap manager's image")
    apply.add_argument("bundle", metavar="BUNDLE_DIR")
    apply.add_argument("package", metavar="PACKAGE")
    apply.add_argument("--key", required=True, metavar="SIGNER.pub.pem", help="the trusted signer's Ed25519 public key")
    apply.add_argument("--slot", required=True, type=int, metavar="N")
    apply.add_argument("--image", required=True, metavar="IN.tflite", help="the model image to install into")
    apply.add_argument("-o", "--out", required=True, metavar="OUT.tflite")
    apply.set_defaults(func=cmd_fw_apply)


__all__ = ["add_parsers", "cmd_firmware", "cmd_fw_apply"]
