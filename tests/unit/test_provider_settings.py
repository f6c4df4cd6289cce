"""The local provider's settings in its own table, ``[providers.local]``, checked by its own
model; the old top-level keys still work, with a warning naming the new key."""

from __future__ import annotations

import logging
import pathlib

import pytest

from opennimble import config
from opennimble.providers import base, local_confine, local_settings, slurm


def settings_of(tmp_path: pathlib.Path, toml: str) -> config.Settings:
    path = tmp_path / "opennimble.toml"
    path.write_text(toml)
    return config.load(str(path), data_dir=tmp_path / "data")


def local_of(settings: config.Settings) -> local_settings.LocalSettings:
    return local_settings.table(
        settings, "local", local_settings.LocalSettings, local_settings.LOCAL_KEYS
    )


def test_the_table_holds_the_local_providers_settings(tmp_path: pathlib.Path) -> None:
    settings = settings_of(
        tmp_path,
        '[providers.local]\nmax_desktops = 3\ngeometry = "800x600"\nmax_file_size = 10\n'
        'desktops_dir = "/srv/desktops"\n[providers.local.recipes.ami-0abc]\n'
        'applications = ["xterm"]\n',
    )
    own = local_of(settings)
    assert (own.max_desktops, own.geometry, own.max_file_size) == (3, "800x600", 10)
    assert own.runtime_dir(settings) == pathlib.Path("/srv/desktops/desktops")
    assert own.resolved_homes_dir(settings) == pathlib.Path("/srv/desktops/homes")
    assert own.recipes["ami-0abc"].applications == ["xterm"]


def test_defaults_without_a_table(tmp_path: pathlib.Path) -> None:
    settings = settings_of(tmp_path, "")
    own = local_of(settings)
    assert (own.max_desktops, own.max_desktops_per_owner, own.ready_timeout) == (16, 4, 60.0)
    assert own.runtime_dir(settings).parent == config.default_desktops_dir(settings.data_dir)
    assert own.resolved_backups_dir(settings) == settings.data_dir / "backups"


def test_old_top_level_keys_still_work_and_say_what_to_use(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_of(tmp_path, 'max_desktops = 2\ndesktop_geometry = "640x480"\n')
    with caplog.at_level(logging.WARNING, logger="opennimble.providers"):
        own = local_of(settings)
    assert (own.max_desktops, own.geometry) == (2, "640x480")
    assert "`desktop_geometry` (OPENNIMBLE_DESKTOP_GEOMETRY) is deprecated" in caplog.text
    assert "set `geometry` in the [providers.local] table" in caplog.text


def test_the_table_wins_over_an_old_key(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = settings_of(tmp_path, "max_desktops = 2\n[providers.local]\nmax_desktops = 5\n")
    with caplog.at_level(logging.WARNING, logger="opennimble.providers"):
        assert local_of(settings).max_desktops == 5
    assert "the table's value wins" in caplog.text


def test_environment_variables_set_keys_of_the_table(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENNIMBLE_PROVIDERS__LOCAL__MAX_DESKTOPS_PER_OWNER", "7")
    monkeypatch.setenv("OPENNIMBLE_PROVIDERS__LOCAL__INTERFACE", "0.0.0.0")
    monkeypatch.setenv("OPENNIMBLE_MAX_DESKTOPS", "9")  # the old variable, still read
    settings = settings_of(tmp_path, "[providers.local]\nmax_desktops_per_owner = 2\n")
    own = local_of(settings)
    assert (own.max_desktops_per_owner, own.interface, own.max_desktops) == (7, "0.0.0.0", 9)
    assert own.resolved_advertise_host() == config.hostname()


def test_errors_name_the_table_and_the_key(tmp_path: pathlib.Path) -> None:
    settings = settings_of(
        tmp_path, '[providers.local]\nmax_desktops = 0\ngeometry = "big"\ncolour = "red"\n'
    )
    with pytest.raises(config.Invalid) as raised:
        local_of(settings)
    message = str(raised.value)
    assert "setting `max_desktops` of [providers.local]: Input should be greater than" in message
    assert "setting `geometry` of [providers.local]: String should match pattern" in message
    assert "setting `colour` of [providers.local]: not a setting of the local provider" in message


def test_an_old_key_with_a_wrong_value_names_its_new_key(tmp_path: pathlib.Path) -> None:
    settings = settings_of(tmp_path, "desktop_resource_scale = 100\n")
    with pytest.raises(config.Invalid, match=r"`resource_scale` of \[providers.local\]"):
        local_of(settings)


def test_the_slurm_table_has_the_desktop_keys_but_not_the_local_ones(
    tmp_path: pathlib.Path,
) -> None:
    settings = settings_of(
        tmp_path, '[providers.slurm]\ngeometry = "1024x768"\nmax_processes = 10\n'
    )
    with pytest.raises(config.Invalid, match=r"`max_processes` of \[providers.slurm\]"):
        local_settings.table(settings, "slurm", slurm.SlurmSettings, local_settings.DESKTOP_KEYS)


def test_a_key_of_its_own_goes_on_top_of_the_tables_as_json(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENNIMBLE_PROVIDERS", '{"slurm": {"partition": "gpu"}}')
    monkeypatch.setenv("OPENNIMBLE_PROVIDERS__SLURM__GEOMETRY", "1024x768")
    settings = settings_of(tmp_path, "")
    assert settings.providers == {"slurm": {"partition": "gpu", "geometry": "1024x768"}}


def test_scratch_limits_are_settings_of_the_local_table(tmp_path: pathlib.Path) -> None:
    own = local_of(settings_of(tmp_path, ""))
    assert own.scratch_limits() == local_confine.ScratchLimits(2048 * 2**20, 100_000)
    own = local_of(settings_of(tmp_path, "[providers.local]\nscratch_size = 64\n"))
    assert own.scratch_limits().size == 64 * 2**20
    with pytest.raises(config.Invalid, match=r"`scratch_files` of \[providers.local\]"):
        local_of(settings_of(tmp_path, "[providers.local]\nscratch_files = 10\n"))


@pytest.mark.parametrize("target", ["/tmp", "/var/tmp", "/dev/shm"])
def test_desktop_directories_in_a_scratch_directory_are_refused(target: str) -> None:
    """Every desktop has its own /tmp, /var/tmp and /dev/shm: homes or runtime files in the
    host's would be out of its desktops' sight."""
    inside = pathlib.Path(target) / "opennimble" / "homes"
    with pytest.raises(base.PermanentFailure) as failure:
        local_confine.check_scratch_targets(pathlib.Path("/var/lib/opennimble"), inside)
    assert failure.value.message == (
        f"{inside} is in {target}, which every desktop has a private one of (scratch_size): "
        "its desktops would not see it; set desktops_dir and homes_dir of [providers.local] "
        f"to directories outside {target}"
    )
    local_confine.check_scratch_targets(pathlib.Path("/var/lib/opennimble/homes"))


def test_home_size_is_a_setting_of_the_local_table(tmp_path: pathlib.Path) -> None:
    """Homes hold 10 GiB by default; 0 leaves them unbounded; a size too small for an ext4
    file system is refused, naming the key."""
    assert local_of(settings_of(tmp_path, "")).home_size == 10240
    assert local_of(settings_of(tmp_path, "[providers.local]\nhome_size = 0\n")).home_size == 0
    with pytest.raises(config.Invalid, match=r"`home_size` of \[providers.local\]: 0 "):
        local_of(settings_of(tmp_path, "[providers.local]\nhome_size = 8\n"))
