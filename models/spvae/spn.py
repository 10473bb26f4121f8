"""The Poon-Domingos region graph of SPVAE and its sum-product network, evaluated in log space.

Reference: docs/specs/spvae.md, sections 1.2-1.3 (Tan & Peharz 2019; authors' ``src/scope.py`` and
``src/tflayer_spn.py``).

Region graph. The image is a grid of ``rows x cols`` cells. A *region* is an axis-aligned rectangle
of cells, written half-open in cell coordinates ``(r0, r1, c0, c1)``. Starting from the full image,
every region is split in every possible way into two rectangles at a cell boundary (vertical and
horizontal); each split is a *partition* ``(parent, a, b)``. Identical child rectangles are shared,
so the graph holds every rectangle of the grid exactly once; single cells are the leaf regions.

SPN. A leaf region holds ``leaf_k`` leaves (the leaf VAEs, evaluated elsewhere), every other region
``sum_k`` sum nodes, and the root region a single sum node. A partition with children of ``K_a`` and
``K_b`` nodes holds ``K_a * K_b`` product nodes (the outer sum of the children's log-values). A sum
node of a region mixes all product nodes of all of the region's partitions with weights
``log_softmax`` of free logits (initialised N(0, 1), docs/specs/spvae.md#13-sum-product-network).

Node table. Nodes live in one table of log-values ``[..., n_nodes]``: first the leaves (leaf ``j``
of cell ``i``, raster order over the grid, is entry ``i * leaf_k + j``), then the sum nodes layer by
layer. A region of ``h x w`` cells has depth ``h + w - 2`` (its deepest chain of splits peels one
cell row or column at a time), so a region's children always sit in earlier layers, and the root,
of depth ``rows + cols - 2``, is alone in the last layer. Evaluation loops over layers only: each
layer is two gathers (the products' children, already in the regions' padded layout), one add,
and one masked logsumexp over the products of every region of the layer at once, padded to the
layer's largest region.

Product order inside a region (what ``region_log_weights`` columns mean): the region's partitions in
``graph.partitions`` order; within a partition ``(parent, a, b)`` the product of node ``i`` of ``a``
and node ``j`` of ``b`` is column ``i * K_b + j``.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import comb

import torch
from torch import Tensor, nn

Rect = tuple[int, int, int, int]
"""(r0, r1, c0, c1): rows r0..r1-1 and columns c0..c1-1 of the cell grid."""


@dataclass(frozen=True)
class GraphCounts:
    """Sizes of the region graph and its SPN; ``from_grid`` gives them in closed form."""

    regions: int
    leaf_regions: int
    partitions: int
    products: int
    sums: int
    leaves: int

    @staticmethod
    def from_grid(rows: int, cols: int, sum_k: int = 2, leaf_k: int = 2) -> GraphCounts:
        """Closed forms for a ``rows x cols`` cell grid (at least 2 cells).

        regions     C(R+1, 2) C(C+1, 2)                      (pairs of row and column boundaries)
        partitions  C(R+1, 3) C(C+1, 2) + C(R+1, 2) C(C+1, 3)  (sum over regions of (h-1)+(w-1))
        products    P2 leaf_k^2 + P1 leaf_k sum_k + P0 sum_k^2, by the number of single-cell
                    children: P2 = R(C-1) + (R-1)C (1x2 and 2x1 regions), P1 = 2 [C C(R-1, 2) +
                    R C(C-1, 2)] (the end splits of 1-wide strips of length >= 3), P0 the rest.
                    The root is never a child, so no product uses its single sum node.
        sums        (internal regions - 1) sum_k + 1
        For the paper's 4x4 grid: 100 regions, 200 partitions, 800 products, 167 sums, 32 leaves.
        """
        regions = comb(rows + 1, 2) * comb(cols + 1, 2)
        partitions = comb(rows + 1, 3) * comb(cols + 1, 2) + comb(rows + 1, 2) * comb(cols + 1, 3)
        p2 = rows * (cols - 1) + (rows - 1) * cols
        p1 = 2 * (cols * comb(rows - 1, 2) + rows * comb(cols - 1, 2))
        p0 = partitions - p1 - p2
        internal = regions - rows * cols
        return GraphCounts(
            regions=regions,
            leaf_regions=rows * cols,
            partitions=partitions,
            products=p2 * leaf_k**2 + p1 * leaf_k * sum_k + p0 * sum_k**2,
            sums=(internal - 1) * sum_k + 1,
            leaves=rows * cols * leaf_k,
        )


class RegionGraph:
    """Every axis-aligned rectangle of a ``rows x cols`` cell grid and all its binary splits.

    ``regions``: rectangles; the ``rows * cols`` single cells come first in raster order (region
    ``i < rows * cols`` is cell ``i``), then the others by depth, the full image last.
    ``partitions``: ``(parent, a, b)`` region indices, ``a`` above / left of ``b``.
    """

    def __init__(self, rows: int, cols: int):
        if rows < 1 or cols < 1 or rows * cols < 2:
            raise ValueError(
                f"the cell grid is {rows}x{cols}: an SPN needs at least 2 cells; choose a smaller "
                "cell_size (or use the family 'vae' for a single VAE on the whole image)"
            )
        self.rows, self.cols = rows, cols
        root: Rect = (0, rows, 0, cols)
        # Breadth-first from the full image, sharing identical child rectangles
        # (docs/specs/spvae.md#12-region-graph).
        seen: set[Rect] = {root}
        queue, splits = [root], {}
        while queue:
            rect = queue.pop(0)
            splits[rect] = self._splits(rect)
            for pair in splits[rect]:
                for child in pair:
                    if child not in seen:
                        seen.add(child)
                        queue.append(child)
        cells = [(r, r + 1, c, c + 1) for r in range(rows) for c in range(cols)]
        others = sorted(seen - set(cells), key=lambda t: (self.depth(t), t))
        self.regions: list[Rect] = cells + others
        self.index = {rect: i for i, rect in enumerate(self.regions)}
        self.partitions: list[tuple[int, int, int]] = [
            (self.index[rect], self.index[a], self.index[b])
            for rect in self.regions
            for a, b in splits[rect]
        ]
        self.root = len(self.regions) - 1

    @staticmethod
    def _splits(rect: Rect) -> list[tuple[Rect, Rect]]:
        r0, r1, c0, c1 = rect
        horizontal = [((r0, r, c0, c1), (r, r1, c0, c1)) for r in range(r0 + 1, r1)]
        vertical = [((r0, r1, c0, c), (r0, r1, c, c1)) for c in range(c0 + 1, c1)]
        return horizontal + vertical

    @staticmethod
    def depth(rect: Rect) -> int:
        return (rect[1] - rect[0]) + (rect[3] - rect[2]) - 2

    def is_leaf(self, region: int) -> bool:
        return region < self.rows * self.cols

    def cells(self, region: int) -> set[int]:
        """The scope of a region: raster indices of its cells."""
        r0, r1, c0, c1 = self.regions[region]
        return {r * self.cols + c for r in range(r0, r1) for c in range(c0, c1)}


class _SumLayer(nn.Module):
    """The product nodes and sum nodes of all regions of one depth."""

    def __init__(self, left, right, index, mask, n_regions: int, k: int, first_node: int):
        super().__init__()
        self.register_buffer("left", torch.tensor(left, dtype=torch.long), persistent=False)
        self.register_buffer("right", torch.tensor(right, dtype=torch.long), persistent=False)
        self.register_buffer("index", torch.tensor(index, dtype=torch.long), persistent=False)
        self.register_buffer("mask", torch.tensor(mask, dtype=torch.bool), persistent=False)
        # The children of each region's (padded) products, [R * J] node ids: forward gathers them
        # straight from the node table, without the intermediate [..., P] product vector.
        for name in ("left", "right"):
            grouped = getattr(self, name)[self.index].flatten()
            self.register_buffer(f"grouped_{name}", grouped, persistent=False)
        self.k, self.first_node = k, first_node
        # Sum logits W_{r,k,j}, i.i.d. N(0, 1) (docs/specs/spvae.md#13-sum-product-network); padded
        # columns are masked out.
        self.logits = nn.Parameter(torch.randn(n_regions, k, self.index.shape[1]))

    def log_weights(self) -> Tensor:
        """log w = W - logsumexp(W) over each sum node's products; -inf on padding. [R, K, J]"""
        w = self.logits.masked_fill(~self.mask[:, None, :], float("-inf"))
        return torch.log_softmax(w, dim=-1)

    def forward(self, values: Tensor) -> Tensor:
        """Log-values of this layer's sum nodes, [..., R * K], from the node table [..., N]."""
        # Two gathers straight into the padded [R, J] layout (no [..., P] products in between),
        # by index_select: its backward is an index_add, where advanced indexing (values[..., i])
        # has an accumulating index_put, several times slower on the CPU (benchmarks/spvae.py).
        grouped = values.index_select(-1, self.grouped_left) + values.index_select(
            -1, self.grouped_right
        )
        grouped = grouped.unflatten(-1, tuple(self.index.shape))  # [..., R, J]
        sums = torch.logsumexp(grouped.unsqueeze(-2) + self.log_weights(), dim=-1)  # [..., R, K]
        return sums.flatten(-2)


class SPN(nn.Module):
    """Log-space SPN over a region graph; input: the leaves' log-values ``[..., n_leaves]``."""

    def __init__(self, graph: RegionGraph, sum_k: int = 2, leaf_k: int = 2):
        super().__init__()
        self.graph, self.sum_k, self.leaf_k = graph, sum_k, leaf_k
        self.n_leaves = graph.rows * graph.cols * leaf_k
        # node ids of every region: leaves first, then sums layer by layer
        nodes: dict[int, list[int]] = {
            i: [i * leaf_k + j for j in range(leaf_k)] for i in range(graph.rows * graph.cols)
        }
        by_parent: dict[int, list[tuple[int, int]]] = {}
        for parent, a, b in graph.partitions:
            by_parent.setdefault(parent, []).append((a, b))
        internal = [i for i in range(len(graph.regions)) if not graph.is_leaf(i)]
        depths = sorted({graph.depth(graph.regions[i]) for i in internal})
        self.layers = nn.ModuleList()
        self._where: dict[int, tuple[int, int]] = {}  # region -> (layer, row in layer)
        n_nodes = self.n_leaves
        for d in depths:
            regions = [i for i in internal if graph.depth(graph.regions[i]) == d]
            k = 1 if regions == [graph.root] else sum_k
            assert graph.root not in regions or len(regions) == 1  # the root is alone at the top
            left, right, groups = [], [], []
            for region in regions:
                group = []
                for a, b in by_parent[region]:
                    for i in nodes[a]:
                        for j in nodes[b]:
                            group.append(len(left))
                            left.append(i)
                            right.append(j)
                groups.append(group)
            width = max(len(g) for g in groups)
            index = [g + [0] * (width - len(g)) for g in groups]
            mask = [[True] * len(g) + [False] * (width - len(g)) for g in groups]
            layer = _SumLayer(left, right, index, mask, len(regions), k, n_nodes)
            for row, region in enumerate(regions):
                nodes[region] = [n_nodes + row * k + j for j in range(k)]
                self._where[region] = (len(self.layers), row)
            n_nodes += len(regions) * k
            self.layers.append(layer)
        self.nodes = nodes
        self.n_nodes = n_nodes

    def counts(self) -> GraphCounts:
        """Counts read off the built network (compare with ``GraphCounts.from_grid``)."""
        return GraphCounts(
            regions=len(self.graph.regions),
            leaf_regions=self.graph.rows * self.graph.cols,
            partitions=len(self.graph.partitions),
            products=sum(layer.left.numel() for layer in self.layers),
            sums=self.n_nodes - self.n_leaves,
            leaves=self.n_leaves,
        )

    def region_log_weights(self, region: int) -> Tensor:
        """Normalised log-weights ``[K, J]`` of an internal region's sum nodes (module docstring
        gives the column order)."""
        layer, row = self._where[region]
        lw = self.layers[layer].log_weights()[row]
        return lw[:, self.layers[layer].mask[row]]

    def node_values(self, leaf_log_values: Tensor) -> Tensor:
        """The whole node table ``[..., n_nodes]`` of log-values."""
        if leaf_log_values.shape[-1] != self.n_leaves:
            raise ValueError(
                f"expected {self.n_leaves} leaf log-values in the last dim, got "
                f"{leaf_log_values.shape[-1]}"
            )
        values = leaf_log_values
        for layer in self.layers:
            values = torch.cat([values, layer(values)], dim=-1)
        return values

    def forward(self, leaf_log_values: Tensor) -> Tensor:
        """log SPN at the root, ``[...]``, from leaf log-values ``[..., n_leaves]``."""
        return self.node_values(leaf_log_values)[..., -1]

    @torch.no_grad()
    def sample_leaves(self, n: int) -> Tensor:
        """Leaves of n induced trees drawn top-down (each sum node picks one product by its
        weights, each product keeps both children): a {0, 1} float mask ``[n, n_leaves]``."""
        device = self.layers[-1].logits.device
        active = torch.zeros(n, self.n_nodes, device=device)
        active[:, -1] = 1.0
        for layer in reversed(self.layers):
            n_regions, k, _ = layer.logits.shape
            sums = active[:, layer.first_node : layer.first_node + n_regions * k]
            lw = layer.log_weights().expand(n, -1, -1, -1)
            choice = torch.distributions.Categorical(logits=lw).sample()  # [n, R, K]
            chosen = layer.index[torch.arange(n_regions, device=device)[:, None], choice]
            products = torch.zeros(n, layer.left.numel(), device=device)
            products.scatter_add_(1, chosen.flatten(1), sums)
            active.index_add_(1, layer.left, products)
            active.index_add_(1, layer.right, products)
        return active[:, : self.n_leaves]
