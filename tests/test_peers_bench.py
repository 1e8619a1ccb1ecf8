"""benchmarks/peers.py's core without the peer environments: the exchange file, the shared
masked top-k, crossrec's metrics on given lists against hand values and against ranx, the run
order, bad arguments. The one test that needs a peer environment skips when it is absent."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

import peers  # noqa: E402
import peers_child  # noqa: E402


def _exchange(tmp_path: Path) -> tuple[Path, sp.csr_matrix]:
    x = sp.csr_matrix(np.array([[1, 0, 1, 0, 0, 1],
                                [0, 1, 0, 1, 1, 0],
                                [1, 1, 0, 0, 1, 1],
                                [0, 0, 1, 1, 0, 0]], dtype=np.float32))
    seen = sp.csr_matrix(np.array([[0, 0, 1], [1, 0, 0]], dtype=np.float32))  # local, target 3:6
    src = tmp_path / "in.npz"
    peers.write_input(src, x.indptr, x.indices, x.shape, 3, 6, [1, 3], seen.indptr, seen.indices,
                      peers.digest(x.indptr, x.indices))
    return src, x


def test_exchange_round_trip(tmp_path):
    src, x = _exchange(tmp_path)
    d = peers_child.load_input(str(src))
    assert (d["X"] != x).nnz == 0 and d["X"].shape == x.shape
    assert d["seen"].toarray().tolist() == [[0, 0, 1], [1, 0, 0]]
    assert d["test_users"].tolist() == [1, 3] and (int(d["t_start"]), int(d["t_stop"])) == (3, 6)
    assert str(d["x_digest"]) == peers.digest(d["X"].indptr, d["X"].indices)
    assert not list(tmp_path.glob("*.part*"))  # written to a temp name, then renamed


def test_top_k_masks_and_breaks_ties_to_the_lower_index():
    scores = np.array([[0.5, 0.9, 0.5, 0.1], [np.nan, 0.2, 0.2, 0.2]])
    seen = sp.csr_matrix(np.array([[0, 1, 0, 0], [0, 0, 1, 0]], dtype=np.float32))
    top = peers_child.top_k(scores, seen, 3)
    assert top.tolist() == [[0, 2, 3], [1, 3, 0]]  # masked and NaN items come last


def _lists() -> tuple[np.ndarray, sp.csr_matrix, np.ndarray]:
    top = np.array([[4, 1, 7, 0, 2, 3, 5, 6, 8, 9],   # hits at ranks 1 and 3; 2 relevant
                    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],   # no hit
                    [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]])  # 12 relevant (> k): every rank a hit
    truth = np.zeros((3, 30), dtype=np.float32)
    truth[0, [4, 7]] = 1
    truth[1, [20]] = 1
    truth[2, list(range(10)) + [25, 26]] = 1
    return top, sp.csr_matrix(truth), np.array([11, 12, 13])


def test_crossrec_metrics_on_given_lists_match_hand_values():
    top, truth, _ = _lists()
    got = peers.crossrec_metrics(top, truth)
    ndcg0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    assert got["ndcg@10"] == pytest.approx((ndcg0 + 0 + 1) / 3, abs=1e-12)
    assert got["recall@10"] == pytest.approx((1 + 0 + 10 / 12) / 3, abs=1e-12)


@pytest.mark.slow  # numba compiles ranx's metrics on first use (~30 s on two busy cores)
def test_ranx_agrees_on_identical_lists():
    pytest.importorskip("ranx", reason="ranx is the 'peers' extra")
    top, truth, users = _lists()
    ours = peers.crossrec_metrics(top, truth)
    ext = peers.ranx_metrics(top, truth, users)
    for m in ours:
        assert abs(ours[m] - ext[m]) < 1e-6, m


def test_rotations_put_each_contender_first_once():
    orders = peers.rotations([0, 1, 2], 4)
    assert orders == [[0, 1, 2], [1, 2, 0], [2, 0, 1], [0, 1, 2]]


def test_bad_arguments_exit_2(capsys):
    assert peers.main(["--datasets", "nope"]) == 2
    assert "unknown dataset 'nope'" in capsys.readouterr().err
    assert peers.main(["--only", "no-such-library"]) == 2


def test_implicit_child_ranks_target_items_unseen(tmp_path):
    python = peers.PEERS_DIR / "implicit" / "bin" / "python"
    if not python.exists():
        pytest.skip("no .peers/implicit environment (make bench-peers creates it)")
    src, _ = _exchange(tmp_path)
    c = next(c for c in peers.contenders(1) if c.library == "implicit" and
             c.algorithm == "itemknn")
    out = peers.run_child(str(python), c, src, peers.DATASETS["movielens"], 0, 1, 120)
    assert "error" not in out, out.get("error")
    top = out["top"]
    assert top.shape == (2, 3)  # k = 10 > the 3 target items: every item, masked ones last
    assert top[0, -1] == 2 and top[1, -1] == 0
    assert ((top >= 0) & (top < 3)).all() and out["rss_mib"] > 0
