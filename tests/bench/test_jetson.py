"""Jetson telemetry parsing, on recorded output of tegrastats, nvpmodel and /etc/nv_tegra_release."""
from __future__ import annotations

import pytest

from corese_edge.bench.jetson import TegrastatsSampler, parse_tegrastats, total_power
from corese_edge.machine import clocks_locked, jetpack_for_l4t, jetson_info, parse_nvpmodel, parse_tegra_release

# One line per tegrastats generation (the formats JetPack 4 to 6 print).
ORIN_NANO_JP6 = (
    "12-05-2024 10:01:02 RAM 2313/7620MB (lfb 2x4MB) SWAP 0/3810MB (cached 0MB) "
    "CPU [2%@729,1%@729,0%@729,0%@729,off,off] EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305] NVDEC off NVJPG off "
    "VIC off OFA off APE 200 cpu@47.5C soc2@46.156C soc0@46.812C gpu@47.187C tj@47.5C soc1@46.5C "
    "VDD_IN 4948mW/4821mW VDD_CPU_GPU_CV 556mW/540mW VDD_SOC 1465mW/1460mW"
)
AGX_ORIN_JP5 = (
    "RAM 3064/30536MB (lfb 6697x4MB) SWAP 0/15268MB (cached 0MB) CPU [0%@729,0%@729,0%@729,0%@729] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[0,0] VIC_FREQ 729 APE 174 CPU@47.375C GPU@43.5C tj@48.625C "
    "VDD_GPU_SOC 2392mW/2392mW VDD_CPU_CV 797mW/797mW VIN_SYS_5V0 3435mW/3435mW VDDQ_VDD2_1V8AO 503mW/503mW"
)
XAVIER_NX_JP4 = (
    "RAM 1543/7764MB (lfb 1123x4MB) SWAP 0/3882MB (cached 0MB) CPU [6%@1190,2%@1190] EMC_FREQ 0% "
    "GR3D_FREQ 0% AUX@31C CPU@33C thermal@32.35C AO@32C GPU@31.5C PMIC@100C "
    "VDD_IN 3918/3900 VDD_CPU_GPU_CV 442/440 VDD_SOC 1109/1100"
)
NANO_JP4 = (
    "RAM 1010/3964MB (lfb 462x4MB) SWAP 0/1982MB (cached 0MB) IRAM 0/252kB(lfb 252kB) "
    "CPU [11%@102,4%@102,off,off] EMC_FREQ 3%@1600 GR3D_FREQ 0%@76 APE 25 PLL@22C CPU@24.5C "
    "POM_5V_IN 1150/1150 POM_5V_GPU 0/0 POM_5V_CPU 122/122"
)


def test_rails_of_each_format():
    assert parse_tegrastats(ORIN_NANO_JP6) == {"VDD_IN": 4948, "VDD_CPU_GPU_CV": 556, "VDD_SOC": 1465}
    assert parse_tegrastats(AGX_ORIN_JP5) == {"VDD_GPU_SOC": 2392, "VDD_CPU_CV": 797, "VIN_SYS_5V0": 3435, "VDDQ_VDD2_1V8AO": 503}
    assert parse_tegrastats(XAVIER_NX_JP4) == {"VDD_IN": 3918, "VDD_CPU_GPU_CV": 442, "VDD_SOC": 1109}
    assert parse_tegrastats(NANO_JP4) == {"POM_5V_IN": 1150, "POM_5V_GPU": 0, "POM_5V_CPU": 122}
    assert parse_tegrastats("RAM 2313/7620MB SWAP 0/3810MB IRAM 0/252kB(lfb 252kB)") == {}


def test_total_power_prefers_the_board_input_rail():
    assert total_power(parse_tegrastats(ORIN_NANO_JP6)) == (4948.0, "VDD_IN")
    assert total_power(parse_tegrastats(NANO_JP4)) == (1150.0, "POM_5V_IN")
    assert total_power(parse_tegrastats(AGX_ORIN_JP5)) == (2392.0 + 797 + 3435 + 503, "sum of rails")


def test_sampler_window_mean_and_energy_per_image():
    s = TegrastatsSampler()
    lines = [ORIN_NANO_JP6.replace("4948mW", f"{p}mW") for p in (4000, 5000, 6000, 9000)]
    s.feed_lines(lines, [0.5, 1.0, 2.0, 5.0])
    s.feed("no rails here", 1.5)
    summary = s.summary(1.0, 3.0, images=100)  # samples at 1.0 and 2.0 fall in the window
    assert summary["samples"] == 2 and summary["power_mw"] == 5500.0
    assert summary["total_source"] == "VDD_IN"
    assert summary["energy_mj_per_image"] == pytest.approx(5500.0 * 2.0 / 100)  # mW x s / images = mJ
    assert summary["rails_mw"]["VDD_SOC"] == 1465.0
    assert s.summary(10.0, 11.0, images=1) is None


def test_release_and_jetpack():
    assert parse_tegra_release("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64") == "36.4.3"
    assert parse_tegra_release("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref") == "35.4.1"
    assert parse_tegra_release("garbage") is None
    assert jetpack_for_l4t("36.4.3") == "6.2" and jetpack_for_l4t("35.4.1") == "5.1.2"
    assert jetpack_for_l4t("36.3.0") == "6.0" and jetpack_for_l4t("99.1.0") is None


def test_nvpmodel():
    assert parse_nvpmodel("NV Power Mode: MAXN\n0\n") == {"name": "MAXN", "id": 0}
    assert parse_nvpmodel("NVPM WARN: ...\nNV Power Mode: 15W\n2\n") == {"name": "15W", "id": 2}
    assert parse_nvpmodel("command not found") is None


def test_clock_state_from_sysfs(tmp_path):
    for i, (lo, hi) in enumerate([(2201600, 2201600), (2201600, 2201600)]):
        d = tmp_path / f"cpu{i}" / "cpufreq"
        d.mkdir(parents=True)
        (d / "scaling_min_freq").write_text(f"{lo}\n")
        (d / "scaling_max_freq").write_text(f"{hi}\n")
    assert clocks_locked(tmp_path, gpu_glob="/nonexistent/*") == "on"
    (tmp_path / "cpu1" / "cpufreq" / "scaling_min_freq").write_text("729600\n")
    assert clocks_locked(tmp_path, gpu_glob="/nonexistent/*") == "off"
    assert clocks_locked(tmp_path / "empty", gpu_glob="/nonexistent/*") == "unknown"


def test_not_a_jetson(tmp_path):
    assert jetson_info(tmp_path / "nv_tegra_release") is None
