"""Constant folding before vexplain reads an ONNX graph: ONNX Runtime's offline optimisation vs
``onnxslim`` vs ``onnxsim``, on three exports of a ~12 MB ResNet-18-shaped network.

Run from the repository root::

    python benchmarks/measure_constant_folding.py [--quick] [--repeats R] [--json out.json]

Graphs (seeded random weights, ResNet-18 layout at half width: 3.1 M parameters, 12 MB):

* ``torch``: ``torch.onnx.export`` (TorchScript exporter, opset 17, dynamic batch);
* ``paddle-style``: the same with every weight as a ``Constant`` node and the pooled tensor
  reshaped by a shape computed from a ``Shape`` node that reads it (as PaddlePaddle writes them);
* ``paddle-style, BN kept``: the same from an export without torch's folding, so each
  ``BatchNormalization`` stays a node (Paddle exports keep them): folders that fuse Conv+BN
  drop the convolution's output name;
* ``yolo-style``: the backbone with a YOLOv8-style head, ``(N, 4 + 80, anchors)`` with the anchor
  grid computed from the feature map's shape (``Shape → Gather → Range → ...`` as Ultralytics
  exports leave it).

For each graph and folder it reports the median time of ``R`` folds (after one warm-up), the node
count and ``Constant`` nodes after, whether vexplain finds the CAM head on the result (classifiers),
the share of the original graph's 4-D activation names still present (``layer=`` names a user
copied from the original must keep working), and the largest difference of the outputs from the
unfolded graph's on one input.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import numpy as np
import torch

from benchmarks.common import bench_parser, environment, median_of, print_table, repeats_of, write_results
from benchmarks.models import ResNet18Shaped

WIDTHS = (32, 64, 128, 256)


class YoloStyle(torch.nn.Module):
    """The ResNet-shaped backbone, a 1×1 head of 4 + 80 channels, boxes decoded on an anchor grid
    built from the feature map's shape (dist2bbox-style), class scores through a sigmoid."""

    def __init__(self, backbone: ResNet18Shaped) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = torch.nn.Conv2d(WIDTHS[-1], 84, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = self.backbone
        f = b.layer4(b.layer3(b.layer2(b.layer1(b.maxpool(b.relu(b.bn1(b.conv1(x))))))))
        out = self.head(f)
        h, w = out.shape[2], out.shape[3]
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5, indexing="ij")
        anchors = torch.stack([xs, ys]).reshape(1, 2, h * w)
        distances = out[:, :4].flatten(2)
        boxes = torch.cat([anchors - distances[:, :2], anchors + distances[:, 2:]], dim=1) * (x.shape[2] / h)
        return torch.cat([boxes, torch.sigmoid(out[:, 4:].flatten(2))], dim=1)


def graphs() -> dict[str, bytes]:
    from models import onnx_bytes
    from outputs_models import export, paddle_style

    torch.manual_seed(0)
    classifier = ResNet18Shaped(widths=WIDTHS).eval()
    with torch.no_grad():
        for module in classifier.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    exported = onnx_bytes(classifier, (3, 224, 224))
    return {
        "torch": exported,
        "paddle-style": paddle_style(exported),
        "paddle-style, BN kept": paddle_style(unfolded_export(classifier)),
        "yolo-style": export(YoloStyle(classifier).eval(), (3, 224, 224), ["detections"]),
    }


def unfolded_export(model: torch.nn.Module) -> bytes:
    """``model`` exported with ``do_constant_folding=False``: BatchNormalization stays a node."""
    import io
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (torch.zeros(1, 3, 224, 224),), buffer, dynamo=False, input_names=["input"], output_names=["scores"],
            dynamic_axes={"input": {0: "batch"}, "scores": {0: "batch"}}, opset_version=17, do_constant_folding=False,
            training=torch.onnx.TrainingMode.PRESERVE,
        )
    return buffer.getvalue()


def folders() -> dict:
    from vexplain.adapters.onnx_fold import fold_with_onnxsim, fold_with_onnxslim, fold_with_ort

    def slim(model):
        result, how = fold_with_onnxslim(model)
        if result is None:
            raise RuntimeError(how)
        return result

    def ort(model):
        with tempfile.TemporaryDirectory() as folder:
            return fold_with_ort(model, folder)

    return {"onnxruntime (basic, offline)": ort, "onnxslim": slim, "onnxsim": fold_with_onnxsim}


def outputs_of(data: bytes, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})


def main() -> int:
    import onnx

    from vexplain.adapters.onnx_graph import activation_names, find_cam_head, tensor_ranks

    args = bench_parser(__doc__, repeats=3, quick_repeats=1, quick_help="one timed fold per case", cases=False).parse_args()
    repeats = repeats_of(args)
    x = np.random.default_rng(1).standard_normal((1, 3, 224, 224)).astype(np.float32)
    rows, records = [], []
    for graph_name, data in graphs().items():
        original = onnx.load_from_string(data)
        reference = outputs_of(data, x)
        names = [n for n, r in tensor_ranks(original).items() if r == 4 and n in set(activation_names(original))]
        rows.append([graph_name, "(unfolded)", "-", len(original.graph.node), sum(n.op_type == "Constant" for n in original.graph.node),
                     find_cam_head(original) is not None, "-", f"{len(data) / 1e6:.1f} MB", "-"])
        for folder_name, fold in folders().items():
            try:
                seconds, _ = median_of(lambda: fold(original), repeats, warmup=1)
                result = fold(original)
            except Exception as error:  # a folder that fails on a graph is a result to report
                rows.append([graph_name, folder_name, f"failed: {str(error).splitlines()[0][:60]}", "", "", "", "", "", ""])
                records.append({"graph": graph_name, "folder": folder_name, "error": str(error)[:300]})
                continue
            produced = {o for node in result.graph.node for o in node.output}
            kept = sum(name in produced for name in names) / max(1, len(names))
            diff = max(float(np.abs(a - b).max()) for a, b in zip(reference, outputs_of(result.SerializeToString(), x)))
            record = {
                "graph": graph_name, "folder": folder_name, "seconds": seconds, "nodes": len(result.graph.node),
                "constants": sum(n.op_type == "Constant" for n in result.graph.node), "cam_head": find_cam_head(result) is not None,
                "activation_names_kept": kept, "bytes": len(result.SerializeToString()), "max_abs_diff": diff,
            }
            records.append(record)
            rows.append([graph_name, folder_name, f"{seconds:.2f} s", record["nodes"], record["constants"], record["cam_head"],
                         f"{kept:.0%}", f"{record['bytes'] / 1e6:.1f} MB", f"{diff:.1e}"])
    print_table(["graph", "folder", "time (median)", "nodes", "Constant nodes", "CAM head", "4-D names kept", "size", "max |diff|"], rows)
    write_results(args.json, "constant folding", environment=environment(), repeats=repeats, results=records)
    return 0


if __name__ == "__main__":
    sys.exit(main())
