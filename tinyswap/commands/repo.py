"""`tinyswap repo init|add|publish|rotate|status`: the adapter repository's publisher commands.

Thin: argument handling and printing; the work is `tinyswap.export.repository`, imported inside
each function so that the command line loads the compiler only when a repo command runs.
"""

from __future__ import annotations

import argparse
from datetime import timedelta
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from tinyswap.export.repository import RepositorySummary
    from tinyswap.update_client import Role

#: The values of `tinyswap.update_client.Role`, spelled out so that building the parser (every
#: `tinyswap` run) does not import python-tuf; tests/tinyswap/test_cli_repo.py checks they agree.
ROLE_NAMES = ("root", "targets", "snapshot", "timestamp")


def _keys(paths: Sequence[str] | None) -> list[Ed25519PrivateKey]:
    from tinyswap.export.repository import load_signing_key

    return [load_signing_key(p) for p in paths or ()]


def _print_summary(summary: RepositorySummary) -> None:
    versions = ", ".join(f"{role.value} v{v}" for role, v in summary.versions.items())
    state = "published" if summary.published else "NOT published: run `tinyswap repo publish`"
    print(f"repository {summary.directory}: {versions} ({state})")
    for t in summary.targets:
        print(f"  {t.path:<32} {t.name} {t.version} (sequence {t.sequence}) {t.length} bytes sha256 {t.sha256[:16]}...")


def _lifetime_changes(items: Sequence[str] | None) -> dict[Role, timedelta]:
    from tinyswap.export.errors import PublishError
    from tinyswap.export.repository import Role, parse_duration

    changes: dict[Role, timedelta] = {}
    for item in items or ():
        role, sep, duration = item.partition("=")
        try:
            if not sep:
                raise ValueError(item)
            changes[Role(role.strip())] = parse_duration(duration)
        except ValueError:
            raise PublishError(f"--expires {item!r}: expected ROLE=DURATION with ROLE one of "
                               f"{', '.join(ROLE_NAMES)} (e.g. timestamp=1d)") from None
    return changes


def cmd_init(args: argparse.Namespace) -> int:
    from tinyswap.export.repository import Lifetimes, Role, init_repository

    keys = {Role.ROOT: _keys(args.root_key), Role.TARGETS: _keys(args.targets_key),
            Role.SNAPSHOT: _keys(args.snapshot_key), Role.TIMESTAMP: _keys(args.timestamp_key)}
    lifetimes = Lifetimes().with_changes(_lifetime_changes(args.expires))
    summary = init_repository(args.dir, keys, thresholds={Role.ROOT: args.root_threshold}, lifetimes=lifetimes)
    _print_summary(summary)
    print(f"devices are provisioned with {summary.directory / 'metadata' / '1.root.json'} (the trust anchor)")
    return 0


def cmd_add(args: argparse.Namespace) -> int:
    from tinyswap.export.repository import add_package

    listed = add_package(args.dir, args.package, _keys(args.key))
    print(f"listed    {listed.path}: {listed.name} {listed.version} (sequence {listed.sequence}), {listed.length} bytes; "
          f"run `tinyswap repo publish` to make it visible")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from tinyswap.export.repository import publish

    _print_summary(publish(args.dir, _keys(args.snapshot_key), _keys(args.timestamp_key)))
    return 0


def cmd_rotate(args: argparse.Namespace) -> int:
    from tinyswap.export.repository import Role, load_any_key, load_signing_key, rotate_key

    role = Role(args.role)
    summary = rotate_key(args.dir, role, load_any_key(args.old_key), load_signing_key(args.new_key),
                         _keys(args.root_key), role_keys=_keys(args.key))
    print(f"rotated   the {role.value} key: root v{summary.versions[Role.ROOT]} revokes the old key")
    _print_summary(summary)
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from tinyswap.export.repository import summary

    _print_summary(summary(args.dir))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """The `repo` subcommand group (called by `tinyswap.cli.build_parser`)."""
    repo = sub.add_parser("repo", help="publish adapter packages in a TUF repository (roles, expiry, key rotation)")
    cmds = repo.add_subparsers(dest="repo_command", required=True)
    init = cmds.add_parser("init", help="create root, targets, snapshot and timestamp metadata in DIR")
    init.add_argument("dir", metavar="DIR")
    for role in ROLE_NAMES:
        init.add_argument(f"--{role}-key", action="append", required=True, metavar="KEY.pem",
                          help=f"{role} role private key (tinyswap keygen); repeat for several")
    init.add_argument("--root-threshold", type=int, default=1, metavar="N",
                      help="root signatures needed (default 1; use 2 or more with several --root-key)")
    init.add_argument("--expires", action="append", metavar="ROLE=DURATION",
                      help="metadata lifetime, e.g. timestamp=1d (defaults root=365d targets=90d snapshot=7d "
                      "timestamp=1d)")
    init.set_defaults(func=cmd_init)

    add = cmds.add_parser("add", help="list a .tsap package (new targets version; publish to make it visible)")
    add.add_argument("dir", metavar="DIR")
    add.add_argument("package", metavar="PACKAGE.tsap")
    add.add_argument("--key", action="append", required=True, metavar="TARGETS.pem", help="targets role key(s)")
    add.set_defaults(func=cmd_add)

    pub = cmds.add_parser("publish", help="sign a new snapshot and timestamp naming the newest targets")
    pub.add_argument("dir", metavar="DIR")
    pub.add_argument("--snapshot-key", action="append", required=True, metavar="KEY.pem")
    pub.add_argument("--timestamp-key", action="append", required=True, metavar="KEY.pem")
    pub.set_defaults(func=cmd_publish)

    rot = cmds.add_parser("rotate", help="replace a role's key: a new root signed by the old and new root keys")
    rot.add_argument("dir", metavar="DIR")
    rot.add_argument("--role", required=True, choices=ROLE_NAMES)
    rot.add_argument("--old-key", required=True, metavar="OLD.pem", help="the key to revoke (private or public PEM)")
    rot.add_argument("--new-key", required=True, metavar="NEW.pem", help="the replacing private key")
    rot.add_argument("--root-key", action="append", metavar="ROOT.pem",
                     help="root keys that sign the new root (a threshold of the current root's)")
    rot.add_argument("--key", action="append", metavar="KEY.pem",
                     help="other keys of the rotated role, when its threshold needs more than the new key")
    rot.set_defaults(func=cmd_rotate)

    status = cmds.add_parser("status", help="versions of each role and the packages listed")
    status.add_argument("dir", metavar="DIR")
    status.set_defaults(func=cmd_status)


__all__ = ["ROLE_NAMES", "add_parsers", "cmd_add", "cmd_init", "cmd_publish", "cmd_rotate", "cmd_status"]
