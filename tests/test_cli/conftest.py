import pytest

from backends.paths import home


@pytest.fixture(autouse=True)
def own_home(tmp_path, monkeypatch):
    """Runs log into $TOKENTRAIL_HOME/memory.db by default: each test gets its own home, with the pulled models."""
    models = home() / "models"
    monkeypatch.setenv("TOKENTRAIL_HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    if models.exists():
        (tmp_path / "home" / "models").symlink_to(models)
    return tmp_path / "home"
