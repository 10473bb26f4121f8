"""The SPN of SPVAE (models/spvae/spn.py): the region graph's counts and scopes, and the network's
value against brute force over all induced trees, on small grids."""

from __future__ import annotations

import math

import pytest
import torch

from models.spvae.spn import SPN, GraphCounts, RegionGraph


def induced_trees(spn: SPN, region: int, node: int) -> list[tuple[torch.Tensor, tuple[int, ...]]]:
    """Brute force: every induced tree below node ``node`` of ``region``, as (log weight, leaves),
    from the region graph and the normalised weights only (not the layer tensors)."""
    graph = spn.graph
    if graph.is_leaf(region):
        return [(torch.zeros(()), (spn.nodes[region][node],))]
    lw = spn.region_log_weights(region)[node]
    out, col = [], 0
    for parent, a, b in graph.partitions:
        if parent != region:
            continue
        for i in range(len(spn.nodes[a])):
            for j in range(len(spn.nodes[b])):
                for wa, la in induced_trees(spn, a, i):
                    for wb, lb in induced_trees(spn, b, j):
                        out.append((lw[col] + wa + wb, la + lb))
                col += 1
    assert col == lw.shape[0]
    return out


# --- region graph -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "rows,cols,expected",
    [  # by hand: (regions, leaf regions, partitions, products, sums, leaves) with sum_k=leaf_k=2
        (1, 2, (3, 2, 1, 4, 1, 4)),
        # 2x2: 4 cells, two 1x2, two 2x1, the root (2 partitions, of two 2-node regions each: 8
        # products); each 1x2/2x1 region one partition of two cells (4 products each)
        (2, 2, (9, 4, 6, 24, 9, 8)),
        # 1x3: cells, two 1x2 (1 partition, 4 products each), root (2 partitions, 4 products each)
        (1, 3, (6, 3, 4, 16, 5, 6)),
        # the paper's MNIST grid (docs/specs/spvae.md#12-region-graph)
        (4, 4, (100, 16, 200, 800, 167, 32)),
    ],
)
def test_counts_follow_from_the_grid(rows, cols, expected):
    counts = GraphCounts.from_grid(rows, cols)
    assert tuple(vars(counts).values()) == expected
    assert SPN(RegionGraph(rows, cols)).counts() == counts


@pytest.mark.parametrize("rows,cols", [(2, 3), (3, 5), (1, 6), (5, 4)])
@pytest.mark.parametrize("sum_k,leaf_k", [(2, 2), (3, 1), (1, 4)])
def test_closed_form_counts_match_the_built_network(rows, cols, sum_k, leaf_k):
    spn = SPN(RegionGraph(rows, cols), sum_k, leaf_k)
    assert spn.counts() == GraphCounts.from_grid(rows, cols, sum_k, leaf_k)


def test_product_scopes_are_disjoint_unions_and_all_rectangles_appear():
    graph = RegionGraph(3, 4)
    assert len(set(graph.regions)) == len(graph.regions) == math.comb(4, 2) * math.comb(5, 2)
    for parent, a, b in graph.partitions:
        sa, sb = graph.cells(a), graph.cells(b)
        assert not sa & sb and sa | sb == graph.cells(parent)
        assert graph.depth(graph.regions[a]) < graph.depth(graph.regions[parent])
    assert graph.cells(graph.root) == set(range(12))


# --- SPN --------------------------------------------------------------------------------------


@pytest.mark.parametrize("rows,cols,sum_k,leaf_k", [(2, 2, 2, 2), (1, 3, 2, 3), (2, 2, 3, 1)])
def test_network_value_is_the_sum_over_all_induced_trees(rows, cols, sum_k, leaf_k):
    torch.manual_seed(0)
    spn = SPN(RegionGraph(rows, cols), sum_k, leaf_k)
    leaf_values = torch.randn(5, spn.n_leaves) * 3  # known leaf log-likelihoods
    with torch.no_grad():
        trees = induced_trees(spn, spn.graph.root, 0)
        brute = torch.logsumexp(
            torch.stack([w + leaf_values[:, list(leaves)].sum(-1) for w, leaves in trees]), 0
        )
        assert torch.allclose(spn(leaf_values), brute, atol=1e-5)
    for _, leaves in trees:  # each induced tree covers every cell (pixel) exactly once
        assert sorted(leaf // leaf_k for leaf in leaves) == list(range(rows * cols))
    # the trees' weights form a distribution: the SPN of all-ones leaves is 1
    assert torch.allclose(spn(torch.zeros(1, spn.n_leaves)), torch.zeros(1), atol=1e-5)


def test_sum_weights_are_normalised_and_sampled_trees_cover_each_cell_once():
    spn = SPN(RegionGraph(4, 4))
    for layer in spn.layers:
        lse = torch.logsumexp(layer.log_weights(), dim=-1)
        assert torch.allclose(lse, torch.zeros_like(lse), atol=1e-6)
    chosen = spn.sample_leaves(50).reshape(50, 16, 2)
    assert (chosen.sum(-1) == 1).all()
