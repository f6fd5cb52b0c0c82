"""Print, for each registered architecture: parameters (6 and 21 classes), the published count,
output stride, and CPU throughput in megapixels/s on 512 px tiles, in fp32 and in bf16 autocast +
channels_last (batch 1, eval, inference mode).

    .venv/bin/python benchmarks/models.py                           # every architecture (slow)
    .venv/bin/python benchmarks/models.py --arch deeplab --repeats 2 # names containing "deeplab"
    .venv/bin/python benchmarks/models.py --params-only              # parameter counts only (fast)

Parameters are counted on PyTorch's "meta" device (no memory). Timings are wall-clock after
``--warmup`` untimed runs, the median of ``--repeats`` timed runs, with ``--threads`` torch threads
(default 2); MP/cpu-s divides by the CPU time of the process instead (all its threads), which other
jobs on a shared machine disturb less. Compare architectures as ratios measured in one run.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from segdeep.models import create_model, list_models, model_entry
from torchvision.models import segmentation as tvseg

#: Published parameter counts for 21 PASCAL VOC classes, and where they come from.
PAPER_PARAMETERS = {
    "fcn32s": (134e6, "Long et al. 2015, Table 1 (FCN-VGG16)"),
    "fcn16s": (134e6, "Long et al. 2015, Table 1"),
    "fcn8s": (134e6, "Long et al. 2015, Table 1"),
    "segnet": (29.5e6, "Badrinarayanan et al. 2017, Table 6"),
    "deeplab_v1": (20.5e6, "Chen et al. 2015, Table 2 (DeepLab-LargeFOV)"),
    "deeplab_v2": (44e6, "commonly cited for DeepLab v2 ResNet-101 (the paper gives none)"),
    "unet": (31e6, "commonly cited for the 64-channel U-Net (the paper gives none)"),
    "refinenet": (118_052_437, "DrSleep/refinenet-pytorch rf101 (port of the authors' released model)"),
    "refinenet_lw": (27_357_525, "DrSleep/light-weight-refinenet rf_lw50 (the authors' code)"),
}
#: torchvision's published ``num_params`` (21 classes, aux_loss=True) and the kwargs that match.
TORCHVISION = {
    "deeplab_v3": (tvseg.DeepLabV3_ResNet50_Weights, {"backbone": "resnet50"}),
    "fcn_resnet50": (tvseg.FCN_ResNet50_Weights, {}),
    "fcn_resnet101": (tvseg.FCN_ResNet101_Weights, {}),
}


def count(name: str, num_classes: int, **kwargs) -> int:
    with torch.device("meta"):
        model = create_model(name, num_classes=num_classes, **kwargs)
    return sum(p.numel() for p in model.parameters())


def throughput(model: torch.nn.Module, tile_size: int, warmup: int, repeats: int,
               bf16: bool) -> tuple[float, float]:
    """(megapixels per wall-clock second, megapixels per CPU second of this process) of ``model``
    on 1 x 3 x tile_size x tile_size inputs; the CPU figure is less disturbed by other jobs."""
    x = torch.randn(1, 3, tile_size, tile_size)
    if bf16:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    wall, cpu = [], []
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        for i in range(warmup + repeats):
            start, start_cpu = time.perf_counter(), time.process_time()
            model(x)
            if i >= warmup:
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
    megapixels = tile_size * tile_size / 1e6
    return megapixels / statistics.median(wall), megapixels / statistics.median(cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", action="append", default=[],
                        help="only architectures whose name contains this (repeatable)")
    parser.add_argument("--tile-size", type=int, default=512, help="tile side in pixels (default 512)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs per setting (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per setting (default 3)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2)")
    parser.add_argument("--params-only", action="store_true", help="skip the timings")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    names = [n for n in list_models() if not args.arch or any(a in n for a in args.arch)]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, tile {args.tile_size} px, "
          f"batch 1, {args.warmup} warm-up + median of {args.repeats} runs")
    print(f"{'architecture':<16} {'params 6cl':>10} {'21cl':>8} {'published':>9} {'OS':>9} "
          f"{'fp32 MP/s':>10} {'MP/cpu-s':>9} {'bf16+CL MP/s':>13} {'MP/cpu-s':>9}")
    for name in names:
        p6, p21 = count(name, 6), count(name, 21)
        published = PAPER_PARAMETERS.get(name, (None, ""))[0]
        if name in TORCHVISION:
            weights, kwargs = TORCHVISION[name]
            published = weights.DEFAULT.meta["num_params"]
            assert count(name, 21, aux_loss=True, **kwargs) == published, name
        pub = f"{published / 1e6:.1f}M" if published else "-"
        row = (f"{name:<16} {p6 / 1e6:>9.1f}M {p21 / 1e6:>7.1f}M {pub:>9} "
               f"{model_entry(name).output_stride!s:>9}")
        if not args.params_only:
            torch.manual_seed(0)
            model = create_model(name, num_classes=6).eval()
            fp32 = throughput(model, args.tile_size, args.warmup, args.repeats, bf16=False)
            bf16 = throughput(model, args.tile_size, args.warmup, args.repeats, bf16=True)
            row += f" {fp32[0]:>10.3f} {fp32[1]:>9.3f} {bf16[0]:>13.3f} {bf16[1]:>9.3f}"
            del model
        print(row, flush=True)
    print("\nPublished: papers' counts for 21 classes (see PAPER_PARAMETERS); torchvision's num_params "
          "(21 classes with the auxiliary head) for deeplab_v3 (ResNet-50), fcn_resnet50/101, checked equal.")


if __name__ == "__main__":
    main()
