"""The fifth slot: tiny random VLMs of three real architectures, loaded as a hub model is, and
every error a user can meet reaching them with its fix."""

import json
import re
import shutil
import statistics
import struct
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image
from transformers import BertConfig, BertModel

from cxrcap import checkpoints
from cxrcap.captioner import DecodeSettings, VariantUnavailable, cap_caption
from cxrcap.extra import DEFAULT_PROMPT, TASK_PROMPTS, ExtraCaptioner, WeightsSize, check_fits, weights_size
from cxrcap.lineup import build_captioners
from cxrcap.scheduler import stream_captions
from cxrcap.tiny_vlm import ARCHITECTURES, tiny_vlm_source
from cxrcap.variants import VARIANT_IDS
from processes import REPO, run_python

CHAT_MARKUP = ("<start_of_turn>", "<end_of_turn>", "<|im_start|>", "<end_of_utterance>", "Assistant:", "USER:",
               "ASSISTANT:", "<image>", "user\n", "model\n")


@pytest.fixture(scope="module")
def xray(cxr_image) -> Image.Image:
    return Image.open(cxr_image).convert("RGB")


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_tiny_vlm_loads_like_a_hub_model_and_only_its_answer_is_kept(architecture, xray, isolated_cache):
    name = "tiny" if architecture == "gemma3" else f"tiny-{architecture}"
    extra = ExtraCaptioner.named(name, tiny_random=True)
    start = time.perf_counter()
    extra.load()
    assert type(extra.model).__name__.lower().startswith(architecture.replace("3", ""))
    assert extra.processor.chat_template  # a real processor with a chat template
    settings = DecodeSettings(max_new_tokens=12)
    images = extra.preprocess([xray, xray.rotate(90)])  # a batch: left padding, one answer each
    ids = extra.generate_ids(images, settings)
    answers = extra.decode(ids)
    assert time.perf_counter() - start < 30  # builds, loads and answers quickly on a CPU
    assert len(answers) == 2 and all(answers)
    # Decoding everything generate() returns would show the prompt: the slot keeps the answer only.
    inputs = extra._inputs([xray])
    everything = extra.processor.batch_decode(extra.model.generate(**inputs, max_new_tokens=4, do_sample=False),
                                              skip_special_tokens=True)[0]
    assert DEFAULT_PROMPT in everything
    for answer in answers:
        assert DEFAULT_PROMPT not in answer and "chest X-ray in one sentence" not in answer
        assert not any(markup in answer for markup in CHAT_MARKUP)
    assert extra.notes() == ("Not part of the study", f"Model: {extra.name}", "Licence: mit", f"Prompt: {DEFAULT_PROMPT}")
    assert extra.untrained


# Where it matters, the real tokenizers and templates, per family (tokenizer_config.json and chat
# template of the checkpoints named; transformers 5's tokenizer classes for the defaults):
# (adds BOS when tokenizing, the template's text starts with the BOS token)
REAL_BOS = {
    # google/gemma-3-4b-it, google/medgemma-4b-it: GemmaTokenizer, add_bos_token true; "{{ bos_token }}..."
    "gemma3": (True, True),
    # HuggingFaceTB/SmolVLM-*: a GPT-2 style BPE (SmolLM2's) that adds none; bos_token "<|im_start|>",
    # which the template writes first: "<|im_start|>User:<image>...<end_of_utterance>\nAssistant:"
    "idefics3": (False, True),
    # llava-hf/llava-1.5-7b-hf: LlamaTokenizer, add_bos_token true; the template writes no BOS: "USER: <image>\n..."
    "llava": (True, False),
}
ONE_TURN = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": DEFAULT_PROMPT}]}]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_each_tiny_tokenizer_adds_bos_and_renders_it_as_the_real_one_does(architecture, isolated_cache):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_vlm_source(architecture))  # as saved, reloaded
    tokenizer = processor.tokenizer
    adds_bos = tokenizer("no acute findings").input_ids[0] == tokenizer.bos_token_id
    renders_bos = processor.apply_chat_template(ONE_TURN, add_generation_prompt=True).startswith(tokenizer.bos_token)
    assert (adds_bos, renders_bos) == REAL_BOS[architecture]


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_a_prompt_reaches_each_tiny_vlm_with_one_bos_first(architecture, xray, isolated_cache):
    extra = ExtraCaptioner.named(f"tiny-{architecture}", tiny_random=True)
    extra.load()
    prompts = []  # what the model's first forward pass is given: the whole prompt (one image: no padding)

    def record(module, args, kwargs):
        if not prompts:
            (row,) = kwargs["input_ids"].tolist()
            prompts.append(row)

    hook = extra.model.register_forward_pre_hook(record, with_kwargs=True)
    try:
        extra.generate_ids([xray], DecodeSettings(max_new_tokens=2))
    finally:
        hook.remove()
    (prompt,) = prompts
    bos = extra.processor.tokenizer.bos_token_id
    assert prompt[0] == bos and prompt.count(bos) == 1, extra.processor.tokenizer.convert_ids_to_tokens(prompt[:3])


def test_a_plain_captioner_is_given_the_image_alone(tiny_sources, xray):
    extra = ExtraCaptioner(tiny_sources["git-base"])  # GIT: image-to-text, no chat template
    (answer,) = extra.caption([xray], DecodeSettings(max_new_tokens=5))
    assert answer and extra.notes()[-1] == "Prompt: none (a plain captioner, given the image alone)"
    assert "Licence: not stated in its model card" in extra.notes()
    assert "florence2" in TASK_PROMPTS  # a family needing a task prompt has one, from the table


def test_cap_caption_cuts_long_answers_and_keeps_the_full_one():
    assert cap_caption("no acute findings", 30) == ("no acute findings", None)
    shown, full = cap_caption("word " * 50, 30)
    assert shown == " ".join(["word"] * 30) and full == "word " * 50
    shown, full = cap_caption("x" * 1000, 3)  # a run without spaces is cut too
    assert len(shown) == 48 and full == "x" * 1000


def test_stream_captions_gives_the_extra_card_its_capped_caption_and_notes(tiny_sources, xray):
    captioners = build_captioners(["git-base"], tiny_random=True, extra_model="tiny-llava")
    assert list(captioners) == ["git-base", "extra"]
    settings = DecodeSettings(max_new_tokens=6, prompt="Name the main finding.")  # the app's prompt box
    results = {r.variant_id: r for r in stream_captions(captioners, xray, settings)}
    extra = results["extra"]
    assert extra.caption and extra.error is None and extra.untrained
    answer = extra.full_text or extra.caption  # full_text: only when the answer was longer than the caption
    assert len(extra.caption.split()) <= 6 and answer.startswith(extra.caption)
    assert "Name the main finding" not in answer
    assert extra.notes[0] == "Not part of the study" and extra.notes[-1] == "Prompt: Name the main finding."
    assert results["git-base"].notes == ()
    with pytest.raises(ValueError, match="prompt"):
        DecodeSettings(prompt=" ")


def test_the_study_four_never_wait_for_the_extra_slot_loading(tiny_sources, xray):
    captioners = build_captioners(list(VARIANT_IDS), tiny_random=True, extra_model="tiny")
    study = {vid: c for vid, c in captioners.items() if vid in VARIANT_IDS}
    settings = DecodeSettings(max_new_tokens=8)

    def four_seconds(with_captioners) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            results = [r for r in stream_captions(with_captioners, xray, settings) if r.variant_id in VARIANT_IDS]
            times.append(time.perf_counter() - start)
            assert len(results) == 4 and all(r.caption for r in results)
        return statistics.median(times)

    alone = four_seconds(study)
    # The extra slot's load cannot finish while the loading lock is held: a load that takes long.
    with checkpoints._LOADING:
        loader = captioners["extra"].load_in_background()
        while_loading = four_seconds(captioners)
        (result,) = [r for r in stream_captions(captioners, xray, settings) if r.variant_id == "extra"]
        assert result.loading and result.caption is None and "still loading" in result.error
        assert "caption again in a moment" in result.error
    loader.join(timeout=60)
    assert while_loading < alone * 1.5 + 0.5, (alone, while_loading)
    results = {r.variant_id: r for r in stream_captions(captioners, xray, settings)}
    assert len(results) == 5 and results["extra"].caption


def _error(source: str, **kwargs) -> str:
    with pytest.raises(VariantUnavailable) as raised:
        ExtraCaptioner(source, **kwargs).load()
    return str(raised.value)


def test_a_text_model_is_not_a_vision_language_model(tmp_path):
    BertModel(BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)).save_pretrained(
        tmp_path / "bert"
    )
    message = _error(str(tmp_path / "bert"))
    assert "'bert' model, not a vision-language model" in message and "image-text-to-text" in message
    assert str(tmp_path) not in message  # no server path in a user's message


ABSOLUTE_PATH = re.compile(r"(?<![\w:/])/\w")  # the start of a server path (a URL's // is not one)


def _drop(*names):
    def edit(folder):
        for name in names:
            (folder / name).unlink()
    return edit


def _write(name, text):
    return lambda folder: (folder / name).write_text(text)


@pytest.mark.parametrize("edit, says, fix", [
    (_write("config.json", '{"model_type": "gemma3",'), "has a config.json that is not valid JSON (",
     "To fix: replace config.json with the model's own copy"),
    (_drop("config.json"), "has no model config (config.json)", "To fix: point it at a folder saved with save_pretrained"),
    (_drop("processor_config.json", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"),
     "has no image processor (preprocessor_config.json or processor_config.json)",
     "To fix: save the model's processor into the folder"),
    (_write("tokenizer.json", "{truncated"), "has a tokenizer.json that is not valid JSON (", "To fix: replace tokenizer.json"),
    (_drop("tokenizer.json"), "has no tokenizer (tokenizer.json", "To fix: save the model's processor into the folder"),
], ids=["bad-config", "no-config", "no-processor", "bad-tokenizer", "no-tokenizer"])
def test_a_broken_folder_is_named_by_its_file_with_the_fix_and_no_server_path(edit, says, fix, tmp_path, isolated_cache):
    folder = tmp_path / "my-vlm"
    shutil.copytree(tiny_vlm_source("gemma3"), folder)
    edit(folder)
    message = _error(str(folder))
    assert f"'my-vlm' {says}" in message and fix in message, message
    assert str(tmp_path) not in message and not ABSOLUTE_PATH.search(message), message


def test_remote_code_is_refused_by_default_with_the_owners_switch_named(tmp_path):
    folder = tmp_path / "custom-vlm"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({
        "model_type": "cxrcap_custom_vlm",
        "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                     "AutoModelForImageTextToText": "modeling_custom.CustomModel"},
    }))
    (folder / "configuration_custom.py").write_text("raise SystemExit('remote code ran')\n")
    message = _error(str(folder))
    assert "refused by default" in message and "CXRCAP_TRUST_REMOTE_CODE=1" in message


def _huge_header() -> bytes:
    """A safetensors file's header alone, for 200B parameters (its tensors are never read)."""
    header = json.dumps({"w": {"dtype": "BF16", "shape": [200_000, 1_000_000], "data_offsets": [0, 0]}}).encode()
    return struct.pack("<Q", len(header)) + header


def test_weights_too_big_for_the_memory_left_are_refused_before_loading(tmp_path, isolated_cache):
    folder = tmp_path / "huge-vlm"
    shutil.copytree(tiny_vlm_source("gemma3"), folder)
    (folder / "model.safetensors").write_bytes(_huge_header())
    assert weights_size(str(folder)) == WeightsSize(200_000_000_000)
    message = _error(str(folder))
    assert "200.00B parameters" in message and "several GPUs" in message

    with pytest.raises(VariantUnavailable) as raised:  # a 4B model on a 16 GB machine with 10 GB free
        check_fits("medgemma-4b-it", WeightsSize(4_300_000_000), torch.device("cpu"), torch.float32, 10 * 2**30)
    assert "a 16 GB GPU (e.g. T4) in 16-bit" in str(raised.value) and "19.2 GB in float32" in str(raised.value)
    check_fits("medgemma-4b-it", WeightsSize(4_300_000_000), torch.device("cuda"), torch.bfloat16, 80 * 2**30)


def _snapshot(hf_cache, repo_id: str, files: dict[str, bytes]):
    """A hub id's snapshot in the local cache's layout (refs/main -> snapshots/<commit>/...)."""
    repo = hf_cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0" * 40)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    return snapshot


def test_a_hub_model_whose_snapshot_holds_only_its_config_is_sized_by_the_hub(tmp_path, monkeypatch, isolated_cache):
    import huggingface_hub.constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    source = tiny_vlm_source("gemma3")
    snapshot = _snapshot(tmp_path, "acme/big-vlm", {"config.json": (Path(source) / "config.json").read_bytes()})
    asked = []
    assert weights_size("acme/big-vlm", ask_hub=lambda repo_id: asked.append(repo_id) or 27_400_000_000) == \
        WeightsSize(27_400_000_000)
    assert asked == ["acme/big-vlm"]

    def unreachable(repo_id):
        raise OfflineModeIsEnabled("Cannot reach https://huggingface.co/acme/big-vlm: offline mode is enabled.")

    with pytest.raises(VariantUnavailable) as raised:  # the download nothing checked is never started
        weights_size("acme/big-vlm", ask_hub=unreachable)
    assert "not downloaded yet" in str(raised.value) and "hf download acme/big-vlm" in str(raised.value)

    # Once its weights are in the snapshot, they are counted there and the hub is not asked.
    shutil.copy(Path(source) / "model.safetensors", snapshot / "model.safetensors")
    assert weights_size("acme/big-vlm", ask_hub=unreachable) == weights_size(source)


def test_shards_beside_a_consolidated_copy_are_counted_once(tmp_path, isolated_cache):
    from safetensors.torch import load_file, save_file

    source = Path(tiny_vlm_source("llava"))
    whole = weights_size(str(source))
    folder = tmp_path / "sharded"
    shutil.copytree(source, folder)
    tensors = load_file(folder / "model.safetensors")
    names = sorted(tensors)
    shards = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, keys in shards.items():
        save_file({key: tensors[key] for key in keys}, folder / file, metadata={"format": "pt"})
    weight_map = {key: file for file, keys in shards.items() for key in keys}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    (folder / "model.safetensors").rename(folder / "consolidated.safetensors")  # as Mistral's repos ship it
    assert weights_size(str(folder)) == whole
    extra = ExtraCaptioner(str(folder))
    extra.load()  # what is counted is what loads: the index's shards
    assert sum(parameter.numel() for parameter in extra.model.parameters()) == whole.parameters

    shutil.copy(folder / "consolidated.safetensors", folder / "model.safetensors")  # the copy transformers loads first
    assert weights_size(str(folder)) == whole


class _HubWithOneModel(BaseHTTPRequestHandler):
    """Answers as the hub does for `acme/huge-vlm`: its config and its weights' header, nothing else."""

    files: dict[str, bytes] = {}

    def _answer(self, body: bool):
        data = self.files.get(self.path.removeprefix("/acme/huge-vlm/resolve/main/"))
        if data is None:
            self.send_response(404)
            self.send_header("X-Error-Code", "EntryNotFound")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("ETag", f'"{len(data)}-{hash(data) & 0xFFFFFFFF:x}"')
        self.send_header("X-Repo-Commit", "0" * 40)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def log_message(self, *args):
        pass


def test_a_hub_model_too_big_is_refused_before_its_download_and_offline_it_is_not_started(cxr_image, tmp_path,
                                                                                          isolated_cache):
    config = (Path(tiny_vlm_source("gemma3")) / "config.json").read_bytes()
    _HubWithOneModel.files = {"config.json": config, "model.safetensors": _huge_header()}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _HubWithOneModel)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    command = ("-m", "cxrcap", "caption", str(cxr_image), "--variants", "extra", "--extra-model", "acme/huge-vlm",
               "--json")
    try:
        done = run_python(*command, cwd=REPO, timeout=180, HF_HUB_OFFLINE="0",
                          HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HOME=str(tmp_path / "hf"))
    finally:
        server.shutdown()
    (row,) = json.loads(done.stdout)
    assert "200.00B parameters" in row["error"] and "several GPUs" in row["error"], row["error"]
    # AutoConfig cached config.json, and nothing else was fetched: no download started.
    (snapshot,) = (tmp_path / "hf" / "hub" / "models--acme--huge-vlm" / "snapshots").iterdir()
    assert [path.name for path in snapshot.iterdir()] == ["config.json"]

    # Offline, the same snapshot cannot be sized: it is refused with the fix, not loaded unchecked.
    done = run_python(*command, cwd=REPO, timeout=180, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    (row,) = json.loads(done.stdout)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "not downloaded yet" in row["error"] and "HF_HUB_OFFLINE" in row["error"], row["error"]
    assert "hf download acme/huge-vlm" in row["error"]


def test_tiny_needs_tiny_random():
    with pytest.raises(ValueError, match="needs --tiny-random"):
        build_captioners([], extra_model="tiny")


class _GatedHub(BaseHTTPRequestHandler):
    """Answers as the hub does for a gated model to a client without access."""

    def _answer(self):
        self.send_response(401)
        self.send_header("X-Error-Code", "GatedRepo")
        self.send_header("X-Error-Message", "Access to model acme/gated-vlm is restricted. Please log in.")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = _answer

    def log_message(self, *args):
        pass


def test_gated_and_unreachable_models_reach_the_cli_user_with_their_fix(cxr_image, tmp_path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GatedHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        done = run_python("-m", "cxrcap", "caption", str(cxr_image), "--variants", "extra", "--extra-model",
                          "acme/gated-vlm", "--json", cwd=REPO, timeout=120, HF_HUB_OFFLINE="0",
                          HF_ENDPOINT=f"http://127.0.0.1:{server.server_port}", HF_HOME=str(tmp_path / "hf"))
    finally:
        server.shutdown()
    (row,) = json.loads(done.stdout)
    assert done.returncode == 1 and row["caption"] is None and "Traceback" not in done.stderr
    assert "is gated" in row["error"] and "HF_TOKEN" in row["error"] and "huggingface.co/acme/gated-vlm" in row["error"]
    assert row["notes"][:2] == ["Not part of the study", "Model: acme/gated-vlm"]

    message = _error("acme/not-cached-vlm")  # offline here, and never downloaded
    assert "hub cannot be reached" in message and "connect to the hub once" in message
