"""Ensembles: members trained in one program follow their single runs; resume is exact."""

import dataclasses

import jax
import numpy as np
import pytest

from jaxgap import train as train_mod
from jaxgap.ensemble import Ensemble, fit, member_data, program_key, shard
from jaxgap.train import TrainConfig

BASE = TrainConfig(width=16, depth=1, batch_size=8, lr=3e-3, warmup=2, steps=6, eval_every=3,
                   ckpt_every=3, eval_sigmas=4, eval_train_size=24, eval_val_size=32)
# seeds, nested and disjoint training subsets, value-only hyper-parameters: one program
MEMBERS = (
    dataclasses.replace(BASE, seed=0, train_size=16),
    dataclasses.replace(BASE, seed=3, train_size=32, lr=1e-3, ema=0.9),
    dataclasses.replace(BASE, seed=0, train_size=16, train_offset=16, weight_decay=0.1,
                        p_mean=-0.5, p_std=0.8),
)
FIELDS = ("train", "val", "gap", "gap_se", "ema_train", "ema_val", "ema_gap", "ema_gap_se")


def _loss_rows(rows):
    return {(r["step"], r["member"]): r for r in rows if r["kind"] == "loss"}


def test_members_match_their_single_runs(tmp_path):
    ens = Ensemble.create(MEMBERS, dim=64)
    data = member_data(MEMBERS)
    assert data.n.tolist() == [16, 32, 16] and data.eval_n.tolist() == [16, 24, 16]
    rows = _loss_rows(fit(ens, data, tmp_path / "ens", eval_steps=(0, 3, 6), progress=False))
    assert sorted(rows) == [(t, i) for t in (0, 3, 6) for i in range(3)]
    for i, config in enumerate(MEMBERS):
        if i == 0:  # (two single runs suffice: the third member differs only in n)
            continue
        train_mod.train_and_evaluate(config, tmp_path / f"alone{i}", progress=False)
        alone = train_mod.read_metrics(tmp_path / f"alone{i}")
        assert [r["step"] for r in alone] == [0, 3, 6]
        for ref in alone:
            mine = rows[(ref["step"], i)]
            np.testing.assert_allclose(mine["sigmas"], ref["sigmas"], rtol=1e-12)
            for name in FIELDS:
                np.testing.assert_allclose(mine[name], ref[name], rtol=2e-4, atol=2e-6,
                                           err_msg=f"member {i} step {ref['step']} {name}")
    # the members are different runs, not copies: their trained curves differ
    assert not np.allclose(rows[(6, 0)]["ema_train"], rows[(6, 2)]["ema_train"])


def test_members_in_turn_and_side_by_side_take_the_same_steps():
    # On one CPU device U-Net members take turns in one single-member program; with a mesh
    # (here of that one device), or when asked, they are vmapped side by side: the same
    # steps. Losses to float32 rounding; parameters to a fraction of the learning rate (Adam
    # turns rounding in a near-zero gradient into up to lr per step), far below the seeds'
    # differences.
    members = [dataclasses.replace(m, model="unet", channels=(4, 8), width=None, depth=None)
               for m in MEMBERS]
    ens = Ensemble.create(members, dim=64, image_shape=(8, 8, 1))
    data = member_data(members)
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), ("members",))
    turns, side = ens.make_step(data), ens.make_step(data, mesh=mesh)
    plain = ens.make_step(data, layout="vmap")
    a, b, c = ens.state, shard(ens.state, mesh), ens.state
    for _ in range(4):
        (a, loss_a), (b, loss_b), (c, loss_c) = turns(a), side(b), plain(c)
        assert loss_a.shape == (3,) and len(set(np.asarray(loss_a).tolist())) == 3
        np.testing.assert_allclose(loss_a, loss_b, rtol=1e-4, atol=1e-7)
        np.testing.assert_allclose(loss_a, loss_c, rtol=1e-4, atol=1e-7)
    assert np.asarray(a["step"]).tolist() == [4, 4, 4]
    for x, y, z in zip(*(jax.tree.leaves(s["params"]) for s in (a, b, c)), strict=True):
        np.testing.assert_allclose(x, y, rtol=0, atol=BASE.lr / 4)
        np.testing.assert_allclose(x, z, rtol=0, atol=BASE.lr / 4)
    with pytest.raises(ValueError, match="layout"):
        ens.make_step(data, layout="scan")
    with pytest.raises(ValueError, match="layout"):
        ens.make_step(data, mesh=mesh, layout="turns")


def test_resume_after_a_failure_writes_the_same_rows(tmp_path):
    members = MEMBERS[:2]
    ens = Ensemble.create(members, dim=64)
    data = member_data(members)

    def sample(step, host):  # a sample row from the host state: what was trained
        return [{"member": i, "step_seen": int(host["step"][i]),
                 "w": float(sum(np.sum(np.abs(x[i])) for x in jax.tree.leaves(host["ema"])))}
                for i in range(2)]

    kw = dict(eval_steps=(0, 3, 6), sample_steps=(2, 5), progress=False)
    ref = fit(ens, data, tmp_path / "ref", on_sample=sample, **kw)

    def failing(step, host):
        if step == 5:
            raise RuntimeError("killed")
        return sample(step, host)

    with pytest.raises(RuntimeError, match="killed"):
        fit(ens, data, tmp_path / "run", on_sample=failing, **kw)
    with pytest.raises(ValueError, match="already holds checkpoints"):
        fit(ens, data, tmp_path / "run", on_sample=sample, **kw)
    got = fit(ens, data, tmp_path / "run", on_sample=sample, resume=True, **kw)
    assert [(r["kind"], r["step"], r["member"]) for r in got] == \
        [(r["kind"], r["step"], r["member"]) for r in ref]
    for a, b in zip(got, ref, strict=True):
        for k in a:
            if k not in ("kind", "step", "member"):
                np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)


def test_program_key_and_bad_members():
    a = dataclasses.replace(BASE, seed=1, lr=0.1, train_size=40)
    assert program_key(a, 40) == program_key(BASE, 40)
    assert program_key(BASE, 4) != program_key(BASE, 40)  # the batch is a shape
    with pytest.raises(ValueError, match="differ too: width"):
        Ensemble.create([BASE, dataclasses.replace(BASE, width=8)], dim=64)
    with pytest.raises(ValueError, match="seeds"):
        Ensemble.create(BASE, seeds=(0, -1), dim=64)
    with pytest.raises(ValueError, match="seeds"):
        Ensemble.create(BASE, seeds="01", dim=64)
    small = (dataclasses.replace(BASE, train_size=4), dataclasses.replace(BASE, train_size=16))
    ens = Ensemble.create(small, dim=64)
    with pytest.raises(ValueError, match="batches"):
        ens.make_step(member_data(small))
    with pytest.raises(ValueError, match="eval_steps"):
        fit(ens, member_data(small), "unused", eval_steps=(7,))


# conditional members (class labels, per-member p_uncond and guidance): one program
COND = (
    dataclasses.replace(BASE, seed=1, train_size=48, condition="class", guidance=1.0),
    dataclasses.replace(BASE, seed=1, train_size=48, condition="class", guidance=2.5,
                        p_uncond=0.5),
)


def test_conditional_members_match_their_single_runs(tmp_path):
    data = member_data(COND)
    assert data.classes == 10 and data.train_cond.shape == (2, 48)
    np.testing.assert_array_equal(data.val_cond[0], data.datasets[0].val_cond[:32])
    ens = Ensemble.create(COND, dim=64, classes=data.classes)
    assert program_key(COND[0], 48) == program_key(COND[1], 48)
    rows = _loss_rows(fit(ens, data, tmp_path / "ens", eval_steps=(0, 3, 6), progress=False))
    train_mod.train_and_evaluate(COND[1], tmp_path / "alone", progress=False)
    for ref in train_mod.read_metrics(tmp_path / "alone"):
        for name in FIELDS:
            np.testing.assert_allclose(rows[(ref["step"], 1)][name], ref[name], rtol=2e-4,
                                       atol=2e-6, err_msg=f"step {ref['step']} {name}")


def test_views_evaluate_one_network_at_several_weights(tmp_path):
    """Views (member, w) of one trained conditional network give the rows of members that
    differ only in w (they train identical networks); bad views are refused."""
    data = member_data(COND[:1])
    ens = Ensemble.create(COND[:1], dim=64, classes=data.classes)
    views = [(0, 0.0), (0, 1.0), (0, 2.5)]
    rows = _loss_rows(fit(ens, data, tmp_path / "views", eval_steps=(0, 6), views=views,
                          progress=False))
    wide = [dataclasses.replace(COND[0], guidance=w) for _, w in views]
    ref = Ensemble.create(wide, dim=64, classes=data.classes)
    ref_rows = _loss_rows(fit(ref, member_data(wide), tmp_path / "wide", eval_steps=(0, 6),
                              progress=False))
    assert sorted(rows) == sorted(ref_rows)
    for key, row in rows.items():
        for name in FIELDS:
            np.testing.assert_allclose(row[name], ref_rows[key][name], rtol=1e-5, atol=1e-7,
                                       err_msg=f"{key} {name}")
    # the weights matter: w = 0 and w = 2.5 differ at step 6
    assert not np.allclose(rows[(6, 0)]["ema_gap"], rows[(6, 2)]["ema_gap"])
    for bad in ([(1, 1.0)], [(0, float("nan"))], [], [("a", 1.0)]):
        with pytest.raises(ValueError, match="views"):
            ens.make_eval(data, views=bad)
    plain = Ensemble.create(BASE, dim=64)
    with pytest.raises(ValueError, match="unconditional"):
        plain.check_views([(0, 2.0)])
