import math

import pandas as pd
import pytest
import soundfile as sf
from typer.testing import CliRunner

from liser.cli import app
from liser.manifest import ManifestError, read_manifest, table_manifest
from liser.testing import tone

RATE = 16000


@pytest.fixture
def clips(tmp_path):
    (tmp_path / "corpus" / "a").mkdir(parents=True)
    sf.write(tmp_path / "corpus" / "a" / "one.wav", tone(1.5, 300.0), RATE)
    sf.write(tmp_path / "corpus" / "a" / "two.wav", tone(2.0, 200.0), RATE)
    sf.write(tmp_path / "elsewhere.wav", tone(1.0, 250.0), RATE)
    return tmp_path


def test_relative_and_absolute_paths_optional_columns_and_extras(clips):
    index = clips / "corpus" / "index.csv"
    pd.DataFrame({
        "path": ["a/one.wav", "a/two.wav", str(clips / "elsewhere.wav")],
        "speaker": ["s1", "", "s2"], "label": ["Angry", "sad", ""],
        "start": ["", "0.5", ""], "duration": ["", "", "0.75"],
        "fold": ["1", "2", "1"], "language": ["ur", "ur", "tr"],
    }).to_csv(index, index=False)  # fmt: skip
    df = table_manifest(index).set_index("id")
    assert list(df.index) == ["a/one", "a/two", "elsewhere"]
    assert df.loc["a/one", "path"] == str(clips / "corpus" / "a" / "one.wav")
    assert df.loc["elsewhere", "path"] == str(clips / "elsewhere.wav")
    assert df.loc["a/one", "duration"] == pytest.approx(1.5)  # measured from the header
    assert df.loc["a/two", "duration"] == pytest.approx(1.5)  # 2.0 s file from 0.5 s
    assert df.loc["elsewhere", "duration"] == 0.75  # given, kept
    assert df["speaker"].tolist() == ["s1", "unknown", "s2"]
    assert df.loc["a/one", "label"] == "angry" and pd.isna(df.loc["elsewhere", "label"])
    assert set(df["corpus"]) == {"corpus"}  # the table's folder
    assert df["fold"].tolist() == [1.0, 2.0, 1.0] and df["language"].tolist() == ["ur", "ur", "tr"]
    assert df.attrs["skipped"] == []


def test_missing_files_bad_values_and_duplicates_are_skipped_with_reasons(clips):
    index = clips / "corpus" / "index.csv"
    pd.DataFrame({
        "path": ["a/one.wav", "a/gone.wav", "a/two.wav", "a/two.wav", "a/one.wav", ""],
        "id": ["x", "", "y", "z", "x", ""],
        "start": ["", "", "-1", "5", "", ""],
    }).to_csv(index, index=False)  # fmt: skip
    df = table_manifest(index)
    assert df["id"].tolist() == ["x"]
    reasons = [reason for _, reason in df.attrs["skipped"]]
    assert reasons[0] == "missing"
    assert reasons[1] == "bad row: start must be a finite number >= 0, got '-1'"
    assert reasons[2] == "bad row: start 5.0 s is beyond the end of the file"
    assert reasons[3].startswith("duplicate: id 'x'")
    assert reasons[4] == "bad row: empty path"


def test_tables_without_a_path_column_or_unreadable_are_errors(clips):
    index = clips / "index.csv"
    pd.DataFrame({"file": ["a.wav"]}).to_csv(index, index=False)
    with pytest.raises(ManifestError, match="no 'path' column \\(columns: file\\)"):
        table_manifest(index)
    with pytest.raises(ManifestError, match="no such file"):
        table_manifest(clips / "none.csv")
    with pytest.raises(ManifestError, match="unknown table format '.txt'"):
        table_manifest(clips / "list.txt")


def test_parquet_tables_and_the_cli(clips, tmp_path):
    index = clips / "corpus" / "index.parquet"
    pd.DataFrame({"path": ["a/one.wav"], "label": ["happy"], "speaker": ["s"]}).to_parquet(index)
    out = tmp_path / "m.csv"
    result = CliRunner().invoke(app, ["manifest", "table", str(index), "-o", str(out),
                                      "--no-measure", "--corpus", "mine"])  # fmt: skip
    assert result.exit_code == 0, result.output
    df = read_manifest(out)
    assert df["corpus"].tolist() == ["mine"] and math.isnan(df["duration"][0])
    result = CliRunner().invoke(app, ["manifest", "table", str(tmp_path / "x.csv"), "-o", str(out)])
    assert result.exit_code == 2 and "no such file" in result.output


@pytest.mark.shared
def test_the_cross_corpus_dev_sets(shared):
    df = table_manifest(shared / "data" / "crosscorpus-dev" / "index.csv", measure=False)
    assert df.attrs["skipped"] == []
    classes = df.groupby("corpus")["label"].unique().map(sorted).to_dict()
    assert classes == {"turev": ["angry", "calm", "happy", "sad"],
                       "urdu": ["angry", "happy", "neutral", "sad"]}  # fmt: skip
    assert df.groupby("corpus")["speaker"].nunique().to_dict() == {"turev": 6, "urdu": 29}
