"""The mixture batch sampler (embedlab/data/mixture.py): one dataset per batch, the weights followed block by block,
every example once per pass, deterministic per seed and epoch, resumable at any batch; and the Feistel shuffle."""

from __future__ import annotations

import numpy as np
import pytest

from embedlab.data.mixture import MixtureBatchSampler, Shuffle, apportion
from embedlab.errors import ConfigError

SIZES = [300, 70, 2000]


def lengths_of(d: int):
    return lambda positions: (positions * (d + 7)) % 97  # any deterministic lengths


def sampler(**kw) -> MixtureBatchSampler:
    kw = {"seed": 3, "lengths": [lengths_of(d) for d in range(len(SIZES))], **kw}
    return MixtureBatchSampler(SIZES, 8, **kw)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 64, 65, 1000, 4097])
def test_shuffle_is_a_permutation_and_depends_on_its_key(n: int) -> None:
    order = Shuffle(n, (1, 2))(np.arange(n))
    assert sorted(order.tolist()) == list(range(n))
    if n > 5:
        assert order.tolist() != list(range(n))
        assert order.tolist() != Shuffle(n, (1, 3))(np.arange(n)).tolist()
    # any positions, in any order: the same values as the whole permutation
    picks = np.arange(n)[::-1][: max(1, n // 3)]
    assert Shuffle(n, (1, 2))(picks).tolist() == order[picks].tolist()


def test_apportion_sums_and_stays_within_one() -> None:
    exact = np.array([3.7, 0.2, 4.1])
    alloc = apportion(exact, 8)
    assert alloc.sum() == 8 and (np.abs(alloc - exact) < 1).all()


@pytest.mark.parametrize("drop_last", [False, True])
def test_without_weights_an_epoch_is_one_pass_over_every_dataset(drop_last: bool) -> None:
    s = sampler(drop_last=drop_last)
    batches = list(s)
    assert len(batches) == len(s)
    offsets = np.cumsum([0, *SIZES])
    for batch in batches:  # one dataset per batch
        assert len({int(np.searchsorted(offsets, r, side="right")) for r in batch}) == 1
    rows = sorted(r for b in batches for r in b)
    if drop_last:
        assert all(len(b) == 8 for b in batches)
        assert len(rows) == len(set(rows)) == sum(n // 8 * 8 for n in SIZES)
    else:
        assert rows == list(range(sum(SIZES)))


def test_counts_follow_the_weights_block_by_block() -> None:
    s = sampler(weights=[1.0, 2.0, 1.0])  # the small dataset drawn twice as often: it cycles through passes
    schedule = s.schedule()
    assert len(schedule) == len(s)
    for end in range(s.block, len(schedule), s.block):
        counts = np.bincount(schedule[:end], minlength=3)
        assert (np.abs(counts - end * s.shares) < 1.0).all(), (end, counts)
    drawn = np.bincount([s.dataset_of(b[0]) for b in s], minlength=3)
    assert drawn.tolist() == np.bincount(schedule, minlength=3).tolist()
    # the small dataset runs out and starts a new pass: every one of its rows is seen before any twice
    small = [r for b in s for r in b if s.dataset_of(r) == 1]
    assert len(small) > SIZES[1] and sorted(small[: SIZES[1]]) == list(range(300, 370))


def test_length_grouping_inside_megabatches() -> None:
    grouped, plain = sampler(group_by_length=True), sampler(group_by_length=False)

    def spread(s: MixtureBatchSampler) -> float:
        out = []
        for b in s:
            d = s.dataset_of(b[0])
            lengths = lengths_of(d)(np.asarray(b) - s.offsets[d])
            out.append(lengths.max() - lengths.min())
        return float(np.mean(out))

    assert spread(grouped) < spread(plain) / 3


def test_deterministic_per_seed_and_epoch() -> None:
    a, b = list(sampler()), list(sampler())
    assert a == b
    assert list(sampler(seed=4)) != a
    s = sampler()
    s.set_epoch(1)
    assert list(s) != a


@pytest.mark.parametrize("done", [0, 1, 37, 128, 129, 290])
def test_resumes_mid_epoch_where_it_stopped(done: int) -> None:
    weights = [1.0, 2.0, 1.0]
    full = list(sampler(weights=weights))
    s = sampler(weights=weights)
    it = iter(s)
    for _ in range(done):
        next(it)
    state = s.state_dict()
    assert state == {"epoch": 0, "batches": done, "batch_size": 8}
    resumed = sampler(weights=weights)
    resumed.load_state_dict(state)
    assert list(resumed) == full[done:]
    assert list(resumed) == full  # the next pass over the epoch starts from its beginning


def test_bad_settings_are_one_clear_error() -> None:
    with pytest.raises(ConfigError, match="weights must be positive"):
        sampler(weights=[1.0, 0.0, 1.0])
    with pytest.raises(ConfigError, match="at least batch_size"):
        MixtureBatchSampler([5, 100], 8, drop_last=True)


def test_each_rank_reads_its_own_slice_of_every_global_batch() -> None:
    from embedlab.data.batching import ShardedBatchSampler

    full = list(MixtureBatchSampler(SIZES, 16, drop_last=True, seed=3))  # the global batches of 2 devices × 8
    ranks = [list(ShardedBatchSampler(MixtureBatchSampler(SIZES, 16, drop_last=True, seed=3), r, 2)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == len(full)
    for a, b, whole in zip(*ranks, full, strict=True):
        assert a + b == whole and len(a) == len(b) == 8 and not set(a) & set(b)
    seen = [r for rank in ranks for batch in rank for r in batch]
    assert len(seen) == len(set(seen))  # no example twice in the epoch, across ranks


def test_resuming_with_another_global_batch_is_refused() -> None:
    two_devices = MixtureBatchSampler(SIZES, 16, drop_last=True, seed=3)
    next(iter(two_devices))
    with pytest.raises(ConfigError, match="resume on as many devices"):
        MixtureBatchSampler(SIZES, 8, drop_last=True, seed=3).load_state_dict(two_devices.state_dict())
