"""Constrained decoding (engine/constraints.py): the random-weight tiny model never writes JSON by
itself, so every valid reply here is the constraint's doing."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

import engine
from engine import constraints
from engine.constraints import ConstraintError
from engine.sampling import SamplingParams
from engine.session import ChatSession, DoneEvent, StopReason
from test_cli import cli

ASSETS = Path(__file__).resolve().parents[1] / "assets"
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
MESSAGES = [{"role": "user", "content": "Describe yourself as JSON."}]

# Objects close with "additionalProperties": false (as OpenAI's strict mode requires): otherwise
# JSON Schema allows extra keys, and a random model invents long ones until the budget runs out.
SCHEMAS = {
    "nested objects": {
        "type": "object",
        "properties": {
            "owner": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 6},
                    "address": {
                        "type": "object",
                        "properties": {"city": {"type": "string", "maxLength": 8}},
                        "required": ["city"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "address"],
                "additionalProperties": False,
            }
        },
        "required": ["owner"],
        "additionalProperties": False,
    },
    "arrays with min and max items": {
        "type": "object",
        "properties": {
            "scores": {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9}, "minItems": 2, "maxItems": 4},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 4}, "minItems": 1, "maxItems": 2},
        },
        "required": ["scores", "tags"],
        "additionalProperties": False,
    },
    "enums": {
        "type": "object",
        "properties": {"color": {"enum": ["red", "green", "blue"]}, "size": {"type": "string", "enum": ["S", "M", "XL"]}},
        "required": ["color", "size"],
        "additionalProperties": False,
    },
    "integer bounds": {
        "type": "object",
        "properties": {
            "age": {"type": "integer", "minimum": 18, "maximum": 99},
            "level": {"type": "integer", "exclusiveMinimum": 0, "exclusiveMaximum": 5},
        },
        "required": ["age", "level"],
        "additionalProperties": False,
    },
    "required and optional": {  # properties come in this order; the optional ones first, so each can be skipped
        "type": "object",
        "properties": {
            "nickname": {"type": "string", "maxLength": 6},
            "active": {"type": "boolean"},
            "id": {"type": "integer", "minimum": 0, "maximum": 1000},
        },
        "required": ["id"],
        "additionalProperties": False,
    },
    "strings with maxLength and patterns": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{2}$"},
            "note": {"type": "string", "maxLength": 10},
        },
        "required": ["code", "note"],
        "additionalProperties": False,
    },
    "model card (assets/)": json.loads((ASSETS / "model_card.schema.json").read_text()),
}


def reply(model: engine.Model, constraint, temperature: float, seed: int, max_tokens: int = 300) -> DoneEvent:
    session = ChatSession(model, n_ctx=512, params=SamplingParams(temperature=temperature, top_k=0, top_p=1.0, seed=seed))
    return list(session.chat(MESSAGES, max_tokens, constraint=constraint))[-1]


def test_the_tiny_model_does_not_write_json_by_itself(tiny_model: engine.Model) -> None:
    done = reply(tiny_model, None, temperature=1.0, seed=0, max_tokens=40)
    with pytest.raises(json.JSONDecodeError):
        json.loads(done.text)


@pytest.mark.parametrize("name", SCHEMAS)
def test_replies_validate_against_the_schema(tiny_model: engine.Model, name: str) -> None:
    schema = SCHEMAS[name]
    constraint = constraints.json_schema(tiny_model, schema)
    # greedy random weights repeat one digit forever in an unbounded fraction (memory_gb): sampled only
    greedy = [] if name.startswith("model card") else [(0.0, 0)]
    for temperature, seed in [*greedy, (1.0, 1), (1.5, 3)]:
        done = reply(tiny_model, constraint, temperature, seed)
        assert (done.stop_reason, done.incomplete) == (StopReason.EOS, False), done.text
        jsonschema.validate(json.loads(done.text), schema)
        assert not re.search(r"\s", JSON_STRING.sub("", done.text)), done.text  # compact: no whitespace outside strings


def test_optional_properties_are_optional(tiny_model: engine.Model) -> None:
    constraint = constraints.json_schema(tiny_model, SCHEMAS["required and optional"])
    keys = {tuple(json.loads(reply(tiny_model, constraint, 1.0, seed).text)) for seed in range(8)}
    assert keys == {("id",), ("nickname", "id"), ("active", "id"), ("nickname", "active", "id")}


def test_json_object_gives_one_object(tiny_model: engine.Model) -> None:
    """Any object may hold strings of any length, which a random model can wander in until the
    budget ends: then the reply must say it is incomplete; every finished one is one object."""
    constraint = constraints.json_object(tiny_model)
    replies = [reply(tiny_model, constraint, 1.0, seed) for seed in range(6)]
    finished = [done for done in replies if done.stop_reason == StopReason.EOS]
    assert all(isinstance(json.loads(done.text), dict) and not done.incomplete for done in finished)
    assert all((done.stop_reason, done.incomplete) == (StopReason.MAX_TOKENS, True) for done in replies if done not in finished)
    assert len(finished) >= 4


def test_greedy_under_a_constraint_is_reproducible(tiny_model: engine.Model) -> None:
    constraint = constraints.json_schema(tiny_model, SCHEMAS["arrays with min and max items"])
    first, again = (reply(tiny_model, constraint, 0.0, seed=7) for _ in range(2))
    assert first.token_ids == again.token_ids and first.text == again.text
    sampled, resampled = (reply(tiny_model, constraint, 1.0, seed=7) for _ in range(2))
    assert sampled.token_ids == resampled.token_ids


def test_running_out_of_tokens_reports_incomplete_json(tiny_model: engine.Model) -> None:
    done = reply(tiny_model, constraints.json_schema(tiny_model, SCHEMAS["nested objects"]), 0.0, 0, max_tokens=3)
    assert (done.stop_reason, done.incomplete, len(done.token_ids)) == (StopReason.MAX_TOKENS, True, 3)
    assert done.text.startswith("{")
    free = reply(tiny_model, None, 0.0, 0, max_tokens=3)
    assert free.incomplete is False  # no constraint, nothing to be incomplete about


@pytest.mark.parametrize(
    "schema, message",
    [
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "cannot use this JSON Schema: Invalid type: strin"),
        ({"$ref": "#/definitions/missing"}, "cannot use this JSON Schema: Pointer '/definitions/missing' does not exist"),
        ("{not json", "the JSON Schema is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        ("[1, 2]", "a JSON Schema must be a JSON object"),
    ],
)
def test_a_schema_that_cannot_compile_is_one_line(tiny_model: engine.Model, schema, message: str) -> None:
    with pytest.raises(ConstraintError) as error:
        constraints.json_schema(tiny_model, schema)
    assert str(error.value) == message


def test_the_mask_allows_only_tokens_that_keep_the_json_valid(tiny_model: engine.Model) -> None:
    tokenizer = tiny_model.tokenizer
    matcher = constraints.json_object(tiny_model).start()
    logits = matcher.mask(np.zeros(tokenizer.n_vocab + 5, dtype=np.float32))
    allowed = {i for i in range(len(logits)) if np.isfinite(logits[i])}
    assert tokenizer.token_id("{") in allowed
    assert all(tokenizer.token_bytes(i).startswith(b"{") for i in allowed)  # compact: no leading space
    assert not allowed & tokenizer.stop_ids
    assert np.all(np.isneginf(logits[tokenizer.n_vocab :]))  # padding rows past the vocabulary


def test_thinking_is_free_and_the_schema_applies_after_it(tiny_model: engine.Model) -> None:
    tokenizer = tiny_model.tokenizer
    think, end_think = tokenizer.token_id("<think>"), tokenizer.token_id("</think>")
    constraint = constraints.json_object(tiny_model).with_thinking(True)
    matcher = constraint.start()

    def allowed() -> set[int]:
        logits = matcher.mask(np.zeros(tokenizer.n_vocab, dtype=np.float32))
        return set(np.flatnonzero(np.isfinite(logits)).tolist())

    assert allowed() == {think}
    for token in [think, *tokenizer.encode("hmm: not JSON {at all\n")]:
        matcher.accept(token)
    assert end_think in allowed() and tokenizer.encode("x")[0] in allowed()
    matcher.accept(end_think)
    assert tokenizer.encode("x")[0] not in allowed()
    for token in tokenizer.encode('\n\n{"a":[1]}'):
        matcher.accept(token)
    assert matcher.complete and matcher.finished
    assert constraints.json_object(tiny_model).with_thinking(False).after_thinking is False


# ---- the CLI: bonsai-tui generate --json-schema FILE / --json-object ------------------------------


def test_generate_json_schema_prints_valid_json(tiny_model_path: Path, tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(SCHEMAS["enums"]))
    result = cli("generate", "--model", str(tiny_model_path), "--prompt", "pick", "--json-schema", str(schema_file),
                 "--temperature", "1", "--seed", "3")
    assert result.returncode == 0, result.stderr
    jsonschema.validate(json.loads(result.stdout), SCHEMAS["enums"])
    assert result.stderr.startswith("[eos: ")


def test_generate_json_object_with_json_output_carries_text(tiny_model_path: Path, tiny_model: engine.Model) -> None:
    result = cli("generate", "--model", str(tiny_model_path), "--prompt", "hello", "--json-object", "--json",
                 "--temperature", "0.7", "--seed", "1", "--max-tokens", "300")
    out = json.loads(result.stdout)
    assert result.returncode == 0 and out["stop_reason"] == "eos" and out["incomplete"] is False
    assert json.loads(out["text"]) == {}  # this model's top-20 / top-p 0.85 closes at once
    params = tiny_model.default_params().with_changes(temperature=0.7, seed=1)
    session = ChatSession(tiny_model, params=params)
    done = list(session.chat([{"role": "user", "content": "hello"}], 300, constraint=constraints.json_object(tiny_model)))[-1]
    assert (out["text"], out["tokens"]) == (done.text, done.token_ids)


def test_generate_with_a_schema_that_cannot_compile_exits_2(tiny_model_path: Path, tmp_path: Path) -> None:
    schema_file = tmp_path / "bad.json"
    schema_file.write_text('{"type": "object", "properties": {"a": {"type": "strin"}}}')
    result = cli("generate", "--model", str(tiny_model_path), "--prompt", "x", "--json-schema", str(schema_file))
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr == "bonsai-tui generate: cannot use this JSON Schema: Invalid type: strin\n"


def test_generate_reports_json_cut_short_by_max_tokens(tiny_model_path: Path) -> None:
    result = cli("generate", "--model", str(tiny_model_path), "--prompt", "x", "--json-object", "--max-tokens", "1",
                 "--json", "--temperature", "0")
    out = json.loads(result.stdout)
    assert (result.returncode, out["text"], out["stop_reason"], out["incomplete"]) == (1, "{", "max_tokens", True)
    assert result.stderr == (
        "bonsai-tui generate: incomplete JSON: generation stopped (max_tokens) before it was complete; raise --max-tokens\n"
    )


def test_schema_problem_checks_without_a_model() -> None:
    assert constraints.schema_problem(json.dumps(SCHEMAS["nested objects"])) is None
    assert constraints.schema_problem('{"type": "strin"}') == "cannot use this JSON Schema: Invalid type: strin"
    assert constraints.schema_problem('{"type": "string", "pattern": "["}') == (
        "cannot use this JSON Schema: regex parse error: [ error: unclosed character class"
    )
    assert constraints.schema_problem("{") == (
        "the JSON Schema is not valid JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"
    )
