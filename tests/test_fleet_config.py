"""The fleet's contract in suture.yaml (name:, fleet:) and in a playbook (scope:): defaults, errors said where."""

from __future__ import annotations

from pathlib import Path

import pytest
from suture.engine.config import Config, FleetConfig, load_config
from suture.engine.errors import DocumentError

from .conftest import RATE_LIMIT, dedent, playbook

SECRET = "hunter2-Very-Secret"


def config_with(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> Config:
    path = tmp_path / "suture.yaml"
    path.write_text(f"target_root: {tmp_path}\n" + dedent(text))
    return load_config(path, env=env or {})


def problems_of(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(DocumentError) as caught:
        config_with(tmp_path, text)
    return [p.render() for p in caught.value.problems]


def test_no_fleet_key_means_no_postgres_fleet(tmp_path: Path) -> None:
    """Without fleet:, the sidecar is alone (or shares through learning.fleet only)."""
    assert config_with(tmp_path, "").fleet_pg is None


def test_fleet_defaults(tmp_path: Path) -> None:
    """Only postgres is required: group default, one canary, one at a time, 30 s leases, PGPASSWORD."""
    cfg = config_with(tmp_path, "fleet: {postgres: 'postgresql://suture@db.internal/suture'}\n")
    assert cfg.fleet_pg == FleetConfig(postgres="postgresql://suture@db.internal/suture")
    assert (cfg.fleet_pg.group, cfg.fleet_pg.canary, cfg.fleet_pg.max_concurrent, cfg.fleet_pg.lease) == (
        "default", 1, 1, 30.0)
    assert cfg.fleet_pg.password_env == "PGPASSWORD"


def test_fleet_as_the_issue_writes_it(tmp_path: Path) -> None:
    """The example of issue 15 loads as written, name included."""
    cfg = config_with(tmp_path, """
        name: orders-1
        fleet:
          postgres: postgresql://suture@db.internal/suture
          group: orders
          canary: 2
          max_concurrent: 3
          lease: 45s
          password_env: SUTURE_PG_PASSWORD
        """, env={"SUTURE_PG_PASSWORD": SECRET, "PGPASSWORD": "other"})
    assert cfg.name == "orders-1"
    assert cfg.fleet_pg is not None
    assert (cfg.fleet_pg.group, cfg.fleet_pg.canary, cfg.fleet_pg.max_concurrent, cfg.fleet_pg.lease) == (
        "orders", 2, 3, 45.0)
    assert cfg.fleet_pg.password == SECRET


def test_the_password_defaults_to_pgpassword_of_the_injected_environment(tmp_path: Path) -> None:
    """PGPASSWORD is read from the env given to load_config, not from the process behind its back."""
    cfg = config_with(tmp_path, "fleet: {postgres: 'postgresql://s@h/d'}\n", env={"PGPASSWORD": SECRET})
    assert cfg.fleet_pg is not None and cfg.fleet_pg.password == SECRET


def test_the_password_is_never_shown(tmp_path: Path) -> None:
    """Neither the config's repr nor the fleet config's holds the password."""
    cfg = config_with(tmp_path, "fleet: {postgres: 'postgresql://s@h/d'}\n", env={"PGPASSWORD": SECRET})
    assert SECRET not in repr(cfg)
    assert SECRET not in repr(cfg.fleet_pg) and SECRET not in str(cfg.fleet_pg)


def test_the_parquet_folder_mode_stays(tmp_path: Path) -> None:
    """learning.fleet is still the no-server backend, beside fleet:."""
    cfg = config_with(tmp_path, "learning: {fleet: shared}\nfleet: {postgres: 'postgresql://s@h/d'}\n")
    assert cfg.fleet == str(tmp_path / "shared")
    assert cfg.fleet_pg is not None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fleet: {postgres: 'postgresql://s@h/d', canary: -1}\n", "suture.yaml:2:49: must be >= 0, got -1 (at fleet.canary)"),
        ("fleet: {postgres: 'postgresql://s@h/d', max_concurrent: 0}\n",
         "suture.yaml:2:57: must be >= 1, got 0 (at fleet.max_concurrent)"),
        ("fleet: {postgres: 'postgresql://s@h/d', lease: 0s}\n",
         "suture.yaml:2:48: a lease lasts from 1s to 60m, got 0s (at fleet.lease)"),
        ("fleet: {postgres: 'postgresql://s@h/d', lease: 2h}\n",
         "suture.yaml:2:48: a lease lasts from 1s to 60m, got 2h (at fleet.lease)"),
        ("fleet: {postgres: 'postgresql://s@h/d', lease: 30}\n",
         "suture.yaml:2:48: 30 is not a duration: give it a unit, e.g. 30s (or 500ms, 2m, 1h) (at fleet.lease)"),
        ("fleet: {postgres: 'postgresql://s@h/d', leases: 30s}\n",
         "suture.yaml:2:41: unknown key 'leases' (did you mean 'lease'?) (at fleet.leases)"),
        ("fleet: {group: orders}\n", "suture.yaml:2:1: missing required key 'postgres' (at fleet)"),
        ("fleet: {postgres: 'postgresql://s@h/d', group: '../x'}\n", "(at fleet.group)"),
        ("fleet: {postgres: 'postgresql://s@h/d', canary: 1.5}\n", "(at fleet.canary)"),
        ("fleet: {postgres: 'mysql://s@h/d'}\n", "suture.yaml:2:19: must start with postgresql://"),
        ("fleet: {postgres: 'postgresql://s@/d'}\n", "names no host"),
        ("fleet: {postgres: 'postgresql://s@h'}\n", "names no database"),
        ("fleet: {postgres: 'postgresql://s@h:99999/d'}\n", "is not a URL"),
        ("fleet: {postgres: 'postgresql://s@h/d', password_env: 'A-B'}\n", "(at fleet.password_env)"),
    ],
)
def test_bad_fleet_values_are_refused_where_written(tmp_path: Path, text: str, expected: str) -> None:
    """Each bad value is reported with file, line, column and YAML path."""
    problems = problems_of(tmp_path, text)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "url",
    [
        f"postgresql://suture:{SECRET}@db/suture",
        f"postgresql://suture@db/suture?password={SECRET}",
        f"postgresql://suture@db/suture?sslmode=require&password={SECRET}",
    ],
)
def test_a_password_in_the_url_is_refused_without_repeating_it(tmp_path: Path, url: str) -> None:
    """Passwords come from the environment; the refusal does not echo the secret."""
    with pytest.raises(DocumentError) as caught:
        config_with(tmp_path, f"fleet: {{postgres: '{url}'}}\n")
    assert "must not hold a password" in str(caught.value)
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.problems)


def test_a_keyword_conninfo_with_a_password_is_refused_without_repeating_it(tmp_path: Path) -> None:
    """``host=... password=...`` is not a URL: refused, and the message does not quote it."""
    problems = problems_of(tmp_path, f"fleet: {{postgres: 'host=db password={SECRET}'}}\n")
    assert problems and all(SECRET not in p for p in problems)


def test_a_huge_url_is_refused(tmp_path: Path) -> None:
    """A 10 kB URL is cut by the schema, not parsed."""
    problems = problems_of(tmp_path, f"fleet: {{postgres: 'postgresql://s@h/{'d' * 10_000}'}}\n")
    assert any("at most 2048 characters" in p for p in problems), problems


def test_fleet_must_be_a_mapping(tmp_path: Path) -> None:
    """fleet: a-string is a type error at fleet."""
    assert any("(at fleet)" in p for p in problems_of(tmp_path, "fleet: postgresql://s@h/d\n"))


# -- scope: in a playbook --


def test_scope_defaults_to_replica() -> None:
    """Each sidecar fixes its own copy unless the playbook says the target is shared."""
    assert playbook(RATE_LIMIT).scope == "replica"


@pytest.mark.parametrize("scope", ["replica", "fleet"])
def test_scope_is_read(scope: str) -> None:
    """scope: replica | fleet lands on the Playbook."""
    assert playbook(dedent(RATE_LIMIT) + f"scope: {scope}\n").scope == scope


def test_a_bad_scope_is_refused_where_written() -> None:
    """scope: cluster is not one of replica, fleet; the problem names line and path."""
    with pytest.raises(DocumentError) as caught:
        playbook(dedent(RATE_LIMIT) + "scope: cluster\n")
    rendered = [p.render() for p in caught.value.problems]
    assert any("'cluster' is not one of: replica, fleet (at scope)" in p and p.startswith("pb.yaml:14:8:") for p in rendered), rendered
