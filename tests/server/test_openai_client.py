"""The official `openai` Python client against a running `bastion serve`: only the base URL changes."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from serving import free_port, start_server

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """`bastion serve` as a user starts it; yields (base URL, admin key, home)."""
    home = tmp_path_factory.mktemp("serve-home")
    port = free_port()
    proc, key = start_server(home, port)
    assert key, "the server did not print its admin key"
    base = f"http://127.0.0.1:{port}"
    yield base, key, home
    proc.terminate()
    proc.wait(30)


def test_openai_client_moderates_through_bastion(server: tuple[str, str, Path]) -> None:
    base, key, _ = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=key)
    response = client.moderations.create(
        model="omni-moderation-latest",
        input=["I will find where you live and hurt you", "see you at lunch"],
    )
    threat, fine = response.results
    assert threat.flagged and threat.categories.harassment_threatening
    assert threat.category_scores.harassment_threatening > 0.5
    assert threat.category_applied_input_types.harassment_threatening == ["text"]
    assert not fine.flagged
    assert response.id.startswith("modr-")


def test_openai_client_sees_its_usual_errors(server: tuple[str, str, Path]) -> None:
    base, _, _ = server
    client = openai.OpenAI(base_url=f"{base}/v1", api_key="bst_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="invalid or revoked API key"):
        client.moderations.create(input="hello")


def test_second_start_prints_no_new_key(server: tuple[str, str, Path]) -> None:
    """The admin key is created once, on the first start with an empty store."""
    _, _, home = server
    result = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "keys", "list", "--home", str(home)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert result.stdout.count("admin") >= 1 and "bst_" in result.stdout
    assert len(re.findall(r"key_[0-9a-f]{12}", result.stdout)) == 1
