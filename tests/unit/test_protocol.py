"""--protocol: each paper's authors' protocol changes only the keys it names, is part of what a
cell is (its name, its fixed keys, its rows) and is printed in every table row."""

from __future__ import annotations

import pytest

from results import store
from results.tables import build_table
from sweeps import hyperspherical, spvae, spvae_lowdata, vlae
from sweeps.cells import PROJECT
from sweeps.engine import cli, preflight
from training.config import Config

SCRIPTS = {"vlae": vlae, "spvae": spvae, "spvae_lowdata": spvae_lowdata,
           "hyperspherical": hyperspherical}  # fmt: skip


def protocol_cells(module, name):
    """(project cell, the same cell under protocol `name`) for every cell of a script."""
    protocols = getattr(module, "PROTOCOLS", spvae.PROTOCOLS)
    return [(c, protocols[name].apply(name, c)) for c in module.CELLS]


def all_protocols():
    for key, module in SCRIPTS.items():
        for name in getattr(module, "PROTOCOLS", spvae.PROTOCOLS):
            yield pytest.param(module, name, id=f"{key}-{name}")


@pytest.mark.parametrize(("module", "name"), all_protocols())
def test_a_protocol_changes_only_its_own_keys_of_the_config_that_runs(module, name):
    protocol = getattr(module, "PROTOCOLS", spvae.PROTOCOLS)[name]
    for budget in module.BUDGETS.values():
        for project, authors in protocol_cells(module, name):
            ours = Config.from_dict(project.base_config(budget)).flat()
            theirs = Config.from_dict(authors.base_config(budget)).flat()
            changed = {k for k in ours if ours[k] != theirs[k]}
            assert changed <= set(protocol.keys_for(project)), (project.name, changed)
            assert {k: theirs[k] for k in protocol.keys_for(project)} == protocol.keys_for(project)
            assert authors.name == f"{project.name}-{name}" and authors.protocol == name


def test_the_vlae_authors_protocol_is_their_data_use_and_kl_estimator_only():
    cells = {c.family: (c, a) for c, a in protocol_cells(vlae, "authors") if c.variant in
             ("-", "T=1") and c.dataset == "fashion_mnist"}  # fmt: skip
    budget = vlae.BUDGETS["paper"]

    def diff(family):
        project, authors = cells[family]
        ours = Config.from_dict(project.base_config(budget)).flat()
        theirs = Config.from_dict(authors.base_config(budget)).flat()
        return {k: (ours[k], theirs[k]) for k in ours if ours[k] != theirs[k]}

    both = {"data/validation": ("split", "test"), "model/analytic_kl": (True, False)}
    assert diff("vae") == both and diff("vae_hf") == both and diff("savae") == both
    assert diff("vae_iaf") == {"data/validation": ("split", "test")}  # IAF's KL is always MC


def test_every_cell_under_every_protocol_passes_the_preflight_config_checks():
    for module, name in (p.values for p in all_protocols()):
        cells = [a for _, a in protocol_cells(module, name)]
        for budget in module.BUDGETS.values():
            preflight.check_configs(cells, budget, "tpe")


def test_set_cannot_undo_a_protocol_key_and_the_flag_knows_the_papers_protocols(tmp_path, capsys):
    argv = ["--storage", str(tmp_path / "s"), "--protocol", "authors", "--families", "vae",
            "--set", "data/validation=split"]  # fmt: skip
    assert cli.main("vlae", vlae.CELLS, vlae.BUDGETS, {}, argv=argv, protocols=vlae.PROTOCOLS) == 2
    err = capsys.readouterr().err
    assert "fixes data/validation='test'" in err and not (tmp_path / "s").exists()
    with pytest.raises(SystemExit):  # a protocol this paper does not have
        cli.parse_args(["--protocol", "authors-code"], "spvae", spvae.CELLS, spvae.BUDGETS, {},
                       spvae.PROTOCOLS)  # fmt: skip
    assert "invalid choice: 'authors-code'" in capsys.readouterr().err


def test_a_cell_started_under_one_protocol_is_not_resumed_under_another(tmp_path):
    project = next(c for c in vlae.CELLS if c.family == "vae")
    budget = vlae.BUDGETS["smoke"]
    storage = str(tmp_path)
    record = {"base_config": project.base_config(budget), "trials": budget.trials}
    store.write_cell_record(storage, project.name, record)
    authors = vlae.PROTOCOLS["authors"].apply("authors", project)
    with pytest.raises(preflight.Refusal, match="none of the 1 cells has started"):
        preflight.check_storage(storage, [authors], budget, "resume", None)
    assert preflight.check_storage(storage, [project], budget, "resume", None) == [project]


def test_status_prints_the_protocol_of_each_cell(tmp_path, capsys):
    project = next(c for c in vlae.CELLS if c.family == "vae")
    authors = vlae.PROTOCOLS["authors"].apply("authors", project)
    store.write_cell_record(str(tmp_path), authors.name, {"trials": 4})
    argv = ["--storage", str(tmp_path), "--status", "--families", "vae", "--datasets",
            "fashion_mnist", "--protocol", "authors"]  # fmt: skip
    assert cli.main("vlae", vlae.CELLS, vlae.BUDGETS, {}, argv=argv, protocols=vlae.PROTOCOLS) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if "fashion_mnist" in ln)
    assert "authors" in line and "in progress" in line


def test_each_table_row_says_its_protocol_with_the_papers_number_beside_each(tmp_path):
    """One VAE cell under two protocols: two rows, project first, the paper's number beside
    both; a row written before the protocol column existed reads as the project's."""
    from results.papers import PAPERS

    table = PAPERS["vlae"]
    project = next(c for c in vlae.CELLS if (c.family, c.dataset) == ("vae", "mnist"))
    authors = vlae.PROTOCOLS["authors"].apply("authors", project)
    for cell, value, old in ((authors, -84.0, False), (project, -86.0, True)):
        fields = cell.fields()
        if old:
            del fields["protocol"]  # as rows of an earlier version were written
        row = {**fields, "trial_id": cell.protocol, "status": "completed", "best_val_loss": 1.0}
        store.write(str(tmp_path), "trials", cell.name, cell.protocol, [row])
        evals = [{"trial_id": cell.protocol, "seed": 0, "test_log_likelihood": value, "k": 10}]
        store.write(str(tmp_path), "evaluations", cell.name, cell.protocol + "-e", evals)
    df, notes = build_table(str(tmp_path), table)
    vae = df[df["Model"] == "VAE"]
    mnist = next(c for c in df.columns if c.startswith("MNIST") and c.endswith(": ours"))
    assert list(vae["Protocol"])[:2] == [PROJECT, "authors"]
    assert list(vae[mnist])[:2] == ["-86.00 (n=1, k=10)", "-84.00 (n=1, k=10)"]
    paper = mnist.replace(": ours", ": paper")
    assert list(vae[paper])[:2] == [vae[paper].iloc[0]] * 2 and "-85.37" in vae[paper].iloc[0]
    assert any("Protocol" in n for n in notes)
    assert set(store.load(str(tmp_path), "trials")["protocol"]) == {PROJECT, "authors"}
