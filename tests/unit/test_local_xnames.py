"""Finding the sockets bound to X display names in /proc/net/unix (local_xnames)."""

from __future__ import annotations

import pathlib

import pytest

from opennimble.providers import desktop_job, local_xnames

TABLE = """Num       RefCount Protocol Flags    Type St Inode Path
0000000000000000: 00000002 00000000 00010000 0001 01 35391 @/tmp/.X11-unix/X0
0000000000000000: 00000002 00000000 00010000 0001 01 34124 /tmp/.X11-unix/X0
0000000000000000: 00000003 00000000 00000000 0001 03 34255 @/tmp/.X11-unix/X0
0000000000000000: 00000002 00000000 00000000 0001 07 40000 @/tmp/.X11-unix/X59535
0000000000000000: 00000002 00000000 00010000 0001 01 40001 @/tmp/.X11-unix/X1x
0000000000000000: 00000002 00000000 00010000 0001 01 40002 @/tmp/dbus-abc
0000000000000000: 00000003 00000000 00000000 0001 03 40003
"""


def test_only_abstract_x_display_names_count() -> None:
    """Listening, accepted and merely bound sockets on an abstract X name count; socket files,
    other names and unnamed sockets do not."""
    assert desktop_job.display_sockets(TABLE) == {35391: 0, 34255: 0, 40000: 59535}


def test_a_table_with_every_name_taken_leaves_none_free(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    header = TABLE.splitlines()[0]
    rows = [
        f"0000000000000000: 00000002 00000000 00000000 0001 07 {1000 + n} @/tmp/.X11-unix/X{n}"
        for n in range(local_xnames.DISPLAYS)
    ]
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "unix").write_text("\n".join([header, *rows[1:]]) + "\n")
    monkeypatch.setattr(local_xnames, "PROC", tmp_path)
    assert local_xnames.free_name() == 0  # X0 only
    assert local_xnames.free_name(avoid={0}) is None
    (tmp_path / "net" / "unix").write_text("\n".join([header, *rows]) + "\n")
    assert local_xnames.free_name() is None


def test_the_lowest_free_name_is_chosen_but_not_one_to_avoid(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    (tmp_path / "net").mkdir()
    (tmp_path / "net" / "unix").write_text(TABLE)  # X0 and X59535 are taken
    monkeypatch.setattr(local_xnames, "PROC", tmp_path)
    assert local_xnames.free_name() == 1
    assert local_xnames.free_name(avoid={1, 2}) == 3


def test_the_slurm_job_launcher_chooses_the_same_way(tmp_path: pathlib.Path) -> None:
    """The launcher in a Slurm job (standalone: no opennimble import) reads the node's table
    the same way."""
    table = tmp_path / "unix"
    table.write_text(TABLE)  # X0 and X59535 are taken
    assert desktop_job.free_display(set(), str(table)) == 1
    assert desktop_job.free_display({1, 2}, str(table)) == 3
    rows = [
        f"0000000000000000: 00000002 00000000 00000000 0001 07 {1000 + n} @/tmp/.X11-unix/X{n}"
        for n in range(desktop_job.DISPLAYS)
    ]
    table.write_text("\n".join([TABLE.splitlines()[0], *rows]) + "\n")
    assert desktop_job.free_display(set(), str(table)) is None
