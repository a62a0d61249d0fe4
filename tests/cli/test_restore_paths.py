"""Restore paths are resolved where they were typed, and bad ones are refused before any
message is sent; a worker refuses a path it cannot honour on its host."""


import pytest
from click.testing import CliRunner

from drfleet.cli.main import main
from tests.fixtures.fleet import write_plan
from tests.fixtures.plans import dataset, policy


def _plan(tmp_path, restore_under: str = ""):
    src = tmp_path / "plan" / "src" / "site"
    src.mkdir(parents=True, exist_ok=True)
    (src / "index.html").write_text("hello\n")
    datasets = dataset("site", policy("hourly", "hourly", "24 hours"), source=src)
    if restore_under:  # a whole `restore_under: ...` line
        datasets = datasets.replace("  policies:", f"  {restore_under}\n  policies:")
    return write_plan(tmp_path / "plan", datasets=datasets)


@pytest.fixture
def backed_up(tmp_path, redis_url, monkeypatch):
    """A plan whose dataset ``site`` has one backup (taken here), and the messages the CLI sends."""
    from drfleet.backup_format.keyring import create_keyring
    from drfleet.datapath.backup import run_backup
    from drfleet.plan.loader import load_plan

    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)

    def make(restore_under: str = ""):
        path = _plan(tmp_path, restore_under)
        keys = tmp_path / "plan" / "keys"
        keys.mkdir(mode=0o700, exist_ok=True)
        if not (keys / "content.keyring").exists():
            create_keyring(keys / "content.keyring", "content")
        backup_id = run_backup(load_plan(path), "site", "hourly", region="eu-central")["backup_id"]
        return path, backup_id

    sent = []

    class Done:
        id = "t1"

        def ready(self):
            return True

        def get(self, propagate=True):
            return {"status": "restored"}

    monkeypatch.setattr("drfleet.cli.data_cmds.send", lambda task, **kw: sent.append(kw["kwargs"]) or Done())
    return make, sent


def restore(plan, backup_id, to, *extra):
    return CliRunner().invoke(main, ["restore", backup_id, "--to", to, "--plan", str(plan), *extra])


def test_a_relative_path_is_made_absolute_where_it_was_typed(backed_up, tmp_path, monkeypatch):
    make, sent = backed_up
    plan, backup_id = make()
    here = tmp_path / "operator"
    here.mkdir()
    monkeypatch.chdir(here)
    out = restore(plan, backup_id, "rel/out")
    assert out.exit_code == 0, out.output
    assert [m["target"] for m in sent] == [str(here / "rel" / "out")]


@pytest.mark.parametrize("case", ["file", "non-empty", "source", "store"])
def test_bad_targets_are_refused_before_any_message(backed_up, tmp_path, case):
    make, sent = backed_up
    plan, backup_id = make()
    if case == "file":
        target = tmp_path / "a-file"
        target.write_text("x")
        expected = "is a file"
    elif case == "non-empty":
        target = tmp_path / "full"
        target.mkdir()
        (target / "x").write_text("x")
        expected = "is not empty"
    elif case == "source":
        target = tmp_path / "plan" / "src" / "site" / "restored"
        expected = "inside the source directory of site"
    else:
        target = tmp_path / "plan" / "stores" / "eu-central" / "restored"
        expected = "inside storage location eu-central-store"
    out = restore(plan, backup_id, str(target))
    assert out.exit_code == 1 and expected in out.output, out.output
    assert sent == []


def test_restore_under_limits_where_a_dataset_may_be_restored(backed_up, tmp_path):
    make, sent = backed_up
    allowed = tmp_path / "restores"
    plan, backup_id = make(f"restore_under: [{allowed}]")
    out = restore(plan, backup_id, str(tmp_path / "elsewhere"))
    assert out.exit_code == 1 and "outside what the plan allows for site" in out.output
    assert str(allowed) in out.output and sent == []
    out = restore(plan, backup_id, str(allowed / "today"))
    assert out.exit_code == 0, out.output
    assert [m["target"] for m in sent] == [str(allowed / "today")]


def test_restore_under_must_be_absolute(tmp_path):
    from drfleet.plan.loader import PlanInvalid, load_plan
    with pytest.raises(PlanInvalid, match="must be an absolute path"):
        load_plan(_plan(tmp_path, "restore_under: [relative/dir]"))


def test_a_worker_refuses_a_path_it_cannot_honour_on_its_host(tmp_path):
    from drfleet.datapath.errors import RestoreTargetInvalid
    from drfleet.datapath.restore_paths import check_directory_target
    from drfleet.plan.loader import load_plan

    plan = load_plan(_plan(tmp_path))
    with pytest.raises(RestoreTargetInvalid, match="relative path; it has no meaning on worker-b"):
        check_directory_target(plan, "site", "rel/out", here="worker-b")
    blocker = tmp_path / "blocker"
    blocker.write_text("not a directory")
    with pytest.raises(RestoreTargetInvalid, match=r"cannot be created on worker-b: .*blocker is not a writable"):
        check_directory_target(plan, "site", str(blocker / "sub" / "out"), here="worker-b")
    assert check_directory_target(plan, "site", str(tmp_path / "fine"), here="worker-b") == str(tmp_path / "fine")


def test_the_restore_task_checks_the_path_on_the_worker(tmp_path, monkeypatch, redis_url):
    from drfleet.datapath.errors import RestoreTargetInvalid
    from drfleet.tasks.restore import restore as restore_task

    monkeypatch.setenv("DRFLEET_PLAN", str(_plan(tmp_path)))
    monkeypatch.setenv("DRFLEET_STATE_URL", redis_url)
    monkeypatch.setenv("DRFLEET_BROKER_URL", redis_url)
    called = []
    monkeypatch.setattr("drfleet.datapath.restore.restore_backup", lambda *a, **k: called.append(a))
    with pytest.raises(RestoreTargetInvalid, match="relative path"):
        restore_task.run("site/20261101T000000Z-0000abcd", "rel/out", "eu-central")
    assert called == []
