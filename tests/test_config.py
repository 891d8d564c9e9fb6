import dataclasses
import re
from pathlib import Path

import pytest

from server.config import (
    ENV_NAMES,
    Config,
    ConfigError,
    cluster_seeds,
    from_env,
    plain_redis_url,
)

README = Path(__file__).resolve().parents[1] / "README.md"


def test_defaults_mean_embedded_servers() -> None:
    config = from_env({})
    assert config.embedded
    assert config.port == 8000
    assert config.data_dir == Path(".giftwire")


def test_environment_overrides_and_types() -> None:
    config = from_env({
        "REDIS_URL": "redis://h:1/0",
        "DATABASE_URL": "postgresql://h/db",
        "GIFTWIRE_PORT": "9001",
        "GIFTWIRE_WRITER_WINDOW_MS": "5.5",
        "GIFTWIRE_RUN_FLUSHER": "false",
    })
    assert not config.embedded
    assert (config.port, config.writer_window_ms, config.run_flusher) == (9001, 5.5, False)


@pytest.mark.parametrize(
    ("var", "value"),
    [("GIFTWIRE_PORT", "eighty"), ("GIFTWIRE_PORT", "70000"), ("GIFTWIRE_RUN_FLUSHER", "maybe"),
     ("GIFTWIRE_DB_SCHEMA", "x; drop table"), ("GIFTWIRE_WALLET_SHARDS", "0"),
     ("GIFTWIRE_JWT_SECRET", "short"), ("GIFTWIRE_IDLE_TIMEOUT_S", "39"),
     ("GIFTWIRE_WS_PING_TIMEOUT_S", "0")],
)
def test_bad_values_are_refused_with_the_variable_named(var: str, value: str) -> None:
    with pytest.raises(ConfigError, match=var.removeprefix("GIFTWIRE_").split("_")[0]):
        from_env({var: value})


def test_to_env_round_trips() -> None:
    config = Config(redis_url="redis://x", database_url="postgresql://y", port=1234, demo=True)
    assert from_env(config.to_env()) == config


def test_readme_documents_every_environment_variable() -> None:
    text = README.read_text()
    documented = set(re.findall(r"^\|\s*`([A-Z_]+)`", text, flags=re.MULTILINE))
    missing = set(ENV_NAMES.values()) - documented
    assert not missing, f"README configuration table lacks {sorted(missing)}"
    unknown = documented - set(ENV_NAMES.values())
    assert not unknown, f"README documents variables the code does not read: {sorted(unknown)}"


def test_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().port = 1  # type: ignore[misc]


def test_cluster_mode_by_setting_or_url() -> None:
    assert not from_env({"REDIS_URL": "redis://h:1/0"}).cluster
    assert from_env({"REDIS_URL": "redis://h:1/0", "GIFTWIRE_REDIS_CLUSTER": "1"}).cluster
    assert from_env({"REDIS_URL": "redis+cluster://h:7000"}).cluster
    assert from_env({"REDIS_URL": "rediss+cluster://h:7000"}).cluster
    assert plain_redis_url("redis+cluster://u:p@h:7000/0") == "redis://u:p@h:7000/0"
    assert plain_redis_url("redis://h:1/0") == "redis://h:1/0"
    two = "redis+cluster://u:p@a:7000,b:7001/0"
    assert plain_redis_url(two) == "redis://u:p@a:7000/0"
    assert cluster_seeds(two) == [("a", 7000), ("b", 7001)]


def test_cluster_mode_needs_a_redis_url() -> None:
    with pytest.raises(ConfigError, match="REDIS_CLUSTER"):
        from_env({"GIFTWIRE_REDIS_CLUSTER": "1"})
