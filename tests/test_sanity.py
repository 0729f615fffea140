import math

from handlib.analysis.sanity import bounds_for, bounds_line, out_of_bounds

GOOD = {"mpjpe_abs": 564.0, "mpjpe_rr": 82.0, "mpjpe_pa": 21.0, "epe_2d": 13.0}  # a smoke run at 64 px


def test_a_plausible_smoke_run_passes_on_any_machine():
    # the committed golden's numbers (bf16) and the AVX2 fp32 machine's both fall in the bounds
    assert out_of_bounds(GOOD, 64) == []
    assert out_of_bounds({**GOOD, "mpjpe_abs": 628.0, "mpjpe_rr": 79.0, "mpjpe_pa": 23.0}, 64) == []
    assert bounds_line(GOOD, 64).endswith(": ok")


def test_the_printed_line_holds_no_measured_number():
    line = bounds_line(GOOD, 64)
    assert "564" not in line and "13.0" not in line
    assert "epe_2d in [0.5, 32] px" in line


def test_a_broken_stage_prints_a_different_line():
    ok = bounds_line(GOOD, 64)
    for broken in ({**GOOD, "mpjpe_pa": math.nan},           # NaN
                   {**GOOD, "mpjpe_pa": 10 * GOOD["mpjpe_pa"]},  # 10x too large
                   {**GOOD, "mpjpe_rr": GOOD["mpjpe_rr"] / 1000},  # metres for mm
                   {**GOOD, "epe_2d": 10 * GOOD["epe_2d"]},
                   {k: v for k, v in GOOD.items() if k != "mpjpe_rr"}):  # a metric missing
        line = bounds_line(broken, 64)
        assert line != ok and "FAILED" in line


def test_2d_bound_follows_the_crop():
    assert bounds_for(128)["epe_2d"] == (0.5, 64.0)
    assert out_of_bounds({**GOOD, "epe_2d": 40.0}, 128) == []
    assert out_of_bounds({**GOOD, "epe_2d": 40.0}, 64) == ["epe_2d = 40.0 outside [0.5, 32]"]
