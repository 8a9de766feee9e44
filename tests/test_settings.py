"""Settings: camelCase keys, defaults for everything, a message (not a crash) for bad values."""

from __future__ import annotations

from completion.settings import Settings


def test_camel_case_keys_map_to_typed_fields() -> None:
    s, problems = Settings.from_json(
        {"maxTokens": 64, "modelPath": "/m", "useSlidingWindow": 1, "updatePolicy": "full"}
    )
    assert (s.max_tokens, s.model_path, s.update_policy) == (64, "/m", "full")
    assert problems == ["unknown setting 'useSlidingWindow' ignored"]


def test_bad_values_keep_the_default_and_say_why() -> None:
    s, problems = Settings.from_json({"threads": 0, "maxTokens": "3", "updatePolicy": "lazy", "weights": "int3"})
    assert s == Settings()
    assert len(problems) == 4 and "between 1 and 256" in problems[0] and "integer" in problems[1]


def test_vscode_section_and_non_objects() -> None:
    assert Settings.from_json({"livekv": {"maxTokens": 3}})[0].max_tokens == 3
    assert Settings.from_json(None) == (Settings(), [])
    assert Settings.from_json([1, 2])[1] == ["settings must be an object, got list"]


def test_updates_apply_over_current_settings() -> None:
    first, _ = Settings.from_json({"threads": 3})
    second, _ = Settings.from_json({"maxTokens": 10}, base=first)
    assert (second.threads, second.max_tokens) == (3, 10)


def test_draft_method_is_one_of_the_methods() -> None:
    s, problems = Settings.from_json({"draftMethod": "superposed", "drafts": 3})
    assert (s.draft_method, s.drafts, problems) == ("superposed", 3, [])
    s, problems = Settings.from_json({"draftMethod": "nucleus"})
    assert s.draft_method == Settings().draft_method
    assert len(problems) == 1 and "branches, superposed, beam, greedy-runs" in problems[0]
