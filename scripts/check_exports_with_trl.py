#!/usr/bin/env python3
"""Check the training exports with TRL itself: its chat templating and one step of each trainer.

Not part of the project's dependencies (TRL pulls torch, gigabytes) and not run by the tests. Run
it in a scratch virtualenv outside the repository, on a warehouse the quick start wrote:

    python3 -m venv /tmp/trlvenv
    /tmp/trlvenv/bin/pip install torch==2.13.0 trl datasets        # the CPU wheel on a machine without CUDA
    # the quick start (docs/quickstart.md): the bundled sample scored by the bundled test judge
    python -m materializer_tests.openai_server --port 8765 &
    MATERIALIZER_JUDGE_BASE_URL=http://127.0.0.1:8765/v1 MATERIALIZER_JUDGE_MODEL=test-judge \\
        MATERIALIZER_RAGAS_EMBEDDINGS_MODEL=test-embedder materializer run --date 2026-04-18
    /tmp/trlvenv/bin/python scripts/check_exports_with_trl.py --warehouse .materializer/warehouse

What it does, offline (no hub download):

1. builds a tiny random model and tokenizer locally: a byte-level BPE trained on the exports'
   own text, the Qwen2.5 chat template TRL ships (it renders ``tools``, ``tool_calls`` and tool
   messages), and a 2-layer ``LlamaConfig`` model;
2. loads every export cell with ``datasets`` (only the splits that have rows, as docs/quickstart.md
   shows) and runs ``trl.data_utils.maybe_apply_chat_template`` on every row, with the row's
   ``tools``; as a control, a row with an extra ``label`` (what SFT rows carried before) must
   still be refused, so the check means something;
3. runs one training step of SFTTrainer (sft), DPOTrainer (dpo), KTOTrainer (kto) and
   GRPOTrainer (grpo, a reward function that reads the ``reference`` column) on the train rows
   of every cell, the files exactly as written (lineage columns included).

It prints what TRL said for each and exits non-zero if anything failed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import traceback
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

EXPORTS = ("sft", "dpo", "kto", "grpo", "router")
SPLITS = ("train", "test")


def data_files(cell: str) -> dict[str, list[str]]:
    """The same as ``materializer_assets.lib.dataset.exports.data_files`` (kept here so this script
    needs nothing of the project): the files of the splits that have rows."""
    manifest = json.loads(Path(cell, "_manifest.json").read_text())
    rows = manifest.get("rows_by_subpath") or {}
    return {
        split: sorted(str(Path(cell, f)) for f in manifest["files"] if f.split("/")[0] == split)
        for split in SPLITS
        if rows.get(split)
    }


def export_cells(warehouse: str, name: str) -> list[str]:
    return sorted(glob.glob(os.path.join(warehouse, "exports", name, "date=*", "model=*")))


def load_exports(warehouse: str, cache_dir: str):
    import datasets

    loaded = {}
    for name in EXPORTS:
        for cell in export_cells(warehouse, name):
            files = data_files(cell)
            if files:
                loaded[(name, cell)] = datasets.load_dataset("parquet", data_files=files, cache_dir=cache_dir)
    return loaded


def texts_of(value, out: list[str]) -> None:
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            texts_of(item, out)
    elif isinstance(value, list):
        for item in value:
            texts_of(item, out)


def build_tiny_model(corpus: list[str], folder: str, template_name: str = "qwen2_5"):
    """A byte-level BPE tokenizer trained on ``corpus`` with TRL's Qwen2.5 chat template, and a
    2-layer Llama with random weights, both saved to ``folder``."""
    import torch
    import trl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>"]
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=2000, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    template = Path(trl.__file__).parent / "chat_templates" / f"{template_name}.jinja"
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=template.read_text(),
    )
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(fast),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        pad_token_id=fast.pad_token_id,
        eos_token_id=fast.eos_token_id,
        bos_token_id=None,
    )
    model = LlamaForCausalLM(config)
    model.generation_config.pad_token_id = fast.pad_token_id
    model.generation_config.eos_token_id = fast.eos_token_id
    model.save_pretrained(folder)
    return folder, fast


def check_templates(loaded, tokenizer) -> tuple[dict, list[str]]:
    """maybe_apply_chat_template on every row; returns counts per export and the failures."""
    from trl.data_utils import maybe_apply_chat_template

    counts: dict[str, int] = {}
    failures = []
    for (name, cell), parts in loaded.items():
        for split, part in parts.items():
            for index, row in enumerate(part):
                tools = json.loads(row["tools"]) if row.get("tools") else None
                calls = [
                    call["function"]["name"]
                    for key in ("messages", "prompt", "chosen", "rejected", "completion")
                    if isinstance(row.get(key), list)
                    for message in row[key]
                    for call in message.get("tool_calls") or ()
                ]
                try:
                    out = maybe_apply_chat_template(row, tokenizer, tools=tools)
                    rendered = "".join(v for v in out.values() if isinstance(v, str))
                    if calls:  # the calls are rendered (by name), not lost
                        assert all(c in rendered for c in calls), "tool calls not rendered"
                        counts["rows_with_tool_calls"] = counts.get("rows_with_tool_calls", 0) + 1
                    if tools:  # the definitions reach the template (their descriptions are rendered)
                        described = [t["function"].get("description") for t in tools if t["function"].get("description")]
                        assert all(d in rendered for d in described), "tools not rendered"
                        counts["rows_with_tools"] = counts.get("rows_with_tools", 0) + 1
                    if name in ("sft",):
                        assert isinstance(out["text"], str) and out["text"]
                    elif name in ("dpo",):
                        assert all(isinstance(out[k], str) for k in ("prompt", "chosen", "rejected"))
                    elif name in ("kto",):
                        assert isinstance(out["completion"], str) and isinstance(out["label"], bool)
                    elif name == "grpo":
                        assert isinstance(out["prompt"], str)
                except Exception as exc:  # reported, never hidden
                    failures.append(f"{name} {cell} {split}[{index}]: {type(exc).__name__}: {exc}")
                counts[name] = counts.get(name, 0) + 1
    return counts, failures


def control_rejects_label(tokenizer) -> str:
    """What TRL says about an SFT row with a ``label`` (the old export): it must refuse it."""
    from trl.data_utils import maybe_apply_chat_template

    row = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}], "label": "preferred"}
    try:
        maybe_apply_chat_template(row, tokenizer)
    except KeyError as exc:
        return f"KeyError: {exc}"
    return "accepted (TRL no longer checks its keys: the template check above proves less)"


def train_rows(loaded, name):
    import datasets

    parts = [parts["train"] for (n, _), parts in loaded.items() if n == name and "train" in parts]
    return datasets.concatenate_datasets(parts) if parts else None


def one_step(kind: str, model_dir: str, tokenizer, dataset, out_dir: str) -> str:
    import torch  # noqa: F401
    import trl
    from transformers import AutoModelForCausalLM

    common = dict(
        output_dir=out_dir,
        max_steps=1,
        per_device_train_batch_size=2,
        gradient_accumulation_steps=1,
        learning_rate=1e-3,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        use_cpu=True,
        bf16=False,
        seed=0,
    )
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    if kind == "sft":
        trainer = trl.SFTTrainer(model=model, args=trl.SFTConfig(max_length=1024, **common), train_dataset=dataset,
                                 processing_class=tokenizer)
    elif kind == "dpo":
        trainer = trl.DPOTrainer(model=model, args=trl.DPOConfig(max_length=1024, **common), train_dataset=dataset,
                                 processing_class=tokenizer)
    elif kind == "kto":
        trainer = trl.KTOTrainer(model=model, args=trl.KTOConfig(max_length=1024, **common), train_dataset=dataset,
                                 processing_class=tokenizer)
    elif kind == "grpo":
        def reference_overlap(completions, reference, **kwargs):
            """A reward function that reads the export's ``reference`` column (passed by TRL as a keyword)."""
            scores = []
            for completion, ref in zip(completions, reference):
                text = completion[-1]["content"] if isinstance(completion, list) else completion
                words, wanted = set((text or "").lower().split()), set((ref or "").lower().split())
                scores.append(len(words & wanted) / max(len(wanted), 1))
            return scores

        config = trl.GRPOConfig(num_generations=2, max_completion_length=8, **common)
        trainer = trl.GRPOTrainer(model=model, reward_funcs=reference_overlap, args=config, train_dataset=dataset,
                                  processing_class=tokenizer)
    else:
        raise ValueError(kind)
    result = trainer.train()
    loss = result.training_loss
    logged = [entry for entry in trainer.state.log_history if "loss" in entry or "train_loss" in entry]
    return f"1 step, training_loss={loss:.4f}; columns={sorted(dataset.column_names)}; log={logged[-1] if logged else {}}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--warehouse", default=".materializer/warehouse")
    parser.add_argument("--only", choices=["templates", "trainers"], default=None)
    parser.add_argument(
        "--chat-template", default="qwen2_5", help="a template TRL ships (trl/chat_templates/NAME.jinja), default qwen2_5"
    )
    args = parser.parse_args(argv)

    import datasets
    import torch
    import transformers
    import trl

    print(f"trl {trl.__version__}, transformers {transformers.__version__}, torch {torch.__version__}, datasets {datasets.__version__}")
    ok = True
    with tempfile.TemporaryDirectory() as scratch:
        loaded = load_exports(args.warehouse, os.path.join(scratch, "hf"))
        if not loaded:
            print(f"no export with rows under {args.warehouse}/exports: run the quick start first")
            return 2
        for (name, cell), parts in sorted(loaded.items()):
            print(f"  {name:6} {os.path.relpath(cell, args.warehouse)}: " + ", ".join(f"{s}={len(p)}" for s, p in parts.items()))
        corpus: list[str] = []
        for parts in loaded.values():
            for part in parts.values():
                for row in part:
                    texts_of(row, corpus)
        model_dir, tokenizer = build_tiny_model(corpus, os.path.join(scratch, "tiny"), args.chat_template)
        print(f"tiny model: 2-layer Llama, vocabulary {len(tokenizer)}, chat template {args.chat_template}")

        if args.only in (None, "templates"):
            counts, failures = check_templates(loaded, tokenizer)
            rows = sum(v for k, v in counts.items() if k in EXPORTS)
            print(f"maybe_apply_chat_template: {rows} rows ({counts}), {len(failures)} failed")
            for failure in failures[:20]:
                print(f"  FAIL {failure}")
            ok &= not failures
            control = control_rejects_label(tokenizer)
            print(f"control: an SFT row with a 'label' column -> {control}")
            ok &= control.startswith("KeyError")

        if args.only in (None, "trainers"):
            for kind in ("sft", "dpo", "kto", "grpo"):
                dataset = train_rows(loaded, kind)
                if dataset is None or len(dataset) < 2:
                    print(f"{kind.upper()}Trainer: not run, {0 if dataset is None else len(dataset)} train row(s)")
                    ok = False
                    continue
                try:
                    said = one_step(kind, model_dir, tokenizer, dataset, os.path.join(scratch, f"out-{kind}"))
                    print(f"{kind.upper()}Trainer on {len(dataset)} rows: {said}")
                except Exception as exc:
                    ok = False
                    print(f"{kind.upper()}Trainer on {len(dataset)} rows: FAILED {type(exc).__name__}: {exc}")
                    traceback.print_exc()
    print("all good" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
