import pytest

from materializer_assets.lib.slugs import MAX_SLUG_LENGTH, UNKNOWN_MODEL_SLUG, is_valid_slug, model_slug


@pytest.mark.parametrize("name", ["glm-5-32b", "gpt-4o-mini-2024-07-18", "llama3.1-8b", "qwen2_5"])
def test_names_that_are_already_slugs_are_kept(name):
    assert model_slug(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "Qwen/Qwen3-Coder-4B-Instruct",
        "a|b",
        "a,b",
        "../../etc/passwd",
        "..",
        "model with spaces",
        "modèle-été",
        "模型",
        "🤖",
        "x" * 500,
        "-leading-dash",
        "trailing.",
        "UPPER",
    ],
)
def test_awkward_names_become_valid_slugs(name):
    slug = model_slug(name)
    assert is_valid_slug(slug), slug
    assert len(slug) <= MAX_SLUG_LENGTH
    for forbidden in ("|", ",", "/", "..", " "):
        assert forbidden not in slug


def test_slugs_are_deterministic_and_readable():
    assert model_slug("Qwen/Qwen3-Coder-4B-Instruct") == model_slug("Qwen/Qwen3-Coder-4B-Instruct")
    assert model_slug("Qwen/Qwen3-Coder-4B-Instruct").startswith("qwen-qwen3-coder-4b-instruct-")
    assert model_slug("modèle-été").startswith("modele-ete-")


def test_names_that_differ_only_in_case_or_separator_do_not_collide():
    names = ["Qwen/X", "qwen/x", "qwen-x", "QWEN X", "qwen|x", "qwen,x", "qwen..x", "qwen.x"]
    slugs = {model_slug(name) for name in names}
    assert len(slugs) == len(names)


def test_long_names_sharing_a_prefix_do_not_collide():
    a, b = "m" * 200 + "-a", "m" * 200 + "-b"
    assert model_slug(a) != model_slug(b)
    assert len(model_slug(a)) <= MAX_SLUG_LENGTH


@pytest.mark.parametrize("name", [None, "", "   "])
def test_missing_names_are_unknown(name):
    assert model_slug(name) == UNKNOWN_MODEL_SLUG


def test_a_model_literally_named_unknown_is_not_the_missing_model():
    assert model_slug("unknown") != UNKNOWN_MODEL_SLUG
    assert is_valid_slug(model_slug("unknown"))


def test_names_without_any_ascii_get_a_hash_slug():
    assert model_slug("模型").startswith("model-")
    assert model_slug("模型") != model_slug("模特")
