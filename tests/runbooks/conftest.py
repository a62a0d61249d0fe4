import pytest

from tests.runbooks.world import RunbookWorld


@pytest.fixture
def world(tmp_path, redis_url, celery_app):
    w = RunbookWorld(tmp_path, redis_url)
    yield w
    w.stop()
