"""Captions of folder datasets: metadata.csv / metadata.jsonl at the root, sidecar ``.txt`` files, and their errors.

Tiny generated media (0.1 s of 8 kHz audio, 4 frames of 8x8 video) keep every test to a fraction of a second.
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch.utils.data import DataLoader

from mmdiff.modalities import folders
from mmdiff.modalities.audio import AudioFolder, write_audio
from mmdiff.modalities.video.folder import VideoFolder
from mmdiff.modalities.video.io import write_mp4

SR = 8000


def wav(path):
    """0.1 s of a 440 Hz sine at 8 kHz, mono."""
    write_audio(path, 0.5 * torch.sin(torch.arange(SR // 10) * (2 * torch.pi * 440 / SR))[None], SR)
    return path


def audio(root, **kw):
    return AudioFolder(root, sample_rate=SR, duration=0.1, **kw)


def warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "mmdiff.data" and r.levelno == logging.WARNING]


def write_csv(path, text: str):
    path.write_text(text, encoding="utf-8")


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def test_metadata_csv_captions_reach_items_captions_and_summary(tmp_path, caplog):
    for name in ("a.wav", "b.wav", "sub/c.wav", "d.wav"):
        wav(tmp_path / name)
    # a quoted caption with a comma and a line break, a sub-folder path with "./", an empty caption, a BOM
    write_csv(
        tmp_path / "metadata.csv",
        '\ufefffile_name,text\na.wav,a calm piano\n"./sub/c.wav","drums, fast\nand loud"\nb.wav,\n',
    )
    ds = audio(tmp_path)
    assert ds.table == tmp_path / "metadata.csv"
    names = [c.path.relative_to(tmp_path).as_posix() for c in ds.clips]
    assert dict(zip(names, ds.captions)) == {
        "a.wav": "a calm piano",
        "b.wav": "",
        "d.wav": "",
        "sub/c.wav": "drums, fast\nand loud",
    }
    assert [ds[i]["caption"] for i in range(len(ds))] == ds.captions
    assert [item["caption"] for item in ds.crops(0, [0, 1])] == [ds.captions[0]] * 2
    assert ", 2 captioned, 2 without caption (trained with the empty caption), scan: " in ds.summary()
    assert warnings(caplog) == []  # files without a caption are counted, not warned about
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert batch["caption"] == ds.captions and batch["audio"].shape == (4, 1, SR // 10)


def test_metadata_jsonl_caption_column_wins_over_text_with_a_warning(tmp_path, caplog):
    wav(tmp_path / "a.wav"), wav(tmp_path / "b.wav"), wav(tmp_path / "c.wav")
    rows = [
        {"file_name": "a.wav", "caption": "organ chords", "text": "organ chords"},  # equal: quiet
        {"file_name": "b.wav", "caption": "a flute", "text": "someone whistles", "extra": 3},
        {"file_name": "c.wav", "caption": "", "text": "only text"},  # empty caption cell: text used, quiet
    ]
    write_jsonl(tmp_path / "metadata.jsonl", rows)
    ds = audio(tmp_path)
    assert ds.captions == ["organ chords", "a flute", "only text"]
    (line,) = warnings(caplog)
    assert f"{tmp_path / 'metadata.jsonl'} line 2 (b.wav)" in line and "'caption' and 'text' differ" in line
    assert "using 'caption'" in line


def test_sidecar_txt_and_no_captions(tmp_path):
    wav(tmp_path / "x.wav"), wav(tmp_path / "y.wav")
    (tmp_path / "x.txt").write_text("  a bell rings\n", encoding="utf-8")
    ds = audio(tmp_path)
    assert ds.table is None and ds.captions == ["a bell rings", ""]
    assert len(ds) == 2  # the .txt is a caption, not media
    assert ds[0]["caption"] == "a bell rings" and ds[1]["caption"] == ""
    (tmp_path / "x.txt").unlink()
    assert ", no captions, scan: " in audio(tmp_path).summary()


@pytest.mark.parametrize(
    "name, text, message",
    [
        ("metadata.csv", "path,text\na.wav,hi\n", r"metadata.csv has columns 'path', 'text'; expected 'file_name'"),
        ("metadata.csv", "file_name,label\na.wav,1\n", r"columns 'file_name', 'label'; expected .*'caption' or 'text'"),
        ("metadata.csv", "", r"metadata.csv is empty"),
        ("metadata.csv", "file_name,text\na.wav,hi\nb.wav,x,y\n", r"metadata.csv line 3: 3 fields, the header has 2"),
        ("metadata.csv", 'file_name,text\na.wav,"never closed\n', r"metadata.csv line \d+: not valid CSV"),
        (
            "metadata.jsonl",
            '{"file_name": "a.wav", "text": "hi"}\n{"file_name": "b.wav", \n',
            r"line 2: not valid JSON",
        ),
        ("metadata.jsonl", '{"file_name": "a.wav", "text": "hi"}\n["a.wav"]\n', r"line 2: expected a JSON object"),
        ("metadata.jsonl", '{"text": "hi"}\n', r"metadata.jsonl line 1: no 'file_name'; it has columns 'text'"),
        ("metadata.jsonl", '{"file_name": "a.wav", "label": 2}\n', r"no caption column: it has columns 'file_name'"),
        ("metadata.jsonl", '{"file_name": "a.wav", "text": 5}\n', r"line 1: column 'text' must be text, got 5"),
        ("metadata.jsonl", '{"file_name": "", "text": "hi"}\n', r"line 1: column 'file_name' must be a non-empty path"),
    ],
)
def test_bad_tables_are_errors_naming_table_line_and_columns(tmp_path, name, text, message):
    wav(tmp_path / "a.wav")
    (tmp_path / name).write_text(text, encoding="utf-8")
    with pytest.raises(ValueError, match=message) as error:
        audio(tmp_path)
    assert str(error.value).startswith(f"AudioFolder: {tmp_path / name}") and "\n" not in str(error.value)


def test_both_tables_and_non_utf8_are_errors(tmp_path):
    wav(tmp_path / "a.wav")
    write_csv(tmp_path / "metadata.csv", "file_name,text\na.wav,hi\n")
    write_jsonl(tmp_path / "metadata.jsonl", [{"file_name": "a.wav", "text": "hi"}])
    with pytest.raises(ValueError, match="both .*metadata.csv and .*metadata.jsonl .*keep one"):
        audio(tmp_path)
    (tmp_path / "metadata.jsonl").unlink()
    (tmp_path / "metadata.csv").write_bytes(b"file_name,text\na.wav,caf\xe9\n")  # Latin-1, not UTF-8
    with pytest.raises(ValueError, match=r"metadata.csv is not UTF-8 text"):
        audio(tmp_path)


def test_missing_files_duplicates_and_sidecar_disagreement_are_warned(tmp_path, caplog):
    wav(tmp_path / "a.wav"), wav(tmp_path / "b.wav"), wav(tmp_path / "c.wav")
    (tmp_path / "notes.md").write_text("an existing file that is not audio")
    (tmp_path / "b.txt").write_text("sidecar words")
    (tmp_path / "c.txt").write_text("the same words")
    write_csv(
        tmp_path / "metadata.csv",
        "file_name,caption\n"
        "a.wav,first\n"  # line 2
        "gone.wav,lost\n"  # line 3: missing file
        "a.wav,second\n"  # line 4: a.wav again, differently: the later row wins
        "b.wav,table words\n"  # line 5: differs from b.txt: the table wins
        "c.wav,the same words\n"  # line 6: agrees with c.txt: quiet
        "notes.md,not media\n"  # line 7: exists, not audio: quiet
        "../outside.wav,x\n",  # line 8: outside the root
    )
    ds = audio(tmp_path)
    assert ds.captions == ["second", "table words", "the same words"]
    lines = warnings(caplog)
    table = tmp_path / "metadata.csv"
    assert len(lines) == 4 and all(line.startswith("AudioFolder: ") and "\n" not in line for line in lines), lines
    assert any(f"{table} lines 2 and 4 both name a.wav" in x and "using line 4" in x for x in lines), lines
    assert any(f"{table} line 3 names gone.wav, which does not exist" in x and "row ignored" in x for x in lines)
    assert any(f"{table} line 8 names ../outside.wav, which is not relative to" in x for x in lines), lines
    assert any(
        f"{tmp_path / 'b.wav'}: caption in {table} line 5 differs from {tmp_path / 'b.txt'}; using the table's" in x
        for x in lines
    ), lines


def test_many_missing_rows_are_capped_in_the_log(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(folders, "MAX_WARNINGS", 3)
    wav(tmp_path / "a.wav")
    write_jsonl(tmp_path / "metadata.jsonl", [{"file_name": f"gone{i}.wav", "text": "x"} for i in range(7)])
    assert audio(tmp_path).captions == [""]
    lines = warnings(caplog)
    assert len(lines) == 4 and sum("does not exist" in x for x in lines) == 3
    assert "4 more table rows naming missing files not shown (7 in all)" in lines[-1]


def test_subfolder_labels_together_with_captions(tmp_path):
    for rel in ("dog/a.wav", "dog/b.wav", "cat/deep/c.wav"):
        wav(tmp_path / rel)
    write_jsonl(tmp_path / "metadata.jsonl", [{"file_name": "cat/deep/c.wav", "caption": "a cat purrs"}])
    (tmp_path / "dog" / "b.txt").write_text("a dog barks")
    ds = audio(tmp_path, labels="subfolder")
    items = {ds.clips[i].path.name: ds[(i, 5)] for i in range(len(ds))}
    assert {k: (int(v["label"]), v["caption"]) for k, v in items.items()} == {
        "a.wav": (1, ""),
        "b.wav": (1, "a dog barks"),
        "c.wav": (0, "a cat purrs"),
    }
    assert ", 2 classes, 2 captioned, 1 without caption (trained with the empty caption), scan: " in ds.summary()


def test_video_folder_captions(tmp_path):
    frames = torch.rand(3, 4, 8, 8)  # (3, F, H, W)
    for rel in ("red/one.mp4", "blue/two.mp4"):
        write_mp4(tmp_path / rel, frames, fps=4.0)
    write_csv(tmp_path / "metadata.csv", "file_name,caption\nred/one.mp4,a red circle moving left\n")
    (tmp_path / "blue" / "two.txt").write_text("a blue square")
    ds = VideoFolder(tmp_path, num_frames=2, fps=4.0, size=(8, 8), labels="subfolder")
    assert [v.path.name for v in ds.videos] == ["two.mp4", "one.mp4"]
    assert ds.captions == ["a blue square", "a red circle moving left"]
    item = ds[(1, 3)]
    assert item["caption"] == "a red circle moving left" and int(item["label"]) == 1
    assert item["video"].shape == (3, 2, 8, 8)
    assert ds.crops(0, [0])[0]["caption"] == "a blue square"
    assert ", 2 classes, 2 captioned, 0 without caption (trained with the empty caption), scan: " in ds.summary()
