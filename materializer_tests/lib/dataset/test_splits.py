"""Train/test splits: stable, grouped, deduplicated, and no near-duplicate leakage."""

from __future__ import annotations

import random

import pyarrow as pa
import pytest

from materializer_assets.lib.dataset.checks import check_no_group_in_both_splits
from materializer_assets.lib.dataset.near_duplicates import NearDuplicateConfig
from materializer_assets.lib.dataset.splits import (
    SplitConfig,
    SplitPlanMismatch,
    SplitPlanner,
    assign_splits,
    group_split,
    hashed_split_key,
    plan_splits,
)
from materializer_assets.lib.dataset.text import iter_row_texts, normalize_near

from .builders import table, trace

HALF = SplitConfig(test_fraction=0.5)

QUESTIONS = [
    "What is the capital of France?",
    "How do I reverse a list in Python without modifying the original?",
    "Explain the difference between TCP and UDP for a video streaming service.",
    "Write a haiku about autumn leaves falling on a quiet pond.",
    "What are the side effects of ibuprofen when taken daily for a month?",
    "How many moons does Jupiter have and which one is the largest?",
    "Summarize the plot of Pride and Prejudice in three sentences.",
    "Convert 72 degrees Fahrenheit to Celsius and show the formula.",
    "Why does bread go stale faster in the refrigerator than on the counter?",
    "Give me a SQL query that finds duplicate email addresses in a users table.",
    "What is the best way to learn to play the guitar as an adult beginner?",
    "Describe how a bill becomes a law in the United States Congress.",
]

UNRELATED = [
    "Recommend three board games for a family with young children.",
    "How do vaccines train the immune system to recognize a virus?",
    "What's a good stretching routine after a long run?",
    "Plan a two day itinerary for Kyoto in the spring.",
]


def users(split: str, count: int, config: SplitConfig = HALF, prefix: str = "user") -> list[str]:
    """User ids whose hash puts them in ``split`` under ``config``."""
    found, i = [], 0
    while len(found) < count:
        name = f"{prefix}-{i}"
        if group_split(f"user_id:{name}", config) == split:
            found.append(name)
        i += 1
    return found


def splits_of(t: pa.Table) -> dict[str, tuple[str, str | None]]:
    return {row["trace_id"]: (row["split"], row["excluded_reason"]) for row in t.select(["trace_id", "split", "excluded_reason"]).to_pylist()}


def shingles(text: str, k: int = 5) -> set[bytes]:
    data = normalize_near(text).encode()
    return {data[i : i + k] for i in range(max(1, len(data) - k + 1))} if data else set()


def jaccard(a: str, b: str) -> float:
    sa, sb = shingles(a), shingles(b)
    return len(sa & sb) / len(sa | sb) if sa and sb else 0.0


def test_group_split_is_a_pure_function_of_salt_key_and_fraction():
    config = SplitConfig(test_fraction=0.2)
    assert group_split("user_id:alice", config) == group_split("user_id:alice", SplitConfig(test_fraction=0.2))
    assert [group_split(f"user_id:u{i}", SplitConfig(test_fraction=0.0)) for i in range(50)] == ["train"] * 50
    assert [group_split(f"user_id:u{i}", SplitConfig(test_fraction=1.0)) for i in range(50)] == ["test"] * 50
    salted = [group_split(f"user_id:u{i}", SplitConfig(test_fraction=0.5, salt="other")) for i in range(200)]
    assert salted != [group_split(f"user_id:u{i}", HALF) for i in range(200)]


def test_test_fraction_holds_over_many_users():
    config = SplitConfig(test_fraction=0.2)
    tests = sum(group_split(f"user_id:user-{i}", config) == "test" for i in range(5000))
    assert 0.18 < tests / 5000 < 0.22


def test_all_rows_of_a_user_share_the_users_split():
    rows = [trace(f"t-{u}-{k}", user=f"user-{u}", prompt=f"{QUESTIONS[k]} (user {u})" * (u + 1)) for u in range(40) for k in range(3)]
    out, stats = assign_splits(table(rows), SplitConfig(test_fraction=0.3, near_duplicates=None))
    for row in out.to_pylist():
        assert row["split"] == group_split(f"user_id:{row['user_id']}", SplitConfig(test_fraction=0.3))
        assert row["split_key"] == hashed_split_key(f"user_id:{row['user_id']}", SplitConfig().salt)
    assert check_no_group_in_both_splits(out).passed
    assert stats.train + stats.test == 120 and stats.groups_train + stats.groups_test == 40


def test_rows_without_a_user_fall_back_to_their_trace_id():
    rows = [trace("t-null", user=None, prompt=QUESTIONS[0]), trace("t-blank", user="   ", prompt=QUESTIONS[1])]
    out, stats = assign_splits(table(rows))
    keys = ["trace_id:t-null", "trace_id:t-blank"]
    assert out.column("split_key").to_pylist() == [hashed_split_key(key, SplitConfig().salt) for key in keys]
    assert stats.fallback_rows == 2
    assert out.column("split").to_pylist() == [group_split(key, SplitConfig()) for key in keys]


def test_grouping_by_session():
    config = SplitConfig(group_by="session_id", test_fraction=0.5, near_duplicates=None)
    rows = [trace(f"t-{i}", user="same-user", session=f"s-{i % 10}", prompt=f"{QUESTIONS[i % 12]} #{i}") for i in range(40)]
    rows.append(trace("t-nosession", user="same-user", session=None, prompt="no session here"))
    out, _ = assign_splits(table(rows), config)
    by_key = {}
    for row in out.to_pylist():
        by_key.setdefault(row["split_key"], set()).add(row["split"])
    assert all(len(splits) == 1 for splits in by_key.values())
    assert set(out.column("split").to_pylist()) == {"train", "test"}  # one user's sessions land in both
    assert hashed_split_key("trace_id:t-nosession", config.salt) in by_key
    assert not check_no_group_in_both_splits(out, column="user_id").passed  # by design under session grouping


def test_invalid_split_configs_are_rejected():
    with pytest.raises(ValueError):
        SplitConfig(group_by="email")
    with pytest.raises(ValueError):
        SplitConfig(test_fraction=1.5)
    with pytest.raises(ValueError):
        SplitConfig(salt="")
    with pytest.raises(ValueError):
        NearDuplicateConfig(threshold=0.0)


def test_exact_duplicates_modulo_whitespace_and_case_are_removed_and_counted():
    (train_user,) = users("train", 1)
    (test_user,) = users("test", 1)
    rows = [
        trace("t-first", user=test_user, prompt="What is the capital of France?", response="Paris.", hour=1),
        trace("t-copy", user=train_user, prompt="  what is THE capital   of france?", response="paris.", hour=5),
        trace("t-later", user=test_user, prompt="What is the capital of France?", response="Paris. ", hour=9),
        trace("t-other-answer", user=train_user, prompt="What is the capital of France?", response="It is Paris.", hour=2),
    ]
    out, stats = assign_splits(table(rows), SplitConfig(test_fraction=0.5, near_duplicates=None))
    result = splits_of(out)
    # The train copy is kept even though a test copy is earlier: a test copy of a train example would leak.
    assert result["t-copy"] == ("train", None)
    assert result["t-first"] == ("excluded", "duplicate")
    assert result["t-later"] == ("excluded", "duplicate")
    assert result["t-other-answer"] == ("train", None)  # same prompt, different response: a different example
    assert stats.excluded_duplicate == 2


def test_among_duplicates_in_one_split_the_earliest_is_kept():
    rows = [trace(f"t-{h}", user=f"user-{h}", hour=h, prompt="Same prompt", response="Same answer") for h in (7, 3, 12)]
    out, stats = assign_splits(table(rows), SplitConfig(test_fraction=0.0))
    assert splits_of(out) == {"t-3": ("train", None), "t-7": ("excluded", "duplicate"), "t-12": ("excluded", "duplicate")}
    assert stats.excluded_duplicate == 2


def test_duplicate_removal_can_be_turned_off():
    rows = [trace(f"t-{h}", user=f"user-{h}", hour=h, prompt="Same", response="Same") for h in (1, 2)]
    out, stats = assign_splits(table(rows), SplitConfig(test_fraction=0.0, remove_duplicates=False, near_duplicates=None))
    assert out.column("split").to_pylist() == ["train", "train"] and stats.excluded_duplicate == 0


def _adversarial_rows() -> tuple[list[dict], dict[str, str]]:
    """Train users ask questions; test users ask edited copies, shared exact prompts
    with other answers, and unrelated questions. Returns rows and the role of each test trace."""
    train_users = users("train", 6)
    test_users = users("test", 6)
    rows, roles = [], {}
    for k, question in enumerate(QUESTIONS):
        rows.append(trace(f"train-{k}", user=train_users[k % 6], prompt=question, response=f"Answer {k}.", hour=k % 24))
        edited = question.upper().replace("?", " ??").replace("the", "teh", 1)
        kind = k % 3
        if kind == 0:
            variant = edited
        elif kind == 1:
            variant = question  # the exact prompt, with a different response
        else:
            variant = "  " + question.lower().rstrip("?.") + "!!  "
        rows.append(trace(f"leak-{k}", user=test_users[k % 6], prompt=variant, response=f"Different answer {k}."))
        roles[f"leak-{k}"] = "leak"
    for j, question in enumerate(UNRELATED):
        rows.append(trace(f"clean-{j}", user=test_users[j % 6], prompt=question, response="Some answer."))
        roles[f"clean-{j}"] = "clean"
    return rows, roles


def test_adversarial_near_duplicates_never_straddle_and_no_user_is_in_both_splits():
    rows, roles = _adversarial_rows()
    out, stats = assign_splits(table(rows), HALF)
    result = splits_of(out)

    # No user in both splits: every kept row sits in its user's hashed split.
    assert check_no_group_in_both_splits(out).passed
    assert check_no_group_in_both_splits(out, column="user_id").passed
    for row in out.to_pylist():
        if row["split"] != "excluded":
            assert row["split"] == group_split(f"user_id:{row['user_id']}", HALF)

    # Every edited copy of a train prompt was dropped from test; unrelated test rows stay.
    for trace_id, role in roles.items():
        expected = ("excluded", "near_duplicate_of_train") if role == "leak" else ("test", None)
        assert result[trace_id] == expected, trace_id
    assert stats.excluded_near_duplicate == len(QUESTIONS)
    assert all(result[f"train-{k}"] == ("train", None) for k in range(len(QUESTIONS)))

    # Independent brute-force check on exact shingle sets: no kept test prompt is close to a kept train prompt.
    prompts = {r["trace_id"]: r["prompt"] for r in out.to_pylist()}
    kept_train = [t for t, (s, _) in result.items() if s == "train"]
    kept_test = [t for t, (s, _) in result.items() if s == "test"]
    worst = max(jaccard(prompts[a], prompts[b]) for a in kept_test for b in kept_train)
    assert worst < 0.5


def test_near_duplicate_check_can_be_turned_off():
    rows, roles = _adversarial_rows()
    out, stats = assign_splits(table(rows), SplitConfig(test_fraction=0.5, near_duplicates=None))
    assert stats.excluded_near_duplicate == 0
    assert all(splits_of(out)[t][0] == "test" for t in roles)


def test_a_shared_system_prompt_does_not_make_different_questions_near_duplicates():
    system = "You are a helpful assistant for ACME Corp. " * 60  # ~2,600 characters shared by every trace
    (train_user,) = users("train", 1)
    (test_user,) = users("test", 1)
    rows = [
        trace("a", user=train_user, system=system, prompt=QUESTIONS[0]),
        trace("b", user=test_user, system=system, prompt=QUESTIONS[1]),
    ]
    out, stats = assign_splits(table(rows), HALF)
    assert splits_of(out) == {"a": ("train", None), "b": ("test", None)}
    assert stats.excluded_near_duplicate == 0


def test_earlier_turns_are_part_of_the_compared_prompt():
    (train_user,) = users("train", 1)
    (test_user,) = users("test", 1)
    history = [("user", "Tell me about the history of the Roman Empire in detail."), ("assistant", "Rome was founded...")]
    rows = [
        trace("a", user=train_user, prompt="Go on.", history=history),
        trace("b", user=test_user, prompt="Go on.", history=[("user", "Explain how photosynthesis works in plants."), ("assistant", "Plants...")]),
        trace("c", user=test_user, prompt="Go on!", history=history),
    ]
    out, _ = assign_splits(table(rows), HALF)
    assert splits_of(out) == {"a": ("train", None), "b": ("test", None), "c": ("excluded", "near_duplicate_of_train")}


def test_splits_are_identical_across_runs_orders_and_batchings():
    rows, _ = _adversarial_rows()
    first, _ = assign_splits(table(rows), HALF)
    second, _ = assign_splits(table(rows), HALF)
    assert splits_of(first) == splits_of(second)
    shuffled = rows[:]
    random.Random(7).shuffle(shuffled)
    third, _ = assign_splits(table(shuffled), HALF)
    assert splits_of(third) == splits_of(first)
    streamed = plan_splits(table(shuffled).to_batches(max_chunksize=5), HALF)
    assert splits_of(streamed.apply(table(rows))) == splits_of(first)


def test_a_batch_is_planned_in_slices_as_if_its_rows_came_in_small_batches(monkeypatch):
    from materializer_assets.lib.dataset import splits

    rows, _ = _adversarial_rows()
    whole = plan_splits([table(rows).combine_chunks().to_batches()[0]], HALF)
    monkeypatch.setattr(splits, "_ADD_SLICE_ROWS", 3)  # the one batch is keyed 3 rows at a time
    sliced = plan_splits([table(rows).combine_chunks().to_batches()[0]], HALF)
    assert splits_of(sliced.apply(table(rows))) == splits_of(whole.apply(table(rows)))
    assert sliced.stats.as_metadata() == whole.stats.as_metadata()
    assert sliced.stats.excluded_near_duplicate == len(QUESTIONS)


def test_adding_rows_never_moves_a_row_between_train_and_test():
    rows, _ = _adversarial_rows()
    before, _ = assign_splits(table(rows), HALF)
    new_train, new_test = users("train", 4, prefix="late"), users("test", 4, prefix="late")
    extra = []
    for j, question in enumerate(UNRELATED):
        # A train user now asks what a test user asked (near-duplicate): the test row must go, not move.
        extra.append(trace(f"late-train-{j}", user=new_train[j], prompt=question.replace("?", "??"), response="x"))
        extra.append(trace(f"late-test-{j}", user=new_test[j], prompt=QUESTIONS[j] + " Please answer briefly.", response="y"))
    extra.append(trace("late-dup", user=new_train[0], prompt=QUESTIONS[3], response="Answer 3.", hour=0))
    after, _ = assign_splits(table(extra + rows), HALF)
    old, new = splits_of(before), splits_of(after)
    for trace_id, (split, _) in old.items():
        now = new[trace_id][0]
        assert (split, now) not in {("train", "test"), ("test", "train")}, trace_id
        if split == "test" and now != "test":
            assert new[trace_id] == ("excluded", "near_duplicate_of_train")
    assert new["clean-0"] == ("excluded", "near_duplicate_of_train")
    # The late exact copy of train-3 is earlier (hour 0) and also train: it is kept, train-3 is now the duplicate.
    assert new["late-dup"] == ("train", None) and new["train-3"] == ("excluded", "duplicate")
    assert check_no_group_in_both_splits(after).passed


def test_a_row_outside_the_plan_is_a_named_error():
    plan = plan_splits([table([trace("a")])])
    with pytest.raises(SplitPlanMismatch):
        plan.assign(table([trace("b")]))


def test_repeated_row_ids_are_rejected():
    planner = SplitPlanner()
    planner.add(table([trace("a"), trace("a", prompt="other")]))
    with pytest.raises(ValueError, match="appears twice"):
        planner.finish()
    # also when the repeat is in a later batch
    planner = SplitPlanner()
    planner.add(table([trace("a")]))
    planner.add(table([trace("b"), trace("a", prompt="other")]))
    with pytest.raises(ValueError, match="appears twice"):
        planner.finish()


def test_the_planner_reads_only_ids_and_prompt_texts():
    planner = SplitPlanner(SplitConfig(group_by="session_id"))
    assert set(planner.columns) == {"trace_id", "observation_id", "timestamp", "messages", "prompt", "response", "session_id"}
    full = table([trace("a", session="s1"), trace("b", session="s2")])
    planner.add(full.select(planner.columns))
    plan = planner.finish()
    assert plan.assign(full)["split_key"].to_pylist() == [
        hashed_split_key("session_id:s1", SplitConfig().salt),
        hashed_split_key("session_id:s2", SplitConfig().salt),
    ]


def test_the_split_key_is_a_salted_hash_stable_across_runs_and_the_split_does_not_depend_on_it():
    import hashlib
    import hmac

    rows = [trace(f"t-{u}-{k}", user=f"u-{u:04d}", prompt=f"{QUESTIONS[k]} (user {u})") for u in range(12) for k in range(2)]
    config = SplitConfig(test_fraction=0.5, near_duplicates=None)
    first, _ = assign_splits(table(rows), config, key_salt=b"erasure-salt")
    again, _ = assign_splits(table(list(reversed(rows))), config, key_salt=b"erasure-salt")
    other, _ = assign_splits(table(rows), config, key_salt="another-salt")
    by_trace = lambda t: {r["trace_id"]: (r["split"], r["split_key"]) for r in t.to_pylist()}  # noqa: E731
    assert by_trace(first) == by_trace(again)  # stable across runs and row orders
    for row in first.to_pylist():
        expected = hmac.new(b"erasure-salt", f"user_id:{row['user_id']}".encode(), hashlib.sha256).hexdigest()
        assert row["split_key"] == expected and len(expected) == 64
        assert row["user_id"] not in row["split_key"]
    # Another key salt: other keys, the same splits (the split hash uses the public split salt).
    assert {t: split for t, (split, _) in by_trace(other).items()} == {t: split for t, (split, _) in by_trace(first).items()}
    assert not {key for _, key in by_trace(other).values()} & {key for _, key in by_trace(first).values()}
    # One key per user: a user's rows share it, so the group check still works on the hashes.
    users_per_key = {}
    for row in first.to_pylist():
        users_per_key.setdefault(row["split_key"], set()).add(row["user_id"])
    assert len(users_per_key) == 12 and all(len(users) == 1 for users in users_per_key.values())
    assert check_no_group_in_both_splits(first).passed
    assert set(first.column("split").to_pylist()) == {"train", "test"}


def test_row_texts_split_system_dialogue_and_response():
    rows = [trace("a", system="Be brief.", history=[("user", "Hi"), ("assistant", "Hello!")], prompt="Capital of France?", response="Paris.")]
    (texts,) = list(iter_row_texts(table(rows)))
    assert [m.role for m in texts.prompt_messages] == ["system", "user", "assistant", "user"]
    assert texts.system == "Be brief."
    assert texts.dialogue == "Hi\nHello!\nCapital of France?"
    assert texts.response == "Paris."


def _edit(text: str, rng: random.Random) -> str:
    """A small, adversarial edit: case, spacing, punctuation, a dropped or repeated word."""
    words = text.split()
    choice = rng.randrange(4)
    if choice == 0:
        return text.upper()
    if choice == 1:
        return "  ".join(words) + " !!"
    if choice == 2 and len(words) > 6:
        del words[rng.randrange(len(words))]
        return " ".join(words)
    position = rng.randrange(len(words))
    return " ".join(words[: position + 1] + words[position:])


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_adversarial_cells_keep_every_invariant(seed):
    rng = random.Random(seed)
    vocabulary = [f"{a}{b}" for a in ("lum", "kor", "vex", "tam", "pli", "dro") for b in ("ant", "ish", "ode", "ux", "er")]
    base = QUESTIONS + UNRELATED + [" ".join(rng.choice(vocabulary) for _ in range(8)) + "?" for _ in range(150)]
    rows = []
    for i in range(240):
        prompt = rng.choice(base)
        if rng.random() < 0.6:
            prompt = _edit(prompt, rng)
        rows.append(trace(f"r-{i}", user=f"user-{rng.randrange(60)}", prompt=prompt, response=f"answer {rng.randrange(3)}", hour=rng.randrange(24)))
    out, stats = assign_splits(table(rows), HALF)
    assert check_no_group_in_both_splits(out).passed
    assert stats.test > 20 and stats.train > 20 and stats.excluded_near_duplicate > 10  # the check has work to do
    assert stats.train + stats.test + stats.excluded_duplicate + stats.excluded_near_duplicate == 240
    kept = out.to_pylist()
    for row in kept:
        if row["split"] != "excluded":
            assert row["split"] == group_split(f"user_id:{row['user_id']}", HALF)
    train_prompts = {r["prompt"] for r in kept if r["split"] == "train"}
    test_prompts = {r["prompt"] for r in kept if r["split"] == "test"}
    assert all(jaccard(a, b) < 0.85 for a in test_prompts for b in train_prompts)

    # Backfill: more rows arrive for the same cell; nobody moves between train and test.
    more = [trace(f"m-{i}", user=f"user-{rng.randrange(90)}", prompt=_edit(rng.choice(base), rng), response="late") for i in range(80)]
    after, _ = assign_splits(table(rows + more), HALF)
    before_split, after_split = splits_of(out), splits_of(after)
    for trace_id, (split, _) in before_split.items():
        assert (split, after_split[trace_id][0]) not in {("train", "test"), ("test", "train")}
    assert check_no_group_in_both_splits(after).passed


def test_a_plan_keyed_on_the_pools_threads_is_the_plan_keyed_in_one_thread(monkeypatch):
    """The planner keys slices and hashes signatures on lib.threads' pool; ids, decisions and
    published signatures must not depend on how that work was spread."""
    from materializer_assets.lib import threads
    from materializer_assets.lib.dataset import lsh, splits

    rows, _ = _adversarial_rows()
    monkeypatch.setattr(splits, "_ADD_SLICE_ROWS", 3)  # many slices in flight
    monkeypatch.setattr(lsh, "_CHUNK_BYTES", 64)  # signatures in many pieces
    plans = {}
    for workers in (1, 2, 4):
        monkeypatch.setattr(threads, "worker_count", lambda workers=workers: workers)
        plans[workers] = plan_splits(table(rows).to_batches(max_chunksize=7), HALF)
    one = plans[1]
    assert one.stats.excluded_near_duplicate == len(QUESTIONS)
    assert one.index_rows(table(rows)).num_rows > 0
    for plan in (plans[2], plans[4]):
        assert splits_of(plan.apply(table(rows))) == splits_of(one.apply(table(rows)))
        assert plan.stats.as_metadata() == one.stats.as_metadata()
        assert pa.Table.equals(plan.index_rows(table(rows)), one.index_rows(table(rows)))
