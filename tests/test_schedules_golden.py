"""Golden values for every TF/Keras/paper formula, derived by hand with `math`.

Each expected number is written as the arithmetic of the reference formula (Keras
`keras.optimizers.schedules.*`, `tf.compat.v1.train.*`, the ULMFiT and Transformer papers,
`transformers.get_wsd_schedule` and `get_cosine_schedule_with_warmup`, timm's cosine, tanh and
poly schedulers), never by calling the code under test. Values sit on both
sides of every boundary: staircase steps, milestones, piecewise boundaries, join points,
warmup ends, CLR cycle ends, one-cycle phase ends, SGDR restarts and WSD phases.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import lrkit.schedules as S
from lrkit.schedules.noise import standard_normal

cos, exp, pi, sqrt, floor, log = math.cos, math.exp, math.pi, math.sqrt, math.floor, math.log


def _hc(f: float) -> float:
    """Half cosine 0.5 * (1 + cos(pi * f)), written out once for readability."""
    return 0.5 * (1 + cos(pi * f))


EXP = S.exponential(0.1, 100, 0.96)
EXP_STAIR = S.exponential(0.1, 100, 0.96, staircase=True)
NAT = S.natural_exp(0.1, 100, 0.5)
NAT_STAIR = S.natural_exp(0.1, 100, 0.5, staircase=True)
INV = S.inverse_time(0.1, 100, 0.5)
INV_STAIR = S.inverse_time(0.1, 100, 0.5, staircase=True)
POLY2 = S.polynomial(0.1, 400, end_lr=0.001, power=2.0)
POLY_CYCLE = S.polynomial(0.1, 150, end_lr=0.001, power=2.0, cycle=True)
PIECE = S.piecewise((100, 250, 400), (0.1, 0.05, 0.01, 0.001))
STEP = S.step(0.1, 30, 0.5)
MULTI = S.multistep(0.1, (50, 120, 120, 300), 0.3)
COS = S.cosine(0.1, 400, alpha=0.1)
LINCOS = S.linear_cosine(0.1, 400, num_periods=2.0, alpha=0.1, beta=0.01)
LINCOS_DEFAULT = S.linear_cosine(0.1, 400)
SGDR_KERAS = S.sgdr(0.1, 20, t_mul=1.5, m_mul=0.5, alpha=0.01)
STLR = S.slanted_triangular(0.01, 500, cut_frac=0.1, ratio=32.0)
STLR_FLOOR = S.slanted_triangular(0.01, 333, cut_frac=0.1, ratio=32.0)
ISQRT = S.inverse_sqrt(0.001, 100)
WSD_LIN = S.wsd(0.1, 50, 200, 150, decay="linear", end_lr=0.001)
WSD_COS = S.wsd(0.1, 50, 200, 150, decay="cosine")
WSD_SQRT = S.wsd(0.1, 50, 200, 150, decay="1-sqrt")
TRI = S.triangular(0.001, 0.01, 20, 30)
TRI2 = S.triangular2(0.001, 0.01, 25)
EXPR = S.exp_range(0.001, 0.01, 20, gamma=0.995)
OC = S.one_cycle(0.1, 500)  # initial 0.1/25 = 0.004, final 0.004/1e4 = 4e-7, phase ends 149, 499
OC3 = S.one_cycle(0.1, 500, pct_start=0.25, anneal="linear", three_phase=True)  # ends 124, 248, 499
OCM = OC.momentum_schedule()  # 0.95 -> 0.85 -> 0.95
JOIN = S.join([S.constant(0.1), S.polynomial(0.1, 200, end_lr=0.0), S.constant(0.0)], [100, 300])
JOIN_JUMP = S.join([S.constant(0.1), S.constant(0.01)], [10.5])
JOIN_LOCAL = S.join([S.constant(1.0), S.step(1.0, 10, 0.5)], [5])
WARM = S.warmup(S.cosine(0.1, 100), 10)
WARM_EXP = S.warmup(S.constant(0.1), 10, start_lr=1e-4, mode="exponential")
WARM_COS = S.warmup(S.constant(0.1), 10, start_lr=0.02, mode="cosine")
EPOCHS = S.in_epochs(S.step(0.1, 3, 0.5), 37.5)
WAVE = S.cosine_wave(0.1, 100, alpha=0.1)
WAVE3 = S.cosine_wave(0.1, 300, cycles=1.5)
SHIFT = S.shift(S.step(1.0, 10, 0.5), 3)
WARM_SQRT = S.warmup(S.constant(0.1), 10, start_lr=0.02, mode="1-sqrt")
TIMM_COS = S.timm_cosine(0.1, 20, lr_min=0.001, cycle_mul=2.0, cycle_decay=0.5, cycle_limit=3)
TIMM_TANH = S.timm_tanh(0.1, 50, lr_min=0.001)
TIMM_POLY = S.timm_poly(0.1, 50, power=2.0, lr_min=0.001, cycle_limit=2, cycle_decay=0.5)

GOLDEN = [
    # -- ExponentialDecay: lr * rate ** (t / decay_steps), floored when staircase
    ("exp", EXP, 0, 0.1),
    ("exp", EXP, 250, 0.1 * 0.96 ** (250 / 100)),
    ("exp", EXP, 99, 0.1 * 0.96 ** 0.99),
    ("exp_stair", EXP_STAIR, 250, 0.1 * 0.96**2),
    ("exp_stair", EXP_STAIR, 99, 0.1),  # last step before the first stair
    ("exp_stair", EXP_STAIR, 100, 0.1 * 0.96),  # first step on it
    ("exp_stair", EXP_STAIR, 199.5, 0.1 * 0.96),
    ("exp_stair", EXP_STAIR, 200, 0.1 * 0.96**2),
    # -- natural_exp_decay: lr * exp(-rate * p)
    ("nat", NAT, 250, 0.1 * exp(-0.5 * 2.5)),
    ("nat_stair", NAT_STAIR, 250, 0.1 * exp(-0.5 * 2)),
    ("nat_stair", NAT_STAIR, 99, 0.1),
    ("nat_stair", NAT_STAIR, 100, 0.1 * exp(-0.5)),
    # -- InverseTimeDecay: lr / (1 + rate * p)
    ("inv", INV, 250, 0.1 / (1 + 0.5 * 2.5)),
    ("inv_stair", INV_STAIR, 250, 0.1 / (1 + 0.5 * 2)),
    ("inv_stair", INV_STAIR, 99, 0.1),
    ("inv_stair", INV_STAIR, 100, 0.1 / 1.5),
    # -- PolynomialDecay power 2, no cycle: (lr - end) * (1 - min(t, D) / D) ** 2 + end
    ("poly", POLY2, 100, (0.1 - 0.001) * (1 - 100 / 400) ** 2 + 0.001),
    ("poly", POLY2, 399, (0.1 - 0.001) * (1 / 400) ** 2 + 0.001),
    ("poly", POLY2, 400, 0.001),
    ("poly", POLY2, 5000, 0.001),
    # -- PolynomialDecay with cycle: D' = D * ceil(t / D) (1 at t = 0)
    ("poly_cycle", POLY_CYCLE, 0, 0.1),
    ("poly_cycle", POLY_CYCLE, 75, 0.099 * (1 - 75 / 150) ** 2 + 0.001),
    ("poly_cycle", POLY_CYCLE, 150, 0.001),  # ceil(150/150) = 1 -> p = 1
    ("poly_cycle", POLY_CYCLE, 151, 0.099 * (1 - 151 / 300) ** 2 + 0.001),  # ceil = 2: restarts
    ("poly_cycle", POLY_CYCLE, 300, 0.001),
    ("poly_cycle", POLY_CYCLE, 301, 0.099 * (1 - 301 / 450) ** 2 + 0.001),
    # -- PiecewiseConstantDecay: a boundary belongs to the earlier piece (t <= b)
    ("piecewise", PIECE, 0, 0.1),
    ("piecewise", PIECE, 100, 0.1),
    ("piecewise", PIECE, 100.5, 0.05),
    ("piecewise", PIECE, 101, 0.05),
    ("piecewise", PIECE, 250, 0.05),
    ("piecewise", PIECE, 251, 0.01),
    ("piecewise", PIECE, 400, 0.01),
    ("piecewise", PIECE, 401, 0.001),
    # -- StepLR / MultiStepLR: lr * gamma ** floor(t / s), lr * gamma ** #{m <= t}
    ("step", STEP, 29, 0.1),
    ("step", STEP, 30, 0.05),
    ("step", STEP, 89, 0.1 * 0.5**2),
    ("step", STEP, 90, 0.1 * 0.5**3),
    ("multistep", MULTI, 49, 0.1),
    ("multistep", MULTI, 50, 0.1 * 0.3),
    ("multistep", MULTI, 119, 0.1 * 0.3),
    ("multistep", MULTI, 120, 0.1 * 0.3**3),  # repeated milestone counts twice
    ("multistep", MULTI, 299, 0.1 * 0.3**3),
    ("multistep", MULTI, 300, 0.1 * 0.3**4),
    # -- CosineDecay: lr * ((1 - alpha) * 0.5 * (1 + cos(pi * min(t, D) / D)) + alpha)
    ("cosine", COS, 0, 0.1),
    ("cosine", COS, 100, 0.1 * (0.9 * 0.5 * (1 + cos(pi / 4)) + 0.1)),
    ("cosine", COS, 200, 0.1 * (0.9 * 0.5 + 0.1)),
    ("cosine", COS, 399, 0.1 * (0.9 * 0.5 * (1 + cos(pi * 399 / 400)) + 0.1)),
    ("cosine", COS, 400, 0.1 * 0.1),
    ("cosine", COS, 1000, 0.1 * 0.1),
    # -- linear_cosine_decay: lr * ((alpha + (D - t')/D) * 0.5 * (1 + cos(pi * 2 * periods * t'/D)) + beta)
    ("lincos", LINCOS, 0, 0.1 * ((0.1 + 1.0) * 1.0 + 0.01)),
    ("lincos", LINCOS, 50, 0.1 * ((0.1 + 350 / 400) * 0.5 * (1 + cos(pi * 2 * 2 * 50 / 400)) + 0.01)),
    ("lincos", LINCOS, 100, 0.1 * ((0.1 + 0.75) * 0.5 * (1 + cos(pi)) + 0.01)),  # = 0.1 * 0.01
    ("lincos", LINCOS, 400, 0.1 * ((0.1 + 0.0) * 0.5 * (1 + cos(4 * pi)) + 0.01)),
    ("lincos", LINCOS, 900, 0.1 * ((0.1 + 0.0) * 1.0 + 0.01)),
    # TF defaults num_periods=0.5, alpha=0, beta=0.001: t=200 -> (0.5 * 0.5 * (1 + cos(pi/2)) + 0.001)
    ("lincos_default", LINCOS_DEFAULT, 200, 0.1 * (0.5 * 0.5 * (1 + cos(pi * 0.5)) + 0.001)),
    # -- CosineDecayRestarts(0.1, first_decay_steps=20, t_mul=1.5, m_mul=0.5, alpha=0.01):
    # cycle i has length 20 * 1.5**i and starts at 20 * (1.5**i - 1) / 0.5: 0, 20, 50, 95, 162.5
    # Keras: i = floor(log(1 - (t/20) * (1 - 1.5)) / log(1.5)); frac = (t/20 - (1 - 1.5**i)/(1 - 1.5)) / 1.5**i
    ("sgdr", SGDR_KERAS, 0, 0.1 * (0.99 * 1.0 + 0.01)),
    ("sgdr", SGDR_KERAS, 10, 0.1 * (0.99 * 1.0 * _hc(10 / 20) + 0.01)),
    ("sgdr", SGDR_KERAS, 19, 0.1 * (0.99 * 1.0 * _hc(19 / 20) + 0.01)),
    ("sgdr", SGDR_KERAS, 20, 0.1 * (0.99 * 0.5 * 1.0 + 0.01)),  # restart at lr * m_mul
    ("sgdr", SGDR_KERAS, 35, 0.1 * (0.99 * 0.5 * _hc(15 / 30) + 0.01)),
    ("sgdr", SGDR_KERAS, 49, 0.1 * (0.99 * 0.5 * _hc(29 / 30) + 0.01)),
    ("sgdr", SGDR_KERAS, 50, 0.1 * (0.99 * 0.25 + 0.01)),
    ("sgdr", SGDR_KERAS, 94, 0.1 * (0.99 * 0.25 * _hc(44 / 45) + 0.01)),
    ("sgdr", SGDR_KERAS, 95, 0.1 * (0.99 * 0.125 + 0.01)),
    ("sgdr", SGDR_KERAS, 100, 0.1 * (0.99 * 0.125 * _hc(5 / 67.5) + 0.01)),
    ("sgdr", SGDR_KERAS, 162, 0.1 * (0.99 * 0.125 * _hc(67 / 67.5) + 0.01)),
    ("sgdr", SGDR_KERAS, 162.5, 0.1 * (0.99 * 0.0625 + 0.01)),
    ("sgdr", SGDR_KERAS, 163, 0.1 * (0.99 * 0.0625 * _hc(0.5 / 101.25) + 0.01)),
    # -- ULMFiT eq. 3: cut = floor(T * cut_frac) = 50; p = t/cut or 1 - (t-cut)/(cut*(1/cut_frac - 1))
    ("stlr", STLR, 0, 0.01 * (1 + 0 * 31) / 32),
    ("stlr", STLR, 25, 0.01 * (1 + 0.5 * 31) / 32),
    ("stlr", STLR, 49, 0.01 * (1 + 49 / 50 * 31) / 32),
    ("stlr", STLR, 50, 0.01),
    ("stlr", STLR, 51, 0.01 * (1 + (1 - 1 / 450) * 31) / 32),
    ("stlr", STLR, 275, 0.01 * (1 + 0.5 * 31) / 32),
    ("stlr", STLR, 500, 0.01 / 32),
    ("stlr", STLR, 700, 0.01 / 32),
    # T = 333: cut = floor(33.3) = 33, decay span 33 * 9 = 297
    ("stlr_floor", STLR_FLOOR, 32, 0.01 * (1 + 32 / 33 * 31) / 32),
    ("stlr_floor", STLR_FLOOR, 100, 0.01 * (1 + (1 - 67 / 297) * 31) / 32),
    # -- inverse sqrt (Vaswani eq. 3, peak lr): n = t + 1, lr * min(n / w, sqrt(w / n))
    ("isqrt", ISQRT, 0, 0.001 * 1 / 100),
    ("isqrt", ISQRT, 49, 0.001 * 0.5),
    ("isqrt", ISQRT, 98, 0.001 * 99 / 100),
    ("isqrt", ISQRT, 99, 0.001),
    ("isqrt", ISQRT, 100, 0.001 * sqrt(100 / 101)),
    ("isqrt", ISQRT, 399, 0.001 * 0.5),
    # -- WSD: warmup lr * t / W; stable lr; decay end + (lr - end) * f(p), p = (t - W - S) / D
    ("wsd_lin", WSD_LIN, 0, 0.0),
    ("wsd_lin", WSD_LIN, 25, 0.05),
    ("wsd_lin", WSD_LIN, 49, 0.1 * 49 / 50),
    ("wsd_lin", WSD_LIN, 50, 0.1),
    ("wsd_lin", WSD_LIN, 250, 0.1),
    ("wsd_lin", WSD_LIN, 251, 0.001 + 0.099 * (1 - 1 / 150)),
    ("wsd_lin", WSD_LIN, 325, 0.001 + 0.099 * 0.5),
    ("wsd_lin", WSD_LIN, 399, 0.001 + 0.099 * (1 / 150)),
    ("wsd_lin", WSD_LIN, 400, 0.001),
    ("wsd_lin", WSD_LIN, 1000, 0.001),
    ("wsd_cos", WSD_COS, 287.5, 0.1 * 0.5 * (1 + cos(pi * 0.25))),
    ("wsd_cos", WSD_COS, 325, 0.1 * 0.5),
    ("wsd_cos", WSD_COS, 400, 0.0),
    ("wsd_sqrt", WSD_SQRT, 287.5, 0.1 * (1 - sqrt(0.25))),
    ("wsd_sqrt", WSD_SQRT, 259, 0.1 * (1 - sqrt(9 / 150))),
    ("wsd_sqrt", WSD_SQRT, 400, 0.0),
    # -- CLR (Smith 2017): cycle = floor(1 + t/(up+down)); x = 1 + t/(up+down) - cycle;
    # h = x/r if x <= r else (x-1)/(r-1), r = up/(up+down); lr = base + (max-base) * h * scale
    ("tri", TRI, 0, 0.001),
    ("tri", TRI, 19, 0.001 + 0.009 * 19 / 20),
    ("tri", TRI, 20, 0.01),
    ("tri", TRI, 21, 0.001 + 0.009 * 29 / 30),
    ("tri", TRI, 49, 0.001 + 0.009 * 1 / 30),
    ("tri", TRI, 50, 0.001),  # cycle end = next cycle's start
    ("tri", TRI, 51, 0.001 + 0.009 * 1 / 20),
    ("tri", TRI, 270, 0.01),  # 6th peak: 5 * 50 + 20
    ("tri2", TRI2, 25, 0.01),
    ("tri2", TRI2, 49, 0.001 + 0.009 * 1 / 25),
    ("tri2", TRI2, 50, 0.001),
    ("tri2", TRI2, 51, 0.001 + 0.009 * 1 / 25 * 0.5),
    ("tri2", TRI2, 75, 0.001 + 0.009 * 0.5),
    ("tri2", TRI2, 125, 0.001 + 0.009 * 0.25),
    ("tri2", TRI2, 275, 0.001 + 0.009 / 2**5),
    ("exp_range", EXPR, 20, 0.001 + 0.009 * 0.995**20),
    ("exp_range", EXPR, 30, 0.001 + 0.009 * 0.5 * 0.995**30),
    ("exp_range", EXPR, 60, 0.001 + 0.009 * 0.995**60),
    # -- one-cycle: cos anneal end + (start - end) / 2 * (cos(pi * pct) + 1)
    ("one_cycle", OC, 0, 0.004),
    ("one_cycle", OC, 148, 0.1 + (0.004 - 0.1) / 2 * (cos(pi * 148 / 149) + 1)),
    ("one_cycle", OC, 149, 0.1),
    ("one_cycle", OC, 150, 4e-7 + (0.1 - 4e-7) / 2 * (cos(pi * 1 / 350) + 1)),
    ("one_cycle", OC, 324, 4e-7 + (0.1 - 4e-7) / 2 * (cos(pi * 175 / 350) + 1)),
    ("one_cycle", OC, 498, 4e-7 + (0.1 - 4e-7) / 2 * (cos(pi * 349 / 350) + 1)),
    ("one_cycle", OC, 499, 4e-7),
    ("one_cycle", OC, 800, 4e-7),  # held after total_steps - 1
    # three phases, linear: (end - start) * pct + start over [0,124], [124,248], [248,499]
    ("one_cycle3", OC3, 62, (0.1 - 0.004) * 62 / 124 + 0.004),
    ("one_cycle3", OC3, 123, (0.1 - 0.004) * 123 / 124 + 0.004),
    ("one_cycle3", OC3, 124, 0.1),
    ("one_cycle3", OC3, 125, (0.004 - 0.1) * 1 / 124 + 0.1),
    ("one_cycle3", OC3, 248, 0.004),
    ("one_cycle3", OC3, 249, (4e-7 - 0.004) * 1 / 251 + 0.004),
    ("one_cycle3", OC3, 499, 4e-7),
    ("one_cycle_mom", OCM, 0, 0.95),
    ("one_cycle_mom", OCM, 149, 0.85),
    ("one_cycle_mom", OCM, 150, 0.95 + (0.85 - 0.95) / 2 * (cos(pi * 1 / 350) + 1)),
    ("one_cycle_mom", OCM, 499, 0.95),
    # -- join (local time): pieces [0, 100) const, [100, 300) poly(t - 100), [300, inf) const
    ("join", JOIN, 99, 0.1),
    ("join", JOIN, 100, 0.1),
    ("join", JOIN, 101, 0.1 * (1 - 1 / 200)),
    ("join", JOIN, 299, 0.1 * (1 / 200)),
    ("join", JOIN, 300, 0.0),
    ("join_jump", JOIN_JUMP, 10, 0.1),
    ("join_jump", JOIN_JUMP, 10.5, 0.01),  # the boundary belongs to the later piece
    ("join_local", JOIN_LOCAL, 14, 1.0),  # step(1.0, 10)(9)
    ("join_local", JOIN_LOCAL, 15, 0.5),  # step(1.0, 10)(10)
    # -- warmup then cosine(0.1, 100) in local time; linear ramp 0 -> 0.1 over 10 steps
    ("warmup", WARM, 0, 0.0),
    ("warmup", WARM, 9, 0.1 * 9 / 10),
    ("warmup", WARM, 10, 0.1),
    ("warmup", WARM, 11, 0.1 * 0.5 * (1 + cos(pi * 1 / 100))),
    ("warmup", WARM, 60, 0.1 * 0.5),
    ("warmup_exp", WARM_EXP, 5, 1e-4 * (0.1 / 1e-4) ** 0.5),
    ("warmup_exp", WARM_EXP, 9, 1e-4 * (0.1 / 1e-4) ** 0.9),
    ("warmup_cos", WARM_COS, 5, 0.02 + (0.1 - 0.02) * 0.5 * (1 - cos(pi * 0.5))),
    ("warmup_cos", WARM_COS, 10, 0.1),
    # -- epochs -> steps: step(0.1, 3 epochs) at 37.5 steps per epoch: first decay at step 112.5
    ("in_epochs", EPOCHS, 112, 0.1),
    ("in_epochs", EPOCHS, 112.5, 0.05),
    ("in_epochs", EPOCHS, 113, 0.05),
    # -- cosine wave (HF's cosine with num_cycles): lr * (0.5 * (1 + cos(2 pi c t / D)) * (1 - alpha) + alpha)
    ("cosine_wave", WAVE, 50, 0.1 * (0.5 * (1 + cos(pi / 2)) * 0.9 + 0.1)),
    ("cosine_wave", WAVE, 100, 0.1 * 0.1),
    ("cosine_wave", WAVE, 150, 0.1 * (0.5 * (1 + cos(1.5 * pi)) * 0.9 + 0.1)),  # rises again past D
    ("cosine_wave", WAVE, 200, 0.1),
    ("cosine_wave3", WAVE3, 100, 0.0),  # 1.5 waves over 300 steps: period 200
    ("cosine_wave3", WAVE3, 199, 0.1 * 0.5 * (1 + cos(pi * 199 / 100))),
    ("cosine_wave3", WAVE3, 200, 0.1),
    ("cosine_wave3", WAVE3, 300, 0.0),
    # -- shift: step(1.0, 10, 0.5)(t + 3): the decay at local step 10 shows at step 7
    ("shift", SHIFT, 6, 1.0),
    ("shift", SHIFT, 7, 0.5),
    ("shift", SHIFT, 17, 0.25),
    # -- 1-sqrt warmup: start + (peak - start) * (1 - sqrt(1 - t / steps))
    ("warmup_1sqrt", WARM_SQRT, 0, 0.02),
    ("warmup_1sqrt", WARM_SQRT, 5, 0.02 + 0.08 * (1 - sqrt(0.5))),
    ("warmup_1sqrt", WARM_SQRT, 9, 0.02 + 0.08 * (1 - sqrt(0.1))),
    ("warmup_1sqrt", WARM_SQRT, 10, 0.1),
    # -- timm cosine: cycles [0, 20), [20, 60), [60, 140) peaking at 0.1, 0.05, 0.025; then lr_min
    # lr_min + 0.5 * (lr_max - lr_min) * (1 + cos(pi * t_curr / t_i))
    ("timm_cosine", TIMM_COS, 0, 0.1),
    ("timm_cosine", TIMM_COS, 10, 0.001 + 0.5 * 0.099 * (1 + cos(pi / 2))),
    ("timm_cosine", TIMM_COS, 19, 0.001 + 0.5 * 0.099 * (1 + cos(pi * 19 / 20))),
    ("timm_cosine", TIMM_COS, 20, 0.05),
    ("timm_cosine", TIMM_COS, 40, 0.001 + 0.5 * 0.049 * (1 + cos(pi / 2))),
    ("timm_cosine", TIMM_COS, 60, 0.025),
    ("timm_cosine", TIMM_COS, 139, 0.001 + 0.5 * 0.024 * (1 + cos(pi * 79 / 80))),
    ("timm_cosine", TIMM_COS, 140, 0.001),  # cycle_limit = 3: held
    ("timm_cosine", TIMM_COS, 5000, 0.001),
    # -- timm tanh (lb = -7, ub = 3): lr_min + 0.5 * (lr - lr_min) * (1 - tanh(lb * (1 - r) + ub * r)), r = t / 50
    ("timm_tanh", TIMM_TANH, 0, 0.001 + 0.5 * 0.099 * (1 - math.tanh(-7))),
    ("timm_tanh", TIMM_TANH, 25, 0.001 + 0.5 * 0.099 * (1 - math.tanh(-2))),
    ("timm_tanh", TIMM_TANH, 49, 0.001 + 0.5 * 0.099 * (1 - math.tanh(-7 * 0.02 + 3 * 0.98))),
    ("timm_tanh", TIMM_TANH, 50, 0.001),
    # -- timm poly: lr_min + (lr_max - lr_min) * (1 - t_curr / t_i) ** power, two cycles of 50
    ("timm_poly", TIMM_POLY, 25, 0.001 + 0.099 * 0.25),
    ("timm_poly", TIMM_POLY, 49, 0.001 + 0.099 * (1 / 50) ** 2),
    ("timm_poly", TIMM_POLY, 50, 0.05),
    ("timm_poly", TIMM_POLY, 75, 0.001 + 0.049 * 0.25),
    ("timm_poly", TIMM_POLY, 100, 0.001),
]


@pytest.mark.parametrize("name, schedule, step, expected", GOLDEN,
                         ids=[f"{g[0]}@{g[2]}" for g in GOLDEN])
def test_golden_value(name, schedule, step, expected):
    assert schedule(step) == pytest.approx(expected, rel=1e-12, abs=1e-16)
    assert schedule(np.array([step]))[0] == pytest.approx(expected, rel=1e-12, abs=1e-16)


def test_vaswani_formula():
    """lrate = d_model**-0.5 * min(n**-0.5, n * warmup**-1.5) with n = step counted from 1."""
    d_model, w = 512, 4000
    schedule = S.inverse_sqrt((d_model * w) ** -0.5, w)
    for n in (1, 2, 1000, 3999, 4000, 4001, 10_000, 100_000):
        expected = d_model**-0.5 * min(n**-0.5, n * w**-1.5)
        assert schedule(n - 1) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("i", range(1, 31))
def test_sgdr_t_mul_3_restarts_at_large_cycle_counts(i):
    """Restart i of sgdr(first=10, t_mul=3) is at 10 * (3**i - 1) / 2 (exact integers); the
    log-based cycle index must never put a restart one step early or late."""
    schedule = S.sgdr(1.0, 10, t_mul=3.0)
    start = 10 * (3**i - 1) // 2
    previous_length = 10 * 3 ** (i - 1)
    assert schedule(start) == 1.0  # restart: cos(0) -> peak
    assert schedule(start - 1) == pytest.approx(_hc((previous_length - 1) / previous_length), rel=1e-9)
    assert schedule(start + 1) == pytest.approx(_hc(1 / (previous_length * 3)), rel=1e-12)
    values = schedule(np.array([start - 1, start, start + 1], dtype=float))
    assert values.tolist() == [schedule(start - 1), 1.0, schedule(start + 1)]
    assert values[0] < 0.025  # the end of the previous cycle, not a restart


@pytest.mark.parametrize("t_mul", [1.5, 2.0, 3.0, 1.1])
def test_sgdr_restart_positions_follow_keras(t_mul):
    """Cycle index of every integer step equals Keras' geometric series (computed in exact
    rationals here) for the first 2000 steps; the LR jumps up exactly at the restarts."""
    from fractions import Fraction

    first = 7
    schedule = S.sgdr(1.0, first, t_mul=t_mul)
    ratio = Fraction(t_mul)
    starts, start, length = [], Fraction(0), Fraction(first)
    while start < 2000:
        starts.append(start)
        start, length = start + length, length * ratio
    t = np.arange(2000, dtype=float)
    values = schedule(t)
    jumps = np.flatnonzero(np.diff(values) > 0) + 1  # first step of each new cycle
    expected = [math.ceil(s) for s in starts[1:]]
    assert list(jumps) == expected


# -- noisy linear cosine ----------------------------------------------------------------
NOISY = S.noisy_linear_cosine(0.1, 400, initial_variance=0.5, variance_decay=0.55, num_periods=2.0,
                              alpha=0.1, beta=0.01, seed=123)


@pytest.mark.parametrize("t", [0, 1, 50, 100, 233, 399, 400, 1000])
def test_noisy_linear_cosine_formula(t):
    """lr * ((alpha + linear + eps) * cosine + beta), eps = sqrt(v0 / (1 + t')**decay) * z."""
    tc = min(t, 400)
    z = float(standard_normal(123, np.array([t]))[0])
    eps = sqrt(0.5 / (1 + tc) ** 0.55) * z
    linear = (400 - tc) / 400
    cosine = 0.5 * (1 + cos(pi * 2 * 2.0 * tc / 400))
    assert NOISY(t) == pytest.approx(0.1 * ((0.1 + linear + eps) * cosine + 0.01), rel=1e-12, abs=1e-16)


def test_noisy_is_a_function_of_seed_and_step():
    t = np.arange(0, 3000, dtype=float)
    whole = NOISY(t)
    assert np.array_equal(S.from_dict(NOISY.to_dict())(t), whole)  # a rebuilt copy: same curve
    # any order, any block split, one step at a time: identical values
    order = np.random.default_rng(0).permutation(t.size)
    assert np.array_equal(NOISY(t[order]), whole[order])
    blocks = np.concatenate([NOISY(t[i:i + 37]) for i in range(0, t.size, 37)])
    assert np.array_equal(blocks, whole)
    assert [NOISY(float(k)) for k in range(0, 3000, 271)] == whole[::271].tolist()
    # a different seed gives a different curve
    other = S.noisy_linear_cosine(0.1, 400, initial_variance=0.5, num_periods=2.0, alpha=0.1, beta=0.01, seed=124)
    assert not np.allclose(other(t[:400]), whole[:400])


def test_standard_normal_statistics():
    n = 200_000
    z = standard_normal(5, np.arange(n, dtype=float))
    # mean ~ N(0, 1/n): |mean| < 5 / sqrt(n); std within 1%; 68.27% within one sigma
    assert abs(z.mean()) < 5 / sqrt(n)
    assert abs(z.std() - 1.0) < 0.01
    assert abs(np.mean(np.abs(z) < 1.0) - 0.6827) < 0.005
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 5 / sqrt(n)  # consecutive steps independent
    assert not np.array_equal(z[:1000], standard_normal(6, np.arange(1000, dtype=float)))


def test_noisy_noise_has_the_tf_variance():
    """With num_periods=0 the cosine factor is 1, so eps_t = lr_t/lr - alpha - linear - beta;
    eps_t / sqrt(v0 / (1 + t)**decay) must be standard normal over many steps."""
    d = 100_000
    schedule = S.noisy_linear_cosine(1.0, d, initial_variance=2.0, variance_decay=0.55, num_periods=0.0,
                                     alpha=0.0, beta=0.0, seed=9)
    t = np.arange(d, dtype=float)
    eps = schedule(t) - (d - t) / d
    std = np.sqrt(2.0 / (1.0 + t) ** 0.55)
    z = eps / std
    assert abs(z.mean()) < 5 / sqrt(d)
    assert abs(z.std() - 1.0) < 0.015
    assert abs(eps[:1000].std() - np.sqrt(np.mean(std[:1000] ** 2))) < 0.1 * np.sqrt(np.mean(std[:1000] ** 2))
