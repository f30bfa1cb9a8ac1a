"""Unit tests for the long table (scan/table.py) and the sharding arithmetic of engine/distributed.py."""

from __future__ import annotations

import numpy as np
import pytest

from dpo_doctor.engine.distributed import Dist, all_sum, all_true, merge, owned, shard_mask
from dpo_doctor.engine.pairs import PairScores
from dpo_doctor.scan.table import COLUMNS, checkpoint_table


def test_checkpoint_table_by_hand():
    """Two pairs, beta 0.5.
    pair 0: chosen -10 vs ref -12 -> reward 0.5 * 2 = 1.0; rejected -20 vs ref -18 -> -1.0; margin 2.0.
    pair 1: chosen -5 vs ref -5 -> 0.0; rejected -7 vs ref -9 -> 1.0; margin -1.0.
    Lengths come from the reference's scores (the same tokens for both models)."""
    policy = PairScores(np.array([-10.0, -5.0]), np.array([-20.0, -7.0]), np.array([3, 4]), np.array([5, 6]))
    ref = PairScores(np.array([-12.0, -5.0]), np.array([-18.0, -9.0]), np.array([3, 4]), np.array([5, 6]))
    df = checkpoint_table("checkpoint-7", 7, (10, 11), policy, ref, 0.5, (False, True))
    assert tuple(df.columns) == COLUMNS
    assert df["reward_chosen"].to_list() == [1.0, 0.0]
    assert df["reward_rejected"].to_list() == [-1.0, 1.0]
    assert df["margin"].to_list() == [2.0, -1.0]
    assert df["pair_id"].to_list() == [10, 11] and df["step"].to_list() == [7, 7]
    assert df["len_chosen"].to_list() == [3, 4] and df["excluded"].to_list() == [False, True]


def test_nan_scores_stay_nan():
    """A pair not scored (NaN) keeps NaN rewards: the sanity checks and metrics see it, nothing invents a 0."""
    policy = PairScores.empty(1)
    ref = PairScores(np.array([-1.0]), np.array([-2.0]), np.array([1]), np.array([1]))
    df = checkpoint_table("c", 1, (0,), policy, ref, 0.1, (False,))
    assert np.isnan(df["margin"][0])


@pytest.mark.parametrize("world", [1, 2, 3])
def test_shards_cover_every_item_once(world):
    ranks = [Dist(rank=r, world=world) for r in range(world)]
    masks = np.stack([shard_mask(10, d) for d in ranks])
    assert (masks.sum(axis=0) == 1).all()  # every pair on exactly one rank
    assert sorted(i for d in ranks for i in owned(10, d)) == list(range(10))
    assert owned(10, ranks[-1]) == [i for i in range(10) if masks[-1, i]]


def test_single_process_collectives_are_identity():
    d = Dist()
    arrays = {"logp_chosen": np.array([1.0, 2.0])}
    assert merge(arrays, shard_mask(2, d), d) is arrays
    assert all_true(True, d) and not all_true(False, d)
    assert all_sum([1.5, 2.0], d) == [1.5, 2.0]
