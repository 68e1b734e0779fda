"""The benchmark figures served by GET /v1/models (the shipped records) are the ones the README and docs print."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.catalog import (
    load_catalog,
    read_record_beside,
    record_beside,
    record_path,
    weights_path,
    write_record,
)
from shared.settings import SettingsError

ROOT = Path(__file__).resolve().parents[2]
SETS = {"Set5": "set5", "Set14": "set14", "BSD68": "bsd68"}


def _served():
    return {name: info.benchmark for name, info in load_catalog(ROOT / "shared" / "weights").items()}


def test_the_readme_clean_row_is_the_served_record():
    served = _served()["auto"]["clean"]
    readme = (ROOT / "README.md").read_text()
    header = re.search(r"^\| input \| (.+) \|$", readme, re.M).group(1).split(" | ")
    row = re.search(r"^\| clean PNG: bicubic → `auto` \| (.+) \|$", readme, re.M).group(1).split(" | ")
    for column, cell in zip(header, row, strict=True):
        set_label, scale = column.split()
        bicubic, auto = (float(v.strip("* ")) for v in cell.split("→"))
        name = SETS[set_label]
        assert (bicubic, auto) == (served[f"{name}_bicubic"][scale], served[name][scale]), column


def test_the_model_doc_clean_table_is_the_served_records():
    served = _served()
    doc = (ROOT / "docs" / "model.md").read_text()
    table = doc.split("### Clean inputs (the lab protocol)", 1)[1].split("\n\n", 2)[1]
    rows = [line.strip("|").split("|") for line in table.splitlines()[2:]]
    assert len(rows) == 9
    for set_label, scale, bicubic, *models in rows:
        name, scale = SETS[set_label.strip()], scale.strip()
        assert float(bicubic) == served["auto"]["clean"][f"{name}_bicubic"][scale]
        for model, cell in zip(("auto", "residual_sr", "residual_sr_cond"), models, strict=False):
            assert float(cell.strip(" *")) == served[model]["clean"][name][scale], (set_label, scale, model)


def test_a_networks_record_is_found_beside_its_weights_by_one_rule(tmp_path):
    """The engine, warm starts and ``train --init-from`` read a record through ``record_beside``; a file not named
    ``<name>.weights.h5`` is refused in words (a replace of the suffix left the weights' own path, read as JSON)."""
    weights = weights_path(tmp_path, "big.weights")  # a name holding the suffix's own text is still one name
    assert weights.name == "big.weights.weights.h5"
    assert record_beside(weights) == record_path(tmp_path, "big.weights") == tmp_path / "big.weights.json"
    write_record(tmp_path, "big.weights", {"arch": "residual_sr"})
    assert read_record_beside(weights) == {"name": "big.weights", "arch": "residual_sr"}
    for wrong in ("big.h5", "big.keras", ".weights.h5"):
        with pytest.raises(ValueError, match=r"named <name>\.weights\.h5"):
            record_beside(tmp_path / wrong)


def test_a_json_file_that_is_no_models_record_is_not_read(tmp_path):
    """Only ``<name>.json`` beside ``<name>.weights.h5`` is a model's record: an operator's notes without a
    ``name`` stopped the API and the workers at start with a KeyError traceback, and a copy of a record naming a
    served model inside (``residual_sr_v2.json`` saying ``residual_sr``) replaced that model's record in the
    catalog (its scales, whether it takes ``denoise``), while the engine loaded the weights by the other one."""
    for shipped in (ROOT / "shared" / "weights").iterdir():
        (tmp_path / shipped.name).symlink_to(shipped)
    (tmp_path / "notes.json").write_text('{"comment": "weights from the November run"}')
    (tmp_path / "residual_sr_v2.json").write_text('{"name": "residual_sr", "arch": "residual_sr_cond", '
                                                 '"conditioned": true, "network": {"scales": [2]}}')
    catalog = load_catalog(tmp_path)
    assert sorted(catalog) == ["auto", "bicubic", "residual_sr", "residual_sr_cond"]
    assert (catalog["residual_sr"].scales, catalog["residual_sr"].conditioned) == ((2, 3, 4), False)


@pytest.mark.parametrize("text,why", [("{not json", "JSONDecodeError"), ('{"name": "net"}', "KeyError: 'network'"),
                                      ('{"name": "other", "arch": "residual_sr"}', "names the model 'other'")])
def test_a_record_beside_weights_that_cannot_be_read_is_refused_in_one_line(tmp_path, text, why):
    (tmp_path / "net.json").write_text(text)
    (tmp_path / "net.weights.h5").write_bytes(b"")
    with pytest.raises(SettingsError, match=rf"{tmp_path / 'net.json'} is not a readable model record \(.*{why}"):
        load_catalog(tmp_path)
