"""Hot reload: playbooks change while suture runs, and nothing in flight is lost."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest
from suture.engine.catalog import Catalog
from suture.engine.store import Store

from .conftest import dedent, write_config

pytestmark = pytest.mark.slow

PB = """
id: {id}
when:
  log: {{source: app, pattern: '{pattern}', at_least: {n}, within: 1m}}
confidence: {confidence}
fix: [{{adjust: {{file: config/settings.yaml, key: upstream.timeout_s, add: 1, max: 100}}}}]
validate: {{window: {window}, settle: 500ms, expect: [{{log: {{source: app, pattern: '{pattern}', at_most: 0}}}}]}}
cooldown: 1h
"""


def pb_text(id="timeouts", pattern="TIMEOUT", n=3, confidence=90, window="30s"):
    return dedent(PB.format(id=id, pattern=pattern, n=n, confidence=confidence, window=window))


@pytest.fixture
def setup(tmp_path, target):
    config = write_config(tmp_path, target)
    folder = config.playbooks
    log = target / "logs" / "app.log"
    log.write_text("")
    return config, folder, log


def append(log: Path, *lines: str) -> None:
    with open(log, "a") as fh:
        for line in lines:
            fh.write(line + "\n")


def reloaded(ids_key: str, pid: str):
    return lambda e: e.kind == "reloaded" and pid in e.data.get(ids_key, ())


def test_adding_a_playbook_takes_effect_without_restart(setup, running):
    """A new file is loaded and fires on the next incident."""
    config, folder, log = setup
    r = running(config)
    (folder / "timeouts.yaml").write_text(pb_text())
    r.wait_for(reloaded("added", "timeouts"))
    append(log, "TIMEOUT", "TIMEOUT", "TIMEOUT")
    r.wait_for(lambda e: e.kind == "detected" and "timeouts" in e.message)


def test_editing_and_deleting_take_effect(setup, running):
    """An edit swaps the new version in; a deletion takes the playbook away."""
    config, folder, _ = setup
    (folder / "timeouts.yaml").write_text(pb_text(confidence=90))
    r = running(config)
    (folder / "timeouts.yaml").write_text(pb_text(confidence=60))
    r.wait_for(reloaded("updated", "timeouts"))
    assert r.sidecar.playbooks["timeouts"].confidence == 60
    (folder / "timeouts.yaml").unlink()
    r.wait_for(reloaded("removed", "timeouts"))
    assert "timeouts" not in r.sidecar.playbooks


def test_an_invalid_change_keeps_the_previous_version_running(setup, running):
    """A broken save is reported (log, playbook set, counter) and the old rules keep working."""
    config, folder, log = setup
    (folder / "timeouts.yaml").write_text(pb_text())
    r = running(config)
    (folder / "timeouts.yaml").write_text(pb_text().replace("at_least: 3", "at_least: lots"))
    event = r.wait_for(lambda e: e.kind == "reloaded")
    assert event.data["kept"] == ("playbooks/timeouts.yaml",) or event.data["kept"][0].endswith("timeouts.yaml")
    assert r.sidecar.reload_errors == 1
    (problem,) = r.sidecar.playbook_set.problems
    assert "at_least" in problem.path and problem.line == 3
    append(log, "TIMEOUT", "TIMEOUT", "TIMEOUT")
    r.wait_for(lambda e: e.kind == "detected" and "timeouts" in e.message)


def test_an_editor_that_saves_by_rename_triggers_a_reload(setup, running):
    """Write a temp file, rename it over the playbook: reloaded."""
    config, folder, _ = setup
    (folder / "timeouts.yaml").write_text(pb_text(confidence=90))
    r = running(config)
    tmp = folder / ".timeouts.yaml.swp"
    tmp.write_text(pb_text(confidence=55))
    os.replace(tmp, folder / "timeouts.yaml")
    r.wait_for(reloaded("updated", "timeouts"))
    assert r.sidecar.playbooks["timeouts"].confidence == 55


def test_a_configmap_data_symlink_swap_triggers_a_reload(tmp_path, target, running):
    """Kubernetes swaps `..data` to a new timestamped folder; the playbook links follow it."""
    config = write_config(tmp_path, target, playbooks="cm")
    folder = config.playbooks
    first = folder / "..2026_11_26_01_00_00.000000001"
    first.mkdir()
    (first / "timeouts.yaml").write_text(pb_text(confidence=90))
    os.symlink(first.name, folder / "..data")
    os.symlink("..data/timeouts.yaml", folder / "timeouts.yaml")
    r = running(config)
    assert r.sidecar.playbooks["timeouts"].confidence == 90
    second = folder / "..2026_11_26_01_05_00.000000002"
    second.mkdir()
    (second / "timeouts.yaml").write_text(pb_text(confidence=65))
    os.symlink(second.name, folder / "..data_tmp")
    os.replace(folder / "..data_tmp", folder / "..data")
    shutil.rmtree(first)
    r.wait_for(reloaded("updated", "timeouts"))
    assert r.sidecar.playbooks["timeouts"].confidence == 65


def test_signals_in_flight_are_carried_into_the_new_ruleset(setup, running):
    """Two matching lines before a reload and one after complete the window of three."""
    config, folder, log = setup
    (folder / "timeouts.yaml").write_text(pb_text(confidence=90))
    r = running(config)
    append(log, "TIMEOUT", "TIMEOUT")
    time.sleep(0.5)
    (folder / "other.yaml").write_text(pb_text(id="other", pattern="UNRELATED"))
    r.wait_for(reloaded("added", "other"))
    assert not any(e.kind == "detected" for e in r.events)
    append(log, "TIMEOUT")
    r.wait_for(lambda e: e.kind == "detected" and "timeouts" in e.message)


def test_a_fix_in_progress_is_not_disturbed_by_a_reload(setup, running, target):
    """Editing (even deleting) the playbook during its validation window leaves the fix to finish."""
    config, folder, log = setup
    (folder / "timeouts.yaml").write_text(pb_text(window="3s"))
    r = running(config)
    for _ in range(3):
        append(log, "TIMEOUT")
    r.wait_for(lambda e: e.kind == "validating")
    (folder / "timeouts.yaml").unlink()
    r.wait_for(reloaded("removed", "timeouts"))
    for _ in range(8):
        append(log, "INFO fine")
        time.sleep(0.3)
    final = r.wait_for(lambda e: e.kind in ("succeeded", "rolled_back", "inconclusive"), timeout=10)
    assert final.kind == "succeeded"
    assert "timeout_s: 6" in (target / "config/settings.yaml").read_text()


def test_catalog_reports_a_duplicate_id_and_keeps_the_first(tmp_path, target):
    """A second file claiming an id is refused with its location; the first stays in force."""
    config = write_config(tmp_path, target)
    folder = config.playbooks
    (folder / "a.yaml").write_text(pb_text(id="same"))
    catalog = Catalog(folder, config)
    catalog.refresh()
    (folder / "b.yaml").write_text(pb_text(id="same", pattern="OTHER"))
    result, change = catalog.refresh()
    assert [pb.file.endswith("a.yaml") for pb in result.playbooks] == [True]
    assert change.failed and change.failed[0].endswith("b.yaml")
    assert "duplicate playbook id 'same'" in result.problems[0].message


def test_an_unchanged_broken_file_is_not_a_change(tmp_path, target):
    """Rescans of a folder whose broken file did not change report no change."""
    config = write_config(tmp_path, target)
    (config.playbooks / "bad.yaml").write_text("id: [\n")
    catalog = Catalog(config.playbooks, config)
    catalog.refresh()
    assert catalog.refresh()[1] is None


def test_a_playbook_added_while_its_diagnosis_holds_fires(setup, running):
    """Three errors already in the window, then a playbook for them arrives: it fires."""
    config, folder, log = setup
    (folder / "watch.yaml").write_text(pb_text(id="watcher", pattern="TIMEOUT", n=1, confidence=40))
    r = running(config)
    append(log, "TIMEOUT", "TIMEOUT", "TIMEOUT")
    r.wait_for(lambda e: e.kind == "detected" and "watcher" in e.message)
    (folder / "timeouts.yaml").write_text(pb_text())
    r.wait_for(lambda e: e.kind == "detected" and "timeouts" in e.message)
    r.stop()
    store = Store.open(config.db_path, read_only=True)
    try:
        ids = [row[0] for row in store.query("SELECT playbook_id FROM fixes ORDER BY started_at").rows]
    finally:
        store.close()
    assert ids == ["watcher", "timeouts"]


def test_reloads_of_a_hundred_playbooks_keep_memory_flat_and_log_no_errors(tmp_path):
    """150 reloads of a 100-playbook set (the bench does 1,000): RSS flat, no errors logged."""
    from tests.bench.reload import reload_memory

    before, after, errors, _per = reload_memory(tmp_path, 150)
    assert errors == 0
    assert after - before < 5.0, f"RSS grew {after - before:.1f} MB"
