"""Tests of recon.functional and recon.operators: adjointness, an independent loop reference,
brightness conventions, shapes, the motion PSF, and CPU/CUDA agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recon.functional import (
    code_bits,
    code_to_psf_1d,
    code_weights,
    coded_sum,
    coded_sum_adjoint,
    mask_weights,
)
from recon.operators import CodedExposure, LinearOperator

BDINR = "11100101"
BDINR_BITS = [1, 1, 1, 0, 0, 1, 0, 1]
# Per-chip transmittance: entries of closed chips (3, 4, 6) must be ignored.
TRANS = [0.9, 0.8, 0.7, 0.3, 0.2, 0.6, 0.1, 0.5]
LEAK = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]


def _masks(k: int, h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    m = (rng.random((k, h, w)) < 0.5).astype(np.uint8)
    m[:, 0, 0] = 0  # a pixel that is never open
    m[:, 0, 1] = 1  # a pixel that is always open
    return m


def _video(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(shape, generator=g, dtype=torch.float64)


# -------------------------------------------------------------------------- independent references


def _norm(bits: list[int], normalize: str) -> float:
    if normalize == "open":
        return float(sum(bits))
    if normalize == "chips":
        return float(len(bits))
    return 1.0


def reference_global(
    x: np.ndarray,
    bits: list[int],
    s: int,
    normalize: str,
    trans: list[float] | None = None,
    leak: list[float] | None = None,
    profile: list[float] | None = None,
) -> np.ndarray:
    """Loop over pixels, chips and sub-steps: y = sum_k e_k * mean_s x[k, s] / n."""
    b_, _, h, w = x.shape
    k_ = len(bits)
    n = _norm(bits, normalize)
    y = np.zeros((b_, h, w))
    for b in range(b_):
        for i in range(h):
            for j in range(w):
                acc = 0.0
                for k in range(k_):
                    for ss in range(s):
                        if profile is not None:
                            e = profile[k * s + ss]
                        elif bits[k] == 1:
                            e = 1.0 if trans is None else trans[k]
                        else:
                            e = 0.0 if leak is None else leak[k]
                        acc += e * x[b, k * s + ss, i, j] / s
                y[b, i, j] = acc / n
    return y


def reference_masks(x: np.ndarray, masks: np.ndarray, s: int, normalize: str) -> np.ndarray:
    """Loop reference for per-pixel masks; a never-open pixel has normaliser 1."""
    b_, _, h, w = x.shape
    k_ = masks.shape[0]
    y = np.zeros((b_, h, w))
    for b in range(b_):
        for i in range(h):
            for j in range(w):
                n_open = sum(int(masks[k, i, j]) for k in range(k_))
                if normalize == "open":
                    n = max(n_open, 1)
                elif normalize == "chips":
                    n = k_
                else:
                    n = 1
                acc = 0.0
                for k in range(k_):
                    for ss in range(s):
                        acc += masks[k, i, j] * x[b, k * s + ss, i, j] / s
                y[b, i, j] = acc / n
    return y


# ------------------------------------------------------------------------------------- adjointness

ADJOINT_CASES = {
    "global-open": dict(bits=BDINR),
    "global-chips": dict(bits=BDINR, normalize="chips"),
    "global-none": dict(bits=BDINR, normalize="none"),
    "sub4": dict(bits=BDINR, sub_steps=4),
    "effective": dict(bits=BDINR, sub_steps=2, transmittance=TRANS, leakage=LEAK),
    "sub-profile": dict(bits=BDINR, sub_steps=3, sub_profile=np.linspace(0.05, 1.0, 24)),
    "masks-open": dict(masks=_masks(8, 5, 6, 1), sub_steps=2),
    "masks-chips": dict(masks=_masks(8, 5, 6, 2), normalize="chips"),
    "masks-none": dict(masks=_masks(8, 5, 6, 3), sub_steps=3, normalize="none"),
}


@pytest.mark.parametrize("name", list(ADJOINT_CASES))
def test_adjointness(name: str) -> None:
    op = CodedExposure(**ADJOINT_CASES[name], dtype=torch.float64)
    g = torch.Generator().manual_seed(7)
    err = op.adjointness_error((3, op.n_samples, 5, 6), generator=g)
    assert err < 1e-10


def test_adjointness_detects_a_wrong_adjoint() -> None:
    class Broken(CodedExposure):
        def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
            return 2.0 * super().A_adjoint(y)

    op = Broken(BDINR, dtype=torch.float64)
    err = op.adjointness_error((2, 8, 4, 4), generator=torch.Generator().manual_seed(0))
    assert err == pytest.approx(0.5)


# ----------------------------------------------------------------------- forward vs loop reference


@pytest.mark.parametrize("normalize", ["open", "chips", "none"])
def test_global_effective_code_matches_loop_reference(normalize: str) -> None:
    s = 3
    op = CodedExposure(
        BDINR,
        sub_steps=s,
        transmittance=TRANS,
        leakage=LEAK,
        normalize=normalize,
        dtype=torch.float64,
    )
    x = _video((2, 24, 3, 4), seed=1)
    ref = reference_global(x.numpy(), BDINR_BITS, s, normalize, trans=TRANS, leak=LEAK)
    np.testing.assert_allclose(op.A(x).numpy(), ref, rtol=1e-12, atol=1e-14)


def test_global_scalar_leakage_and_plain_code_match_reference() -> None:
    x = _video((1, 16, 2, 3), seed=2)
    op = CodedExposure(BDINR, sub_steps=2, leakage=0.05, dtype=torch.float64)
    ref = reference_global(x.numpy(), BDINR_BITS, 2, "open", leak=[0.05] * 8)
    np.testing.assert_allclose(op.A(x).numpy(), ref, rtol=1e-12)
    plain = CodedExposure(BDINR, sub_steps=2, dtype=torch.float64)
    np.testing.assert_allclose(
        plain.A(x).numpy(), reference_global(x.numpy(), BDINR_BITS, 2, "open"), rtol=1e-12
    )


def test_sub_profile_matches_reference_and_overrides_transmittance() -> None:
    profile = list(np.random.default_rng(3).uniform(0.0, 1.0, 16))
    x = _video((2, 16, 3, 3), seed=3)
    op = CodedExposure(
        BDINR, sub_steps=2, sub_profile=profile, transmittance=0.1, dtype=torch.float64
    )
    ref = reference_global(x.numpy(), BDINR_BITS, 2, "open", profile=profile)
    np.testing.assert_allclose(op.A(x).numpy(), ref, rtol=1e-12)


@pytest.mark.parametrize("normalize", ["open", "chips", "none"])
def test_masks_match_loop_reference(normalize: str) -> None:
    m = _masks(6, 4, 5, seed=4)
    op = CodedExposure(masks=m, sub_steps=2, normalize=normalize, dtype=torch.float64)
    x = _video((2, 12, 4, 5), seed=5)
    ref = reference_masks(x.numpy(), m, 2, normalize)
    np.testing.assert_allclose(op.A(x).numpy(), ref, rtol=1e-12, atol=1e-14)
    assert float(op.A(x)[:, 0, 0].abs().max()) == 0.0  # the never-open pixel measures nothing


# -------------------------------------------------------------------------- brightness conventions


@pytest.mark.parametrize("sub_steps", [1, 4])
def test_static_scene_reproduces_itself_with_open_normalisation(sub_steps: int) -> None:
    image = _video((2, 1, 5, 7), seed=6)
    op = CodedExposure(
        "1010000111000001010000110011110111010111001001100111",
        sub_steps=sub_steps,
        dtype=torch.float64,
    )
    x = image.expand(2, op.n_samples, 5, 7)
    torch.testing.assert_close(op.A(x), image[:, 0], rtol=1e-12, atol=1e-12)


def test_static_scene_masks_open_reproduces_itself_where_ever_open() -> None:
    m = _masks(8, 4, 4, seed=8)
    image = _video((1, 1, 4, 4), seed=9)
    op = CodedExposure(masks=m, sub_steps=2, dtype=torch.float64)
    y = op.A(image.expand(1, 16, 4, 4))[0]
    ever_open = torch.as_tensor(m.sum(axis=0) > 0)
    torch.testing.assert_close(y[ever_open], image[0, 0][ever_open])
    assert float(y[~ever_open].abs().max()) == 0.0


def test_static_scene_is_dimmer_by_the_effective_code_factor() -> None:
    image = _video((1, 1, 3, 3), seed=10)
    x = image.expand(1, 8 * 4, 3, 3)
    # Open chips 0, 1, 2, 5, 7 pass 0.9, 0.8, 0.7, 0.6, 0.5 -> mean 0.7 of the nominal light.
    op = CodedExposure(BDINR, sub_steps=4, transmittance=TRANS, dtype=torch.float64)
    torch.testing.assert_close(op.A(x), 0.7 * image[:, 0])
    # Uniform transmittance 0.8 -> 0.8; plus leakage 0.02 on 3 closed chips -> + 3 * 0.02 / 5.
    op = CodedExposure(BDINR, sub_steps=4, transmittance=0.8, leakage=0.02, dtype=torch.float64)
    torch.testing.assert_close(op.A(x), 0.812 * image[:, 0])


@pytest.mark.parametrize(("normalize", "factor"), [("chips", 5 / 8), ("none", 5.0)])
def test_static_scene_other_normalisations(normalize: str, factor: float) -> None:
    image = _video((1, 1, 3, 3), seed=11)
    op = CodedExposure(BDINR, sub_steps=2, normalize=normalize, dtype=torch.float64)
    torch.testing.assert_close(op.A(image.expand(1, 16, 3, 3)), factor * image[:, 0])
    assert f"normalize='{normalize}'" in repr(op)


# --------------------------------------------------------------------- functional == module, grads


def test_functional_equals_module_global_and_masks() -> None:
    x = _video((2, 16, 4, 5), seed=12)
    y = _video((2, 4, 5), seed=13)
    w = code_weights(BDINR, sub_steps=2, transmittance=TRANS, leakage=0.01, dtype=torch.float64)
    op = CodedExposure(BDINR, sub_steps=2, transmittance=TRANS, leakage=0.01, dtype=torch.float64)
    torch.testing.assert_close(op(x), coded_sum(x, w), rtol=0, atol=0)
    torch.testing.assert_close(op.A_adjoint(y), coded_sum_adjoint(y, w), rtol=0, atol=0)
    m = _masks(8, 4, 5, seed=14)
    wm = mask_weights(m, 2, "chips", dtype=torch.float64)
    opm = CodedExposure(masks=m, sub_steps=2, normalize="chips", dtype=torch.float64)
    torch.testing.assert_close(opm(x), coded_sum(x, wm), rtol=0, atol=0)
    torch.testing.assert_close(opm.A_adjoint(y), coded_sum_adjoint(y, wm), rtol=0, atol=0)


def test_gradcheck() -> None:
    op = CodedExposure(BDINR, sub_steps=2, transmittance=TRANS, leakage=0.03, dtype=torch.float64)
    x = _video((1, 16, 2, 3), seed=15).requires_grad_(True)
    assert torch.autograd.gradcheck(op.A, (x,))
    opm = CodedExposure(masks=_masks(4, 2, 3, seed=16), dtype=torch.float64)
    xm = _video((2, 4, 2, 3), seed=17).requires_grad_(True)
    assert torch.autograd.gradcheck(opm.A, (xm,))
    y = _video((1, 2, 3), seed=18).requires_grad_(True)
    assert torch.autograd.gradcheck(op.A_adjoint, (y,))


def test_float32_input_and_module_plumbing() -> None:
    op = CodedExposure(BDINR, sub_steps=2)
    assert op.weights.dtype == torch.float32
    assert {"weights", "bits"} <= set(dict(op.named_buffers()))
    assert op.n_chips == 8 and op.sub_steps == 2 and op.n_samples == 16
    assert op(torch.ones(1, 16, 2, 2)).dtype == torch.float32
    assert op(torch.ones(1, 16, 2, 2, dtype=torch.float64)).dtype == torch.float64
    op64 = op.to(torch.float64)
    assert op64.weights.dtype == torch.float64 and op64.bits is not None
    assert op64.bits.dtype == torch.int64  # integer buffer untouched
    assert "code='11100101'" in repr(op) and "sub_steps=2" in repr(op)
    assert isinstance(op, LinearOperator)


def test_chip_times_and_duration() -> None:
    op = CodedExposure(BDINR, sub_steps=4)
    t = op.chip_times(100.0)
    expected = torch.tensor([12.5e-6 + 25e-6 * i for i in range(32)], dtype=torch.float64)
    torch.testing.assert_close(t, expected)
    assert op.time_s(100.0) == pytest.approx(800e-6)
    with pytest.raises(ValueError, match="chip_us"):
        op.chip_times(0.0)


def test_code_weights_values_and_parsing() -> None:
    w = code_weights([1, 0, 1, 1], sub_steps=2, dtype=torch.float64)
    torch.testing.assert_close(w, torch.tensor([1, 1, 0, 0, 1, 1, 1, 1]) / 6.0, check_dtype=False)
    assert code_bits("1110 0101").tolist() == BDINR_BITS
    assert code_bits(np.array([True, False])).tolist() == [1, 0]
    assert code_weights(BDINR, device="cpu").device.type == "cpu"


# ------------------------------------------------------------------------------------------ errors


def test_shape_errors_name_the_expected_shape() -> None:
    op = CodedExposure(BDINR, sub_steps=2)
    with pytest.raises(ValueError, match=r"\(B, T, H, W\) with T=16 \(8 chips x 2 sub-steps\)"):
        op.A(torch.zeros(1, 15, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, T, H, W\)"):
        op.A(torch.zeros(16, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        op.A_adjoint(torch.zeros(4, 4))
    opm = CodedExposure(masks=_masks(8, 4, 5, seed=0))
    with pytest.raises(ValueError, match=r"T=8 .*H=4, W=5"):
        opm.A(torch.zeros(1, 8, 5, 4))
    with pytest.raises(ValueError, match=r"\(B, H, W\) with H=4, W=5"):
        opm.A_adjoint(torch.zeros(1, 4, 4))
    with pytest.raises(ValueError, match=r"shape \(8,\)"):
        code_weights(BDINR, transmittance=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"shape \(16,\)"):
        code_weights(BDINR, sub_steps=2, sub_profile=[0.5] * 8)
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        mask_weights(np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"\(T,\)"):
        code_to_psf_1d(torch.ones(2, 2), 3.0)


def test_invalid_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="exactly one of bits= .* and masks="):
        CodedExposure()
    with pytest.raises(ValueError, match="exactly one"):
        CodedExposure(BDINR, masks=_masks(8, 2, 2, 0))
    with pytest.raises(ValueError, match="not supported together with per-pixel masks"):
        CodedExposure(masks=_masks(8, 2, 2, 0), transmittance=0.5)
    with pytest.raises(ValueError, match="normalize must be one of"):
        CodedExposure(BDINR, normalize="mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="0 and 1 only"):
        code_bits("1102")
    with pytest.raises(ValueError, match="0 \\(closed\\) or 1 \\(open\\)"):
        code_bits([1, 0.5])
    with pytest.raises(ValueError, match="no open chip"):
        code_weights("0000")
    assert float(code_weights("0000", normalize="chips").sum()) == 0.0
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        code_weights(BDINR, transmittance=1.2)
    with pytest.raises(ValueError, match="sub_steps"):
        code_weights(BDINR, sub_steps=0)
    with pytest.raises(ValueError, match="binary"):
        mask_weights(np.full((2, 2, 2), 1.5))
    # transmittances (a mask seen through relay optics) are normalised by their sum per pixel
    w = mask_weights(np.array([[[0.5, 0.0]], [[0.25, 0.0]]]), dtype=torch.float64)
    assert w[:, 0, 0].tolist() == pytest.approx([2 / 3, 1 / 3]) and w[:, 0, 1].tolist() == [0, 0]
    with pytest.raises(TypeError, match="floating-point"):
        CodedExposure(BDINR).A(torch.zeros(1, 8, 2, 2, dtype=torch.int64))
    with pytest.raises(ValueError, match="length_px"):
        code_to_psf_1d(torch.ones(4), -1.0)


# -------------------------------------------------------------------------------------- motion PSF


@pytest.mark.parametrize("length", [0.0, 0.3, 5.5, 8.0, 13.7, 24.0, 100.25])
def test_psf_sums_to_total_weight(length: float) -> None:
    w = code_weights(BDINR, sub_steps=3, transmittance=TRANS, leakage=0.02, dtype=torch.float64)
    psf = code_to_psf_1d(w, length)
    assert psf.numel() == max(1, int(np.ceil(length)))
    assert float(psf.sum()) == pytest.approx(float(w.sum()), rel=1e-12)
    assert float(psf.min()) >= 0.0


def test_psf_has_the_code_pattern() -> None:
    w = code_weights(BDINR, sub_steps=2, dtype=torch.float64)
    torch.testing.assert_close(code_to_psf_1d(w, 16), w)
    # One pixel per chip: each tap is the chip's weight, 1/5 for open chips.
    expected = torch.tensor(BDINR_BITS, dtype=torch.float64) / 5
    torch.testing.assert_close(code_to_psf_1d(w, 8), expected)


def test_psf_reproduces_the_streak_of_a_moving_impulse_integer_velocity() -> None:
    op = CodedExposure(BDINR, sub_steps=2, dtype=torch.float64)
    n, x0 = 40, 5
    video = torch.zeros(1, op.n_samples, 1, n, dtype=torch.float64)
    for t in range(op.n_samples):  # one pixel per sample in +x
        video[0, t, 0, x0 + t] = 1.0
    streak = op.A(video)[0, 0].numpy()
    psf = code_to_psf_1d(op.weights, op.n_samples).numpy()
    sharp = np.zeros(n)
    sharp[x0] = 1.0
    np.testing.assert_allclose(streak, np.convolve(sharp, psf)[:n], atol=1e-14)


def test_psf_reproduces_the_streak_of_a_moving_impulse_fractional_velocity() -> None:
    # Render the moving impulse by brute force: each sample is the average over m instants of an
    # impulse at x0 + v * time, deposited in the pixel it falls in.
    op = CodedExposure(BDINR, sub_steps=3, transmittance=TRANS, leakage=0.05, dtype=torch.float64)
    t_n, n, x0, length, m = op.n_samples, 30, 4, 13.7, 400
    video = np.zeros((1, t_n, 1, n))
    for t in range(t_n):
        for i in range(m):
            pos = x0 + length * (t + (i + 0.5) / m) / t_n
            video[0, t, 0, int(np.floor(pos))] += 1.0 / m
    streak = op.A(torch.from_numpy(video))[0, 0].numpy()
    psf = code_to_psf_1d(op.weights, length).numpy()
    sharp = np.zeros(n)
    sharp[x0] = 1.0
    atol = 2 * float(op.weights.max()) / m
    np.testing.assert_allclose(streak, np.convolve(sharp, psf)[:n], atol=atol)
    assert float(np.abs(streak).sum()) == pytest.approx(float(op.weights.sum()))


# -------------------------------------------------------------------------------------------- CUDA


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_cuda_matches_cpu() -> None:
    for kwargs in (
        dict(bits=BDINR, sub_steps=4, transmittance=TRANS, leakage=LEAK),
        dict(masks=_masks(8, 16, 16, seed=20), sub_steps=2),
    ):
        for dtype in (torch.float32, torch.float64):
            cpu = CodedExposure(**kwargs, dtype=dtype)
            gpu = CodedExposure(**kwargs, dtype=dtype).to("cuda")
            assert gpu.weights.is_cuda
            x = _video((2, cpu.n_samples, 16, 16), seed=21).to(dtype)
            y = _video((2, 16, 16), seed=22).to(dtype)
            tol = dict(rtol=1e-5, atol=1e-6) if dtype == torch.float32 else dict(rtol=1e-12, atol=0)
            torch.testing.assert_close(gpu.A(x.cuda()).cpu(), cpu.A(x), **tol)
            torch.testing.assert_close(gpu.A_adjoint(y.cuda()).cpu(), cpu.A_adjoint(y), **tol)
            g = torch.Generator(device="cuda").manual_seed(0)
            assert gpu.adjointness_error((2, cpu.n_samples, 16, 16), generator=g) < (
                1e-5 if dtype == torch.float32 else 1e-10
            )
            assert gpu.chip_times(10.0).is_cuda
    w_cpu = code_weights(BDINR, sub_steps=3, dtype=torch.float64)
    w_gpu = code_weights(BDINR, sub_steps=3, dtype=torch.float64, device="cuda")
    torch.testing.assert_close(code_to_psf_1d(w_gpu, 13.7).cpu(), code_to_psf_1d(w_cpu, 13.7))
    with pytest.raises(ValueError, match="op.to"):
        CodedExposure(BDINR).A(torch.zeros(1, 8, 2, 2, device="cuda"))
