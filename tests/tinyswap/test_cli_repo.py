"""`tinyswap repo init|add|publish|rotate|status` end to end with keys from `tinyswap keygen`, a
device client reading the folder it writes, and refusals as one `tinyswap: error:` line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tinyswap.cli import main
from tinyswap.commands.repo import ROLE_NAMES
from tinyswap.update_client import DirectoryTransport, Role, UpdateClient

from tests.repository_cases import packages


@pytest.fixture()
def keys(tmp_path) -> dict[str, str]:
    out = {}
    for name in ("root", "root2", "targets", "snapshot", "timestamp", "new"):
        assert main(["keygen", "-o", str(tmp_path / "keys" / name)]) == 0
        out[name] = str(tmp_path / "keys" / name / "signing_key.pem")
    return out


def init(tmp_path: Path, keys: dict[str, str], *extra: str) -> int:
    return main(["repo", "init", str(tmp_path / "repo"), "--root-key", keys["root"], "--root-key", keys["root2"],
                 "--root-threshold", "2", "--targets-key", keys["targets"], "--snapshot-key", keys["snapshot"],
                 "--timestamp-key", keys["timestamp"], *extra])


def test_init_add_publish_rotate_and_a_device_reads_the_result(tmp_path, keys, capsys) -> None:
    assert init(tmp_path, keys, "--expires", "timestamp=12h") == 0
    assert "root v1, targets v1, snapshot v1, timestamp v1 (published)" in capsys.readouterr().out
    pkg = tmp_path / "A2.tsap"
    pkg.write_bytes(packages()["A2"])
    repo_dir = str(tmp_path / "repo")
    assert main(["repo", "add", repo_dir, str(pkg), "--key", keys["targets"]]) == 0
    assert "listed    A-2.tsap: A" in capsys.readouterr().out
    assert main(["repo", "status", repo_dir]) == 0
    assert "NOT published" in capsys.readouterr().out
    assert main(["repo", "publish", repo_dir, "--snapshot-key", keys["snapshot"],
                 "--timestamp-key", keys["timestamp"]]) == 0
    assert "timestamp v2 (published)" in capsys.readouterr().out
    client = UpdateClient.provision(tmp_path / "dev", (tmp_path / "repo" / "metadata" / "1.root.json").read_bytes(),
                                    DirectoryTransport(repo_dir))
    assert client.download(client.refresh().newest()["A"]) == packages()["A2"]
    # Rotate the timestamp key (a public old key is enough), publish with the new one.
    assert main(["repo", "rotate", repo_dir, "--role", "timestamp", "--old-key",
                 keys["timestamp"].replace(".pem", ".pub.pem"), "--new-key", keys["new"],
                 "--root-key", keys["root"], "--root-key", keys["root2"]]) == 0
    assert "root v2 revokes the old key" in capsys.readouterr().out
    assert main(["repo", "publish", repo_dir, "--snapshot-key", keys["snapshot"], "--timestamp-key", keys["new"]]) == 0
    assert client.refresh().root_version == 2


@pytest.mark.parametrize("case", ["wrong key", "missing key", "not a repository", "bad expires", "threshold",
                                  "root threshold"])
def test_refusals_are_one_line_and_exit_2(tmp_path, keys, capsys, case: str) -> None:
    repo_dir = str(tmp_path / "repo")
    if case == "bad expires":
        status = init(tmp_path, keys, "--expires", "weekly=1d")
        expected = "ROLE=DURATION"
    elif case == "threshold":
        status = main(["repo", "init", repo_dir, "--root-key", keys["root"], "--root-threshold", "2",
                       "--targets-key", keys["targets"], "--snapshot-key", keys["snapshot"],
                       "--timestamp-key", keys["timestamp"]])
        expected = "root threshold 2"
    else:
        assert init(tmp_path, keys) == 0
        capsys.readouterr()
        if case == "wrong key":
            status = main(["repo", "publish", repo_dir, "--snapshot-key", keys["targets"],
                           "--timestamp-key", keys["timestamp"]])
            expected = "is not a snapshot key of root v1"
        elif case == "missing key":
            status = main(["repo", "publish", repo_dir, "--snapshot-key", str(tmp_path / "nokey.pem"),
                           "--timestamp-key", keys["timestamp"]])
            expected = "nokey.pem"
        elif case == "root threshold":
            status = main(["repo", "rotate", repo_dir, "--role", "targets", "--old-key", keys["targets"],
                           "--new-key", keys["new"], "--root-key", keys["root"]])
            expected = "must be signed by 2 root key(s) of root v1; 1 given"
        else:
            status = main(["repo", "status", str(tmp_path)])
            expected = "is not an adapter repository"
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("tinyswap: error: ") and err.count("\n") == 1 and expected in err


def test_the_parser_role_names_are_the_role_enum() -> None:
    assert ROLE_NAMES == tuple(r.value for r in Role)
