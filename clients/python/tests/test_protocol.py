"""The client against the protocol's fixed points: the shipped scripts, the
FNV-1a placement the Rust side uses, and the id format."""

from __future__ import annotations

import hashlib
import time
import uuid
from importlib import resources
from pathlib import Path

import redis

import jobfleet
from jobfleet import _protocol

from support import Cli, shard_key


def test_shipped_scripts_match_what_the_cli_writes(tmp_path: Path, cli: Cli, url: str, queue: str) -> None:
    out = tmp_path / "scripts"
    cli.run("protocol", "scripts", "--out", str(out))
    shipped = resources.files("jobfleet").joinpath("scripts")
    names = sorted(entry.name for entry in shipped.iterdir() if entry.name.endswith(".lua"))
    assert names == sorted(_protocol.SCRIPT_NAMES), "every shipped script is one the client runs"
    for name in names:
        expected = (out / name).read_bytes()
        common, transition = expected.find(b"-- common.lua:"), expected.find(f"-- {name}:".encode())
        assert 0 <= common < transition, f"{name}: the CLI writes common.lua, then the transition"
        assert shipped.joinpath(name).read_bytes() == expected, (
            f"src/jobfleet/scripts/{name} differs from what `jobfleet protocol scripts` writes: "
            "run clients/python/sync-scripts.sh"
        )
        assert _protocol.script_source(name).encode("utf-8") == expected

    # What the client sends is exactly those bytes: Redis knows the script by
    # the SHA1 of the CLI's file once the client has submitted.
    with jobfleet.Client(url) as client:
        client.submit("noop", queue=queue)
        client.cancel("nothing-here", queue=queue)
    conn = redis.Redis.from_url(url)
    try:
        shas = [hashlib.sha1((out / name).read_bytes()).hexdigest() for name in names]
        assert conn.script_exists(*shas) == [True] * len(shas)
    finally:
        conn.close()


def test_the_package_under_test_is_the_installed_one() -> None:
    source_tree = Path(__file__).resolve().parent.parent / "src"
    installed = Path(jobfleet.__file__).resolve()
    assert source_tree not in installed.parents, f"jobfleet was imported from the source tree: {installed}"
    assert jobfleet.__version__ == "0.1.0"
    assert resources.files("jobfleet").joinpath("py.typed").is_file()


def test_fnv1a32_known_values() -> None:
    assert jobfleet.fnv1a32(b"") == 0x811C9DC5
    assert jobfleet.fnv1a32(b"a") == 0xE40C292C
    assert jobfleet.fnv1a32(b"foobar") == 0xBF9CF968
    assert jobfleet.shard_of("foobar", 7) == 0xBF9CF968 % 7
    assert jobfleet.shard_of("anything", 1) == 0


def test_fresh_ids_are_time_ordered_uuid7() -> None:
    before_ms = time.time_ns() // 1_000_000
    ids = [jobfleet.new_job_id() for _ in range(2000)]
    after_ms = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids), "ids made one after another sort in that order"
    for text in ids[:: 97]:
        parsed = uuid.UUID(text)
        assert str(parsed) == text
        assert parsed.version == 7
        assert parsed.variant == uuid.RFC_4122
        stamp = parsed.int >> 80
        assert before_ms <= stamp <= after_ms + 5


def test_placed_ids_land_on_the_shard_asked_for() -> None:
    for shards in (2, 3, 4, 16, 256):
        for want in {0, shards // 2, shards - 1}:
            job_id = _protocol.placed_job_id(shards, want)
            assert uuid.UUID(job_id).version == 7
            assert jobfleet.shard_of(job_id, shards) == want


def test_rust_and_python_place_keys_on_the_same_shard(cli: Cli, r: "redis.Redis", queue: str, url: str) -> None:
    cli.run("queue", "create", queue, "--shards", "4")
    keys = [f"order-{i}" for i in range(12)]
    for key in keys:
        cli.run("submit", "noop", "--key", key, "-q", queue)
    homes = {key: jobfleet.shard_of(key, 4) for key in keys}
    assert len(set(homes.values())) > 1, "the keys spread over several shards"
    for key, home in homes.items():
        assert r.exists(shard_key(queue, home, key)) == 1, f"the Rust CLI put {key} on shard {home}"
        for other in set(range(4)) - {home}:
            assert r.exists(shard_key(queue, other, key)) == 0
    with jobfleet.Client(url) as client:
        assert client.shard_count(queue) == 4
        for key in keys:
            job = client.status(key, queue=queue)
            assert job is not None and job.task == "noop" and job.state == "pending"
            # Resubmitting the key from Python finds the Rust job: nothing new.
            assert client.submit("noop", {"again": True}, queue=queue, key=key) == key
    submitted = sum(int(r.hget(f"jobfleet:{{{queue}{'' if s == 0 else f'#{s}'}}}:stats", "submitted") or 0) for s in range(4))
    assert submitted == len(keys)
