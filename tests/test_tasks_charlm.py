"""charlm-transformer: the fortune reader, the split and windows, the model's causality and shapes,
a quick learning check and the real Debian text."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrkit.tasks import charlm
from lrkit.tasks.charlm import CharTransformer, Vocabulary, build_corpus, read_fortunes, split_fortunes, windows
from lrkit.tasks.registry import get_task
from lrkit.torch import find_lr, layer_groups
from lrkit.torch.evaluation import evaluate


def tiny_model(vocab_size: int = 11, context: int = 8) -> CharTransformer:
    torch.manual_seed(0)
    return CharTransformer(vocab_size, context=context, d_model=16, n_layers=2, n_heads=2)


def test_split_fortunes_on_percent_lines_only():
    text = "%\nfirst\n\tline two\n%\n\n%\n%DCL-MEM-BAD, not a separator\n100%\n\n%\nlast, no closing line\n"
    assert split_fortunes(text) == ["first\n\tline two", "%DCL-MEM-BAD, not a separator\n100%",
                                    "last, no closing line"]


def test_fortunes_are_read_from_the_environment_directory_in_file_order_and_cleaned(tmp_path, monkeypatch):
    (tmp_path / "b").write_text("bee\n%\nover_\bstrike and ___\b\b\bthe end\n%\n", encoding="utf-8")
    (tmp_path / "a").write_text("caf\u00e9 \u2019quoted\u2019\x07\n%\n", encoding="utf-8")
    (tmp_path / "a.dat").write_bytes(b"\x00\x02\xff")  # strfile's index: never read
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "b").write_text("offensive\n%\n")
    monkeypatch.setenv("LRKIT_FORTUNES_DIR", str(tmp_path))
    assert charlm.fortunes_dir() == tmp_path
    assert read_fortunes(files=("b", "a")) == ["bee", "overstrike and the end", "caf quoted"]


def test_a_missing_directory_names_the_debian_package_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("LRKIT_FORTUNES_DIR", str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError) as err:
        read_fortunes()
    message = str(err.value)
    assert "\n" not in message and str(tmp_path / "absent") in message
    for words in ("'fortunes'", "make system-deps", "apt-get install fortunes", "$LRKIT_FORTUNES_DIR"):
        assert words in message
    (tmp_path / "absent").mkdir()
    with pytest.raises(FileNotFoundError, match=r"lacks the fortune files \['art'"):
        read_fortunes()


def test_vocabulary_round_trip_and_unknown_characters():
    vocab = Vocabulary.of("hello world\n")
    assert vocab.chars == "\n dehlorw" and (vocab.size, vocab.unknown) == (10, 9)
    ids = vocab.encode("hold on\n")
    assert ids.dtype == np.int64 and ids.tolist() == [4, 6, 5, 2, 1, 6, 9, 0]  # 'n' is unknown
    assert vocab.decode(vocab.encode("world hello")) == "world hello"
    assert vocab.decode(ids) == "hold o\ufffd\n" and vocab.encode("").tolist() == []
    with pytest.raises(ValueError, match="code-point order"):
        Vocabulary("ba")


def test_windows_targets_are_the_inputs_shifted_by_one():
    data = windows(np.arange(11), context=3)
    x, y = data.tensors
    assert x.tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]] and torch.equal(y, x + 1)
    x, y = windows(np.arange(11), context=3, stride=6).tensors
    assert x.tolist() == [[0, 1, 2], [6, 7, 8]] and torch.equal(y, x + 1)
    with pytest.raises(ValueError, match="len"):
        windows(np.arange(3), context=3)


def test_the_split_is_by_whole_fortunes_and_fixed():
    fortunes = [f"fortune number {i}" for i in range(200)]
    corpus = build_corpus(fortunes, val_fraction=0.1, context=4, train_stride=4)
    train, val = corpus.train_text.split(charlm.SEPARATOR), corpus.val_text.split(charlm.SEPARATOR)
    assert len(val) == 20 and sorted(train + val) == sorted(fortunes)
    assert train == [f for f in fortunes if f in set(train)]  # each side keeps the files' order
    assert build_corpus(fortunes, val_fraction=0.1, context=4).val_text == corpus.val_text
    assert corpus.vocab.chars == "".join(sorted(set(corpus.train_text)))
    x, y = corpus.data.train.tensors
    assert corpus.vocab.decode(x[1]) == corpus.train_text[4:8] and corpus.vocab.decode(y[1]) == corpus.train_text[5:9]


def test_the_attention_is_causal():
    model = tiny_model().eval()
    ids = torch.randint(0, 11, (3, 8), generator=torch.Generator().manual_seed(1))
    changed = ids.clone()
    changed[:, 5] = (ids[:, 5] + 1) % 11
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(after[:, :, :5], before[:, :, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(after[:, :, 5:], before[:, :, 5:])


def test_logits_are_batch_vocab_time_for_cross_entropy_and_the_evaluation_loop():
    model = tiny_model()
    ids = torch.randint(0, 11, (4, 8), generator=torch.Generator().manual_seed(2))
    targets = torch.roll(ids, -1, dims=1)
    logits = model(ids)
    assert logits.shape == (4, 11, 8)
    per_position = nn.functional.cross_entropy(logits.transpose(1, 2).reshape(-1, 11), targets.reshape(-1))
    torch.testing.assert_close(nn.CrossEntropyLoss()(logits, targets), per_position)
    loader = DataLoader(TensorDataset(ids, targets), batch_size=3)
    loss, metric = evaluate(model, loader, nn.CrossEntropyLoss(), charlm.cross_entropy)
    assert loss == pytest.approx(per_position.item(), rel=1e-5) and metric == pytest.approx(loss)
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="a divisor of d_model"):
        CharTransformer(11, d_model=16, n_heads=3)


def test_a_tiny_model_learns_a_repeating_text_and_the_finder_runs():
    vocab = Vocabulary.of("abcdefghij")
    data = windows(vocab.encode("abcdefghij" * 40), context=8, stride=3)
    loader = DataLoader(data, batch_size=16, shuffle=True, generator=torch.Generator().manual_seed(0))
    model, criterion = tiny_model(vocab.size), nn.CrossEntropyLoss()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    result = find_lr(model, optimizer, criterion, loader, num_iter=20, progress=False)
    assert np.isfinite(result.suggestion)
    x, y = data.tensors
    start = criterion(model(x), y).item()
    for _ in range(4):
        for inputs, targets in loader:
            optimizer.zero_grad()
            criterion(model(inputs), targets).backward()
            optimizer.step()
    assert start > 2.0 and criterion(model(x), y).item() < 0.5 * start


def test_layer_groups_follow_the_named_parts():
    groups = layer_groups(tiny_model(), 3)
    assert [g.names for g in groups] == [("token_embedding", "position_embedding", "blocks.0"), ("blocks.1", "norm"),
                                         ("head",)]


def test_perplexity_and_bits_per_character():
    assert charlm.perplexity(np.log(98)) == pytest.approx(98)
    assert charlm.bits_per_character(np.log(2) * 1.5) == pytest.approx(1.5)


@pytest.mark.skipif(not charlm.FORTUNES_DIR.is_dir(), reason="the Debian package 'fortunes' is not installed "
                    "(make system-deps, or apt-get install fortunes)")
def test_the_real_fortunes_and_the_registered_task():
    fortunes = read_fortunes(charlm.FORTUNES_DIR)
    # counted once from fortunes + fortunes-min 1:1.99.1-7.3 (Debian 12), after cleaning
    assert (len(fortunes), sum(map(len, fortunes))) == (15217, 2530240)
    assert fortunes[0].startswith("7:30, Channel 5: The Bionic Dog (Action/Adventure)\n")  # the first of 'art'
    task = get_task("charlm-transformer")
    corpus = charlm.fortunes_corpus()
    assert (len(corpus.train_text), len(corpus.val_text), corpus.vocab.size) == (2500396, 75489, 98)
    assert corpus.vocab.chars == "\t\n" + "".join(map(chr, range(0x20, 0x7F)))
    data = task.load_data(0)
    assert (len(data.train), len(data.val)) == (9767, 589) and task.load_data(7) is data
    assert (task.metric_name, task.higher_is_better, task.family) == ("val_loss", False, "transformer")
    x, y = data.train[0]
    assert corpus.vocab.decode(x) == corpus.train_text[:128] and corpus.vocab.decode(y) == corpus.train_text[1:129]
    assert task.build_model().head.out_features == 98
