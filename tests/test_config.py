from __future__ import annotations

from pathlib import Path

import pytest

from bot.config import Config, ConfigError, load_config, secret

ROOT = Path(__file__).resolve().parent.parent


def test_shipped_config_is_valid_and_documented() -> None:
    config = load_config(ROOT / "config.yaml")
    assert config.model.source == "facebook/blenderbot-400M-distill"
    text = (ROOT / "config.yaml").read_text()
    for key in Config.model_fields:  # every top-level setting is documented in the file itself
        assert f"\n{key}:" in "\n" + text, key


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("modle:\n  source: x\n", "modle: unknown key"),
        ("model:\n  dtype: fp8\n", "model.dtype: Input should be"),
        ("worker:\n  max_batch: lots\n", "worker.max_batch: Input should be a valid integer"),
        ("rate_limit:\n  messages: 0\n", "rate_limit.messages: Input should be greater than or equal to 1"),
        ("model: [1, 2\n", "not valid YAML at line"),
        ("- just a list\n", "the top level must be a mapping"),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, message: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)


def test_missing_explicit_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")


def test_secrets_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BLENDERD_TEST_SECRET", raising=False)
    assert secret("BLENDERD_TEST_SECRET") is None
    (tmp_path / "s").write_text("from-file\n")
    monkeypatch.setenv("BLENDERD_TEST_SECRET_FILE", str(tmp_path / "s"))
    assert secret("BLENDERD_TEST_SECRET") == "from-file"
    monkeypatch.setenv("BLENDERD_TEST_SECRET", "from-env")
    assert secret("BLENDERD_TEST_SECRET") == "from-env"
    monkeypatch.delenv("BLENDERD_TEST_SECRET")
    monkeypatch.setenv("BLENDERD_TEST_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="BLENDERD_TEST_SECRET_FILE points at"):
        secret("BLENDERD_TEST_SECRET")


def test_database_url_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BLENDERD_DATABASE_URL", "postgresql+asyncpg://u:p@db/blenderd")
    assert Config().database_url() == "postgresql+asyncpg://u:p@db/blenderd"
    monkeypatch.delenv("BLENDERD_DATABASE_URL")
    assert Config(data_dir=Path("/srv/x")).database_url() == "sqlite+aiosqlite:////srv/x/blenderd.sqlite3"
