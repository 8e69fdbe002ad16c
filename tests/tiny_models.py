"""Tiny random-weight models built locally at test time (no hub, no network)."""

from __future__ import annotations

from pathlib import Path

CORPUS = [
    "Question: What is 2 + 2? Options: A. 3 B. 4 C. 5 D. 6 Answer: Let's think step by step. The answer is (B).",
    "The following are multiple choice questions (with answers) about biology, law, math and physics.",
    "Think step by step and then finish your answer with the answer is (X) where X is the correct letter choice.",
    "A B C D E F G H I J 0 1 2 3 4 5 6 7 8 9 cell energy force court value price mind history",
]

CHAT_TEMPLATES = {
    "plain": "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}{% if add_generation_prompt %}assistant:{% endif %}",
    "tagged": "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}</{{ m['role'] }}>{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}",
}


def build_tokenizer(folder: Path, chat_template: str | None = None):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>", "<pad>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tokenizer.train_from_iterator(CORPUS * 5, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>", model_max_length=8192)
    if chat_template:
        fast.chat_template = CHAT_TEMPLATES[chat_template]
    fast.save_pretrained(folder)
    return fast


def build_causal_lm(folder: str | Path, seed: int, hidden_size: int = 32, layers: int = 2,
                    chat_template: str | None = None) -> Path:
    """A Llama-architecture causal LM with random weights that lm-eval's ``hf`` model loads."""
    architecture = {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "num_hidden_layers": layers,
                    "num_attention_heads": 4, "num_key_value_heads": 4}
    return build_llama(folder, seed, architecture, chat_template=chat_template)


def build_llama(folder: str | Path, seed: int, architecture: dict, chat_template: str | None = None,
                dtype: str = "float32", device: str = "cpu") -> Path:
    """Random weights of a ``LlamaConfig`` with ``architecture``'s sizes, with the tiny tokenizer.

    ``vocab_size`` may exceed the tokenizer's (a real model's embedding size, rows unused);
    ``device="cuda"`` initialises billions of weights in seconds instead of minutes.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(folder, chat_template)
    torch.manual_seed(seed)
    config = LlamaConfig(**{"vocab_size": len(tokenizer), "max_position_embeddings": 8192, **architecture},
                         bos_token_id=1, eos_token_id=2, pad_token_id=3)
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(getattr(torch, dtype))
    try:
        with torch.device(device):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    model.save_pretrained(folder)
    del model
    if device != "cpu":
        torch.cuda.empty_cache()
    return folder
