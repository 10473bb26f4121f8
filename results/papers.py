"""How each paper's comparison table is laid out, and how our cells map onto its rows and columns.

A row is a model (our family + variant); a column is a dataset setting (our dataset + likelihood).
The labels are the ones used in paper_tables.csv so our numbers line up with the paper's.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PaperTable:
    key: str
    paper: str  # the `paper` column of paper_tables.csv
    title: str
    metric_prefix: str  # rows of paper_tables.csv whose metric starts with this
    models: dict[str, str]  # our family id -> the paper's model label
    datasets: dict[tuple[str, str], str]  # (our dataset, likelihood) -> the paper's dataset label
    reference_tables: tuple[str, ...] = ()  # which of the paper's tables to show; () = all
    digits: int = 2


PAPERS: dict[str, PaperTable] = {
    "vlae": PaperTable(
        key="vlae",
        paper="VLAE (Park, Kim, Kim; ICML 2019)",
        title="VLAE (Park et al., ICML 2019): test log-likelihood (nats, importance-sampled)",
        metric_prefix="test log-likelihood (IS)",
        models={"vae": "VAE"},
        datasets={
            ("mnist", "bernoulli"): "MNIST (binarized)",
            ("fashion_mnist", "gaussian"): "FashionMNIST",
            ("cifar10", "gaussian"): "CIFAR-10",
        },
        reference_tables=(
            "poster chart: Log-likelihood results on binarized MNIST (Bernoulli output)",
            "poster/slides chart: Log-likelihood results on CIFAR10 (Gaussian output)",
        ),
    ),
}


def paper_table(key: str) -> PaperTable:
    if key not in PAPERS:
        raise ValueError(f"unknown paper {key!r}; known: {sorted(PAPERS)}")
    return PAPERS[key]
