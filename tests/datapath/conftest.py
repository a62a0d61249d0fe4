import pytest

from tests.fixtures.fleet import write_plan


@pytest.fixture
def files_plan(tmp_path):
    """A plan with one files dataset (``site``) and keyrings created for it."""
    from backup_format.keyring import create_keyring
    from plan.loader import load_plan

    path = write_plan(tmp_path / "plan")
    (tmp_path / "plan" / "keys").mkdir(mode=0o700)
    create_keyring(tmp_path / "plan" / "keys" / "content.keyring", "content")
    create_keyring(tmp_path / "plan" / "keys" / "offsite.keyring", "offsite")
    src = tmp_path / "plan" / "src" / "site"
    (src / "img").mkdir()
    (src / "img" / "a.bin").write_bytes(bytes(range(256)) * 4000)
    (src / "link").symlink_to("img/a.bin")
    return load_plan(path), src
