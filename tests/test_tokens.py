"""Bundled vocabularies: offline, verified, equal to tiktoken's own definitions."""

from __future__ import annotations

import gzip
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import tiktoken_ext.openai_public as openai_public

from pipeline.call import tokens

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_definitions_match_tiktoken(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Our copied split patterns and special tokens equal tiktoken_ext's (loader stubbed so
    tiktoken's constructor cannot download; the ranks come from our bundle)."""
    ranks = tokens.load_ranks(name)
    monkeypatch.setattr(openai_public, "load_tiktoken_bpe", lambda *a, **k: ranks)
    theirs = getattr(openai_public, name)()
    assert theirs["pat_str"] == tokens.PATTERNS[name]
    assert theirs["special_tokens"] == tokens.SPECIAL_TOKENS[name]
    assert len(ranks) in (199998, 100256)


def test_vocabularies_load_with_no_network_and_no_downloader() -> None:
    """A fresh process with sockets disabled and tiktoken's file reader booby-trapped."""
    code = textwrap.dedent(
        """
        import socket, tiktoken.load, tiktoken.registry
        def no(*a, **k): raise AssertionError("network or downloader used")
        socket.socket.connect = no
        socket.create_connection = no
        tiktoken.load.read_file = no
        tiktoken.load.read_file_cached = no
        tiktoken.registry.get_encoding = no
        from pipeline.call import tokens
        e = tokens.encoding("o200k_base")
        c = tokens.encoding("cl100k_base")
        assert e.encode_ordinary("hello world") == [24912, 2375], e.encode_ordinary("hello world")
        assert c.encode_ordinary("hello world") == [15339, 1917]
        print("ok")
        """
    )
    env = {"PATH": "/usr/bin:/bin", "TIKTOKEN_CACHE_DIR": "/nonexistent", "HOME": "/nonexistent"}
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_a_corrupt_vocabulary_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    good = gzip.decompress((tokens.VOCAB_DIR / "cl100k_base.tiktoken.gz").read_bytes())
    (tmp_path / "cl100k_base.tiktoken.gz").write_bytes(gzip.compress(good[:-10] + b"AAAA 1\n"))
    monkeypatch.setattr(tokens, "VOCAB_DIR", tmp_path)
    with pytest.raises(tokens.VocabularyError, match="corrupt"):
        tokens.load_ranks("cl100k_base")


def test_vocabularies_load_lazily() -> None:
    code = (
        "import function_app, sys; from pipeline.call import tokens; "
        "print(len(tokens._loaded), 'tiktoken' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["0", "False"], proc.stderr


@pytest.mark.parametrize(
    ("model", "deployment", "expected"),
    [
        ("gpt-4o-2024-08-06", "chat-prod", "o200k_base"),
        ("gpt-4.1-2025-04-14", None, "o200k_base"),
        ("gpt-5-2025-08-07", None, "o200k_base"),
        ("gpt-5.2-chat-2025-12-11", None, "o200k_base"),
        ("o3-mini", None, "o200k_base"),
        ("o4-mini", None, "o200k_base"),
        ("gpt-35-turbo", None, "cl100k_base"),
        ("gpt-4-turbo", None, "cl100k_base"),
        ("text-embedding-3-small", None, "cl100k_base"),
        ("gpt-oss-120b", None, "o200k_base"),
        (None, "gpt-35-turbo", "cl100k_base"),  # deployment named after its model
        (None, "chat-prod", "o200k_base"),  # arbitrary deployment name: default
        ("my-finetune", "gpt-4", "cl100k_base"),
    ],
)
def test_encoding_choice(model: str | None, deployment: str | None, expected: str) -> None:
    assert tokens.encoding_name(model, deployment) == expected


def test_no_socket_is_opened_by_an_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*a: object, **k: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    n = tokens.estimate_prompt(
        {"messages": [{"role": "user", "content": "Hello"}]}, "chat.completions", "cl100k_base"
    )
    assert n == 3 + 1 + 1 + 3
