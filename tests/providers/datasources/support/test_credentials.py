"""Secrets stay out of what is shown: URL scrubbing, text scrubbing, private files."""

from __future__ import annotations

import os
import stat
from urllib.parse import quote

from hypothesis import given
from hypothesis import strategies as st

from drfleet.providers.datasources.support.credentials import PrivateFile, scrub_text, scrub_url, url_password

passwords = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)
plain_passwords = st.text(st.characters(min_codepoint=33, max_codepoint=126,
                                        blacklist_characters="*"), min_size=4, max_size=30)


@given(passwords)
def test_scrubbed_urls_never_show_the_password(password):
    url = f"postgresql://backup:{quote(password, safe='')}@db.internal:5432/shop?sslmode=require"
    assert url_password(url) == password
    assert scrub_url(url) == "postgresql://backup:***@db.internal:5432/shop?sslmode=require"


@given(plain_passwords)
def test_scrubbed_text_never_shows_the_password_raw_or_encoded(password):
    text = f"<{password}> <{quote(password, safe='')}>"
    assert scrub_text(text, [password]) == "<***> <***>"


def test_urls_without_password_are_unchanged():
    assert scrub_url("redis://127.0.0.1:6379/0") == "redis://127.0.0.1:6379/0"
    assert scrub_url("redis://:pw@127.0.0.1:6379/0") == "redis://:***@127.0.0.1:6379/0"
    assert url_password("mongodb://h/db") is None


def test_private_file_is_0600_in_a_0700_directory_and_removed():
    with PrivateFile("*:*:*:*:secret\n", name="pgpass") as private:
        assert stat.S_IMODE(os.stat(private.path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(os.path.dirname(private.path)).st_mode) == 0o700
        with open(private.path) as handle:
            assert handle.read() == "*:*:*:*:secret\n"
    assert not os.path.exists(os.path.dirname(private.path))
