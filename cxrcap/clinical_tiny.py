"""Random-weight copies of the clinical scorers' models, where the libraries look for them, offline.

The clinical metrics (`cxrcap.clinical`) run the field's libraries (RadEval and what it
vendors), which fetch their models from the hub by id. `tiny_scorer_env()` writes random-weight
copies of every one of those models under the same ids, files and cache layout the libraries
download into, and returns the environment that points the libraries there with the hub off:

| library (RadEval 2.2.1)      | id, file                                            | cache the library reads  |
|------------------------------|-----------------------------------------------------|--------------------------|
| BERTScore (vendored)         | `distilroberta-base` (AutoTokenizer, AutoModel)      | `HF_HUB_CACHE`            |
| F1CheXbert, SembScore        | `bert-base-uncased` (AutoConfig, BertTokenizer);     | `HF_HUB_CACHE`;           |
|                              | `StanfordAIMI/RRG_scorers` `chexbert.pth`            | `$XDG_CACHE_HOME/chexbert` |
| RadGraph (vendored), RadCliQ | `StanfordAIMI/RRG_scorers` `radgraph.tar.gz`,        | `$XDG_CACHE_HOME/radgraph/0.1.18` |
|                              | `radgraph-xl.tar.gz` (config.json, vocabulary/, weights.th) |                    |
| RaTEScore                    | `Angelakeke/RaTE-NER-Deberta` (token classification), | `HF_HUB_CACHE`           |
|                              | `FremyCompany/BioLORD-2023-C` (AutoModel)            |                          |

Each hub entry is `models--org--name/snapshots/<revision>/<files>` with `refs/main` naming the
revision, as `huggingface_hub` writes it. The models have the real ones' architectures (RoBERTa,
BERT with CheXbert's 13 four-way heads and one two-way head, DyGIE over a BERT encoder,
DeBERTa-v2 with RaTE's entity labels, MPNet), tiny (2 layers, width 32) or, with
`base_size=True`, at base size (the encoders' default configurations: what timing needs). Their
vocabularies come from the tiny variants' WordPiece vocabulary (`assets/tiny-vocab.txt`).

What is ours, not the real files': the contents of the RadGraph archives (the real ones hold a
DyGIE configuration and an encoder id we cannot read offline: ours is DyGIE's configuration
format with `bert-base-uncased` as the encoder) and the tokenizers' vocabularies. GREEN (a 7B
model with its own remote code) is not built. Scores made on these copies are noise: they show
that every line of the libraries' path runs, never what a caption is worth.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from pathlib import Path

import torch
from transformers import (
    BertConfig,
    BertModel,
    BertTokenizer,
    DebertaV2Config,
    DebertaV2ForTokenClassification,
    DebertaV2Tokenizer,
    MPNetConfig,
    MPNetModel,
    MPNetTokenizer,
    RobertaConfig,
    RobertaModel,
    RobertaTokenizer,
)

from .cache import building, cache_root
from .clinical import import_radeval
from .tiny import TINY_LAYERS, VOCAB_FILE

FORMAT_VERSION = "4"  # bump when anything written below changes, so caches rebuild
RRG_SCORERS = "StanfordAIMI/RRG_scorers"
RADGRAPH_RELEASE = "0.1.18"  # the cache folder RadEval's vendored RadGraph reads (its _UPSTREAM_RADGRAPH_VERSION)
RADGRAPH_ENTITIES = ("ANAT-DP", "OBS-DP", "OBS-U", "OBS-DA")
RADGRAPH_RELATIONS = ("modify", "located_at", "suggestive_of")
RATE_ENTITIES = ("ABNORMALITY", "NON-ABNORMALITY", "DISEASE", "NON-DISEASE", "ANATOMY")
# DeBERTa-v3-base's shape (the RaTE NER model's, we take it; DebertaV2Config's defaults are v2-xlarge's).
DEBERTA_V3_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                       relative_attention=True, position_buckets=256, max_relative_positions=-1,
                       pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", position_biased_input=False)
MAX_LENGTH = 512  # every real tokenizer here says so; the libraries truncate to it
CHEXBERT_FOUR_WAY_HEADS = 13  # 13 conditions (blank/positive/negative/uncertain) + No Finding (two-way)


def tiny_scorer_env(*, base_size: bool = False) -> dict[str, str]:
    """Build the random scorer models once (into cxrcap's cache) and return the environment that
    makes the libraries load them with the hub off. Set it before `huggingface_hub` is imported
    (it reads HF_HUB_* once): in a fresh process, as the tests do."""
    root = cache_root() / f"clinical-{'base' if base_size else 'tiny'}-{_cache_key()}"
    if not (root / "complete").exists():
        with building(root) as staging:
            _build(staging, base_size=base_size)
            (staging / "complete").write_text("")
    return {
        "HF_HUB_CACHE": str(root / "hub"),
        "XDG_CACHE_HOME": str(root / "xdg"),  # appdirs' user_cache_dir: CheXbert's and RadGraph's caches
        "HF_HUB_OFFLINE": "1",
    }


def _cache_key() -> str:
    return hashlib.sha256(VOCAB_FILE.read_bytes() + FORMAT_VERSION.encode()).hexdigest()[:12]


def _build(root: Path, *, base_size: bool) -> None:
    hub, xdg = root / "hub", root / "xdg"
    words = _words()
    torch.manual_seed(0)
    _save(hub, "distilroberta-base", *_roberta(words, base_size))
    bert_tokenizer, bert = _bert(base_size)
    _save(hub, "bert-base-uncased", bert_tokenizer, bert)
    _save(hub, "Angelakeke/RaTE-NER-Deberta", *_rate_ner(words, base_size))
    _save(hub, "FremyCompany/BioLORD-2023-C", *_mpnet(base_size))
    with tempfile.TemporaryDirectory() as scratch:
        chexbert = Path(scratch, "chexbert.pth")
        torch.save({"model_state_dict": _chexbert_state(bert.config)}, chexbert)
        _place(xdg / "chexbert", RRG_SCORERS, {"chexbert.pth": chexbert})
        archives = {}
        for model_type in ("radgraph", "radgraph-xl"):
            archives[f"{model_type}.tar.gz"] = _radgraph_archive(Path(scratch), model_type, _snapshot(hub, "bert-base-uncased"))
        _place(xdg / "radgraph" / RADGRAPH_RELEASE, RRG_SCORERS, archives)


def _layers(base_size: bool) -> dict:
    return {} if base_size else dict(TINY_LAYERS)


def _words() -> list[str]:
    """Whole words of the tiny WordPiece vocabulary: the corpus the other tokenizers are made from."""
    tokens = VOCAB_FILE.read_text(encoding="utf-8").splitlines()
    return [token for token in tokens if token.isalpha() and not token.startswith("##")]


def _roberta(words: list[str], base_size: bool):
    from tokenizers import ByteLevelBPETokenizer

    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(words, vocab_size=1000, min_frequency=1, special_tokens=specials, show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(pair) if isinstance(pair, list) else tuple(pair.split(" ")) for pair in model["merges"]]
    tokenizer = RobertaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=MAX_LENGTH)
    # distilroberta-base: RoBERTa with 6 layers, even tiny (BERTScore reads its layer 5; RoBERTa's
    # positions start after the padding index, hence 514).
    config = RobertaConfig(vocab_size=len(tokenizer), max_position_embeddings=514, type_vocab_size=1,
                           **dict(_layers(base_size), num_hidden_layers=6))
    return tokenizer, RobertaModel(config)


def _bert(base_size: bool):
    tokenizer = BertTokenizer(vocab=str(VOCAB_FILE), model_max_length=MAX_LENGTH)
    return tokenizer, BertModel(BertConfig(vocab_size=len(tokenizer), **_layers(base_size)))


def _rate_ner(words: list[str], base_size: bool):
    # A Unigram vocabulary (DeBERTa-v3's kind): the specials, every word as a piece, and single letters.
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    pieces = [(token, 0.0) for token in specials]
    pieces += [("\u2581" + word, -float(len(word))) for word in words]
    pieces += [(letter, -20.0) for letter in "abcdefghijklmnopqrstuvwxyz0123456789.,;:-()/%'"]
    tokenizer = DebertaV2Tokenizer(vocab=pieces, unk_id=1, model_max_length=MAX_LENGTH)
    labels = ["O"] + [f"{prefix}-{entity}" for entity in RATE_ENTITIES for prefix in ("B", "I")]
    config = DebertaV2Config(
        vocab_size=len(tokenizer), id2label=dict(enumerate(labels)), label2id={l: i for i, l in enumerate(labels)},
        **(DEBERTA_V3_BASE if base_size else DEBERTA_V3_BASE | TINY_LAYERS),
    )
    return tokenizer, DebertaV2ForTokenClassification(config)


def _mpnet(base_size: bool):
    tokens = VOCAB_FILE.read_text(encoding="utf-8").splitlines()
    vocab = {token: index for index, token in enumerate(["<s>", "<pad>", "</s>", "<mask>"] + tokens)}
    tokenizer = MPNetTokenizer(vocab=vocab, model_max_length=MAX_LENGTH)
    return tokenizer, MPNetModel(MPNetConfig(vocab_size=len(tokenizer), **_layers(base_size)))


def _chexbert_state(config: BertConfig) -> dict[str, torch.Tensor]:
    """CheXbert's checkpoint as saved from `nn.DataParallel`: `module.bert.*` and the linear heads."""
    hidden = config.hidden_size
    heads = [torch.nn.Linear(hidden, 4) for _ in range(CHEXBERT_FOUR_WAY_HEADS)] + [torch.nn.Linear(hidden, 2)]
    state = {f"module.bert.{name}": value for name, value in BertModel(config).state_dict().items()}
    for index, head in enumerate(heads):
        state.update({f"module.linear_heads.{index}.{name}": value for name, value in head.state_dict().items()})
    return state


def _radgraph_archive(scratch: Path, model_type: str, encoder: Path) -> Path:
    """A RadGraph model archive as RadEval's vendored loader reads it: config.json (DyGIE's
    configuration), vocabulary/ (AllenNLP's files, one per label namespace) and weights.th."""
    folder = scratch / model_type
    vocabulary = folder / "vocabulary"
    vocabulary.mkdir(parents=True)
    (vocabulary / "non_padded_namespaces.txt").write_text("*tags\n*labels\n")
    # The null label "" comes first (index 0), as DyGIE's reader writes its label vocabularies.
    (vocabulary / f"{model_type}__ner_labels.txt").write_text("\n".join(("", *RADGRAPH_ENTITIES)) + "\n")
    (vocabulary / f"{model_type}__relation_labels.txt").write_text("\n".join(RADGRAPH_RELATIONS) + "\n")
    bert = {"type": "pretrained_transformer_mismatched", "model_name": "bert-base-uncased", "max_length": 512}
    config = {
        "dataset_reader": {"type": "dygie", "max_span_width": 12, "token_indexers": {"bert": bert}},
        "model": {
            "type": "dygie",
            "embedder": {"token_embedders": {"bert": bert}},
            "feature_size": 20,
            "feedforward_params": {"num_layers": 2, "hidden_dims": 32, "dropout": 0.4},
            "initializer": {},
            "module_initializer": {},
            "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "max_span_width": 12,
            "target_task": "relation",
            "modules": {
                "coref": {"spans_per_word": 0.3, "max_antecedents": 100, "coref_prop": 0},
                "ner": {},
                "relation": {"spans_per_word": 0.5},
                "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.8,
                           "loss_weights": {"trigger": 1.0, "arguments": 0.5}},
            },
        },
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    # The vendored loader builds the model from these files and then loads weights.th strictly.
    torch.save(_dygie_state(folder, encoder), folder / "weights.th")
    archive = scratch / f"{model_type}.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(folder.iterdir()):
            tar.add(path, arcname=path.name)
    return archive


def _dygie_state(folder: Path, encoder: Path) -> dict[str, torch.Tensor]:
    """The random state of the DyGIE model that `folder`'s files describe, built as RadEval's
    vendored `RadGraph.__init__` builds it (vocabulary, BERT embedder, DyGIE), with the encoder
    read from the `encoder` folder (its weights are part of this state)."""
    from dotmap import DotMap

    import_radeval()
    from radeval.metrics.radgraph._vendor.allennlp.data import Vocabulary
    from radeval.metrics.radgraph._vendor.allennlp.modules import text_field_embedders, token_embedders
    from radeval.metrics.radgraph._vendor.dygie.models import dygie

    config = DotMap(json.loads((folder / "config.json").read_text()))
    vocabulary = Vocabulary.from_files(folder / "vocabulary")
    bert = config.model.embedder.token_embedders.bert
    embedder = text_field_embedders.BasicTextFieldEmbedder({
        "bert": token_embedders.PretrainedTransformerMismatchedEmbedder(model_name=str(encoder), max_length=bert.max_length)
    })
    model = config.model
    for name in ("type", "embedder", "initializer", "module_initializer"):
        del model[name]
    return dygie.DyGIE(vocab=vocabulary, embedder=embedder, **model).state_dict()


def _save(hub: Path, repo_id: str, tokenizer, model) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        _place(hub, repo_id, {path.name: path for path in Path(scratch).iterdir()})


def _place(cache_dir: Path, repo_id: str, files: dict[str, Path]) -> None:
    """Files of a hub repository in `huggingface_hub`'s cache layout (one snapshot, refs/main)."""
    snapshot = _snapshot(cache_dir, repo_id)
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, path in files.items():
        (snapshot / name).write_bytes(path.read_bytes())
    (snapshot.parent.parent / "refs").mkdir(exist_ok=True)
    (snapshot.parent.parent / "refs" / "main").write_text(snapshot.name)


def _snapshot(cache_dir: Path, repo_id: str) -> Path:
    revision = hashlib.sha1(f"cxrcap-random-{repo_id}-{FORMAT_VERSION}".encode()).hexdigest()
    return cache_dir / f"models--{repo_id.replace('/', '--')}" / "snapshots" / revision
