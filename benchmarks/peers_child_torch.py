"""The PyTorch-based peers of ``benchmarks/peers.py`` (LensKit, RecBole), run by
``peers_child.py`` inside their own virtual environments. Same contract as its runners:
``(top [n_test, k] local target indices, fit_s, eval_s, info)``."""

from __future__ import annotations

import numpy as np
from peers_child import _timed, top_k


def run_lenskit(d: dict, p: dict) -> tuple:
    """LensKit 2025: ``ItemKNNScorer`` / ``EASEScorer`` / ``ImplicitMFScorer`` trained on a
    ``Dataset`` of the training pairs, then called per user (LensKit's way) on the target
    items, the user's training history as the query; ranked by ``top_k``."""
    import pandas as pd
    from lenskit.als import ImplicitMFScorer
    from lenskit.data import ItemList, RecQuery, from_interactions_df
    from lenskit.knn import EASEScorer, ItemKNNScorer
    from lenskit.parallel import initialize
    from lenskit.training import TrainingOptions

    initialize(threads=p["threads"], backend_threads=p["threads"])
    cls = {"itemknn": ItemKNNScorer, "als": ImplicitMFScorer, "ease": EASEScorer}[p["algorithm"]]
    X, users, k = d["X"], d["test_users"], int(d["k"])
    start, stop = int(d["t_start"]), int(d["t_stop"])
    coo = X.tocoo()
    frame = pd.DataFrame({"user_id": coo.row.astype(np.int64), "item_id": coo.col.astype(np.int64)})

    def fit():
        scorer = cls(**p["params"])
        scorer.train(from_interactions_df(frame), TrainingOptions(rng=p["seed"], device="cpu"))
        return scorer

    def rank(scorer):
        candidates = ItemList(item_ids=np.arange(start, stop))
        scores = np.empty((len(users), stop - start))
        for r, u in enumerate(users):
            history = ItemList(item_ids=X[u].indices.astype(np.int64))
            query = RecQuery(user_id=int(u), user_items=history)
            out = scorer(query, candidates)
            scores[r] = out.scores()  # NaN where unscored
        return top_k(scores, d["seen"], k)

    top, fit_s, eval_s = _timed(fit, rank)
    return top, fit_s, eval_s, {}


def run_recbole(d: dict, p: dict) -> tuple:
    """RecBole 1.2's BPR and Trainer on every training pair (no validation split: RecBole's
    ``data_preparation`` would hold interactions out), scored with ``full_sort_predict``."""
    import os
    import tempfile

    import torch
    from recbole.config import Config
    from recbole.data import create_dataset
    from recbole.data.dataloader import TrainDataLoader
    from recbole.data.interaction import Interaction
    from recbole.model.general_recommender import BPR
    from recbole.sampler import Sampler
    from recbole.trainer import Trainer

    torch.set_num_threads(p["threads"])
    X, users, k = d["X"], d["test_users"], int(d["k"])
    start, stop = int(d["t_start"]), int(d["t_stop"])
    with tempfile.TemporaryDirectory(prefix="recbole-") as tmp:
        os.makedirs(f"{tmp}/train")
        coo = X.tocoo()
        with open(f"{tmp}/train/train.inter", "w") as f:
            f.write("user_id:token\titem_id:token\n")
            f.writelines(f"{u}\t{i}\n" for u, i in zip(coo.row, coo.col, strict=True))
        cfg = {"data_path": tmp, "checkpoint_dir": tmp, "seed": p["seed"], "reproducibility": True,
               "load_col": {"inter": ["user_id", "item_id"]}, "eval_step": 0,
               "train_neg_sample_args": {"distribution": "uniform", "sample_num": 1},
               "show_progress": False, "device": "cpu", "use_gpu": False,
               "state": "ERROR", **p["params"]}
        config = Config(model="BPR", dataset="train", config_dict=cfg)

        def fit():
            dataset = create_dataset(config)
            dataset._change_feat_format()  # what Dataset.build() does before it splits
            sampler = Sampler(["train"], [dataset]).set_phase("train")
            loader = TrainDataLoader(config, dataset, sampler, shuffle=True)
            model = BPR(config, dataset)
            Trainer(config, model).fit(loader, valid_data=None, saved=False, show_progress=False)
            return model, dataset

        def rank(fitted):
            model, dataset = fitted
            model.eval()
            uid = dataset.field2token_id["user_id"]
            iid = dataset.field2token_id["item_id"]
            cols = np.array([iid.get(str(j), -1) for j in range(start, stop)])
            known = cols >= 0
            inter = Interaction({"user_id": torch.tensor([uid[str(u)] for u in users])})
            with torch.no_grad():
                full = model.full_sort_predict(inter).view(len(users), -1).numpy()
            scores = np.full((len(users), stop - start), -np.inf)
            scores[:, known] = full[:, cols[known]]
            return top_k(scores, d["seen"], k)

        top, fit_s, eval_s = _timed(fit, rank)
    return top, fit_s, eval_s, {}
